package router_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/router"
)

// echoApp answers every request with its method, target, body and the
// headers a test looks at.
func echoApp() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s body=%q xff=%q xfh=%q xfp=%q keepalive=%q custom=%q",
			r.Method, r.RequestURI, body, r.Header.Values("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("X-Forwarded-Proto"), r.Header.Get("Keep-Alive"), r.Header.Get("X-Custom"))
	})
}

func frontAddr(t *testing.T, tab *router.Table) string {
	t.Helper()
	url, _ := startRouter(t, &router.Router{Table: tab})
	return strings.TrimPrefix(url, "http://")
}

// TestFrontPipelining sends plain requests and one the front hands over
// (a POST with a body) in a single write: every answer comes back, in
// order, the handed-over connection keeping the bytes the front had read.
func TestFrontPipelining(t *testing.T) {
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: startApp(t, echoApp())})
	addr := frontAddr(t, &tab)

	c := dialRaw(t, addr)
	raw := "GET /a HTTP/1.1\r\nHost: app.test\r\n\r\n" +
		"HEAD /b HTTP/1.1\r\nHost: app.test\r\n\r\n" +
		"POST /c HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello" +
		"GET /d HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, want := range []struct{ method, body string }{
		{"GET", `GET /a body=""`},
		{"HEAD", ""},
		{"POST", `POST /c body="hello"`},
		{"GET", `GET /d body=""`},
	} {
		res, err := http.ReadResponse(br, &http.Request{Method: want.method})
		if err != nil {
			t.Fatalf("reading the answer to %s: %v", want.method, err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 || !strings.HasPrefix(string(b), want.body) {
			t.Fatalf("%s: %d %q (%v); want 200 starting %q", want.method, res.StatusCode, b, err, want.body)
		}
	}
	if n, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close, read %v, %v; want EOF", n, err)
	}
}

// TestFrontHandsOver sends requests the front leaves to net/http: each gets
// net/http's answer.
func TestFrontHandsOver(t *testing.T) {
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: startApp(t, echoApp())})
	addr := frontAddr(t, &tab)
	big := strings.Repeat("x", 20<<10)
	tests := []struct {
		name, raw string
		status    int
		body      string
	}{
		{"bare LF", "GET /lf HTTP/1.1\nHost: app.test\nConnection: close\n\n", 200, "GET /lf"},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: app.test\r\n\r\n", 200, "GET /old"},
		{"head larger than the front's buffer", "GET /big HTTP/1.1\r\nHost: app.test\r\nX-Custom: " + big + "\r\nConnection: close\r\n\r\n", 200, "GET /big"},
		{"absolute form", "GET http://app.test/abs HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n", 200, "GET /abs"},
		{"two hosts", "GET / HTTP/1.1\r\nHost: app.test\r\nHost: app.test\r\nConnection: close\r\n\r\n", 400, ""},
		{"obsolete line folding", "GET /fold HTTP/1.1\r\nHost: app.test\r\nX-Custom: a\r\n b\r\nConnection: close\r\n\r\n", 200, "GET /fold"},
		{"CR before the request line's CRLF", "HEAD / HTTP/1.1\r\r\nHost: app.test\r\nConnection: close\r\n\r\n", 400, ""},
		{"malformed escape", "GET /a%zz HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n", 400, ""},
		{"unknown host", "GET / HTTP/1.1\r\nHost: nothing.test\r\nConnection: close\r\n\r\n", 404, ""},
		{"acme challenge", "GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n", 200, "GET /.well-known/acme-challenge/x"},
		{"chunked GET", "GET /te HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, `GET /te body="abc"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, b := rawExchange(t, addr, tt.raw)
			if res.StatusCode != tt.status || !strings.HasPrefix(b, tt.body) {
				t.Errorf("%d %q; want %d starting %q", res.StatusCode, b, tt.status, tt.body)
			}
		})
	}
}

// TestFrontForwarding checks what the app receives from the front and
// what the client receives back.
func TestFrontForwarding(t *testing.T) {
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: startApp(t, echoApp())})
	addr := frontAddr(t, &tab)
	res := rawRequest(t, addr, "GET /p?q=1 HTTP/1.1\r\nHost: App.Test:80\r\nX-Forwarded-For: 6.6.6.6\r\n"+
		"Forwarded: for=6.6.6.6\r\nKeep-Alive: timeout=5\r\nx-custom:  kept as sent \r\nConnection: keep-alive, close\r\n\r\n")
	if res.StatusCode != 200 || !res.Close {
		t.Fatalf("status %d, close %v; want 200 and Connection: close", res.StatusCode, res.Close)
	}
	if res.Header.Get("Date") == "" {
		t.Error("no Date header")
	}

	// The body was discarded by rawRequest: ask again and read it.
	c := dialRaw(t, addr)
	io.WriteString(c, "GET /p?q=1 HTTP/1.1\r\nHost: App.Test:80\r\nX-Forwarded-For: 6.6.6.6\r\nKeep-Alive: timeout=5\r\nx-custom:  kept as sent \r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	want := `GET /p?q=1 body="" xff=["127.0.0.1"] xfh="App.Test:80" xfp="http" keepalive="" custom="kept as sent"`
	if string(b) != want {
		t.Errorf("the app saw\n%s\nwant\n%s", b, want)
	}
}

// TestFrontResponses sends answers the front must reframe or refuse.
func TestFrontResponses(t *testing.T) {
	tests := []struct {
		name, answer string
		method       string
		status       int
		body         string
		chunked      bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "GET", 200, "hello", false},
		{"until close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstreamed until close", "GET", 200, "streamed until close", true},
		{"chunked", "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", "GET", 201, "abcde", true},
		{"HTTP/1.0 app", "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold", "GET", 200, "old", false},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", "GET", 204, "", false},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", "HEAD", 200, "", false},
		{"early hints then answer", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", 200, "ok", false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", "GET", 502, "", false},
		{"CR before the status line's CRLF", "HTTP/1.1 200 OK\r\r\nContent-Length: 2\r\n\r\nok", "GET", 200, "ok", false},
		{"CR in a header value", "HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nContent-Length: 2\r\n\r\nok", "GET", 502, "", false},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "GET", -1, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tab router.Table
			tab.Set("app.test", router.Route{Deployment: "dresp", Backend: tcpBackend(answeringApp(t, tt.answer))})
			c := dialRaw(t, frontAddr(t, &tab))
			fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: app.test\r\n\r\n", tt.method)
			br := bufio.NewReader(c)
			res, err := http.ReadResponse(br, &http.Request{Method: tt.method})
			for err == nil && res.StatusCode < 200 {
				res, err = http.ReadResponse(br, &http.Request{Method: tt.method})
			}
			if tt.status == -1 {
				// The head was sent before the app failed: the client
				// sees the body cut short.
				if err == nil {
					_, err = io.ReadAll(res.Body)
				}
				if err == nil {
					t.Fatal("a body cut short by the app reached the client whole")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status || tt.status == 200 && string(b) != tt.body {
				t.Errorf("%d %q; want %d %q", res.StatusCode, b, tt.status, tt.body)
			}
			if chunked := len(res.TransferEncoding) > 0; chunked != tt.chunked {
				t.Errorf("chunked = %v; want %v", chunked, tt.chunked)
			}
			if res.Header.Get("Date") == "" {
				t.Error("no Date header")
			}
		})
	}
}

// TestFrontShutdown: Shutdown closes idle connections at once and lets a
// request in flight finish.
func TestFrontShutdown(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: startApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	}))})
	rt := &router.Router{Table: &tab}
	defer rt.CloseIdleConnections()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := &router.Front{Router: rt, Fallback: &http.Server{Handler: rt}}
	served := make(chan error, 1)
	go func() { served <- front.Serve(ln) }()

	dial := func() (net.Conn, *bufio.Reader) {
		c := dialRaw(t, ln.Addr().String())
		return c, bufio.NewReader(c)
	}
	idle, idleR := dial()
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if res, err := http.ReadResponse(idleR, nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("first request: %v", err)
	} else {
		io.Copy(io.Discard, res.Body)
	}
	busy, busyR := dial()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n")
	<-arrived

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		shut <- front.Shutdown(ctx)
	}()
	if _, err := idleR.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: read %v; want EOF once shutting down", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	res, err := http.ReadResponse(busyR, nil)
	if err != nil {
		t.Fatalf("the request in flight: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(b) != "done" || !res.Close {
		t.Errorf("in flight: %d %q close=%v; want 200 \"done\" and Connection: close", res.StatusCode, b, res.Close)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve: %v; want http.ErrServerClosed", err)
	}
}

package router_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/router"
)

// These tests cover what the router's fast path (GET and HEAD without a
// body) must do like the ReverseProxy path: trailers, HEAD, hop-by-hop
// headers, informational responses, stale pooled connections, clients that
// go away and idle connections that expire.

func TestFastTrailersAndHead(t *testing.T) {
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: startApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("X-Kind", "trailed")
		io.WriteString(w, "body,")
		w.(http.Flusher).Flush()
		io.WriteString(w, "more")
		w.Header().Set("X-Checksum", "abc")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	}))})
	url, client := startRouter(t, &router.Router{Table: &tab})

	req, _ := http.NewRequest("GET", url, nil)
	req.Host = "app.test"
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "body,more" || res.Header.Get("X-Kind") != "trailed" {
		t.Errorf("body %q, X-Kind %q", b, res.Header.Get("X-Kind"))
	}
	if res.Trailer.Get("X-Checksum") != "abc" || res.Trailer.Get("X-Late") != "late" {
		t.Errorf("trailers = %v; want X-Checksum abc and X-Late late", res.Trailer)
	}

	req, _ = http.NewRequest("HEAD", url, nil)
	req.Host = "app.test"
	res, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || len(b) != 0 || res.Header.Get("X-Kind") != "trailed" {
		t.Errorf("HEAD: status %d, %d body bytes, X-Kind %q", res.StatusCode, len(b), res.Header.Get("X-Kind"))
	}
	// The connection is still usable after a HEAD.
	if res := mustGet(t, client, url, "app.test", ""); res.body != "body,more" {
		t.Errorf("GET after HEAD: %q", res.body)
	}
}

func TestFastHopByHopHeaders(t *testing.T) {
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: startApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Internal")
		w.Header().Set("X-Internal", "1")
		w.Header().Set("X-Public", "1")
		for _, h := range []string{"X-Secret", "Keep-Alive", "Te", "Connection", "X-Kept", "User-Agent"} {
			io.WriteString(w, h+"="+strings.Join(r.Header.Values(h), ",")+"\n")
		}
	}))})
	url, _ := startRouter(t, &router.Router{Table: &tab})
	addr := strings.TrimPrefix(url, "http://")

	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: X-Secret, close\r\nX-Secret: 1\r\n"+
		"Keep-Alive: timeout=5\r\nTe: trailers, deflate\r\nX-Kept: yes\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"X-Secret=\n", "Keep-Alive=\n", "Te=trailers\n", "Connection=\n", "X-Kept=yes\n", "User-Agent=\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("app saw:\n%s\nwant a line %q", b, want)
		}
	}
	if res.Header.Get("X-Internal") != "" || res.Header.Get("X-Public") != "1" {
		t.Errorf("response headers %v: want X-Public and no X-Internal", res.Header)
	}
}

func TestFastEarlyHints(t *testing.T) {
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: startApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "final")
	}))})
	url, client := startRouter(t, &router.Router{Table: &tab})

	var hints atomic.Value
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		if code == http.StatusEarlyHints {
			hints.Store(h.Get("Link"))
		}
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url, nil)
	req.Host = "app.test"
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != "final" || res.Header.Get("Link") != "" {
		t.Errorf("final response: %d %q, Link %q", res.StatusCode, b, res.Header.Get("Link"))
	}
	if got, _ := hints.Load().(string); got != "</style.css>; rel=preload" {
		t.Errorf("103 Link = %q", got)
	}
}

// rawApp serves every connection of ln with serve, one goroutine each.
func rawApp(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(wait))
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// answeringApp is an app that reads one request per connection and
// writes answer, as it is.
func answeringApp(t *testing.T, answer string) string {
	t.Helper()
	return rawApp(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			io.WriteString(c, answer)
		}
	})
}

// dialRaw connects to addr for a test that writes raw HTTP; the connection
// is closed at the end of the test.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(wait))
	return c
}

func TestFastStaleConnection(t *testing.T) {
	// An app that answers one request per connection as if keeping it
	// alive, then closes it: the pooled connection is dead when reused.
	var conns atomic.Int64
	addr := rawApp(t, func(c net.Conn) {
		conns.Add(1)
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: tcpBackend(addr)})
	url, client := startRouter(t, &router.Router{Table: &tab})
	for i := range 20 {
		if res := mustGet(t, client, url, "app.test", ""); res.status != 200 || res.body != "ok" {
			t.Fatalf("request %d: %d %q", i, res.status, res.body)
		}
	}
	if n := conns.Load(); n < 20 {
		t.Errorf("app saw %d connections; want one per request", n)
	}
}

func TestFastBadResponses(t *testing.T) {
	tests := []struct{ name, answer string }{
		{"unrequested upgrade", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"},
		{"garbage", "HELLO\r\n\r\n"},
		{"too many 1xx", strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 10) + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tab router.Table
			tab.Set("app.test", router.Route{Deployment: "dbad", Backend: tcpBackend(answeringApp(t, tt.answer))})
			url, client := startRouter(t, &router.Router{Table: &tab})
			if res := mustGet(t, client, url, "app.test", ""); res.status != http.StatusBadGateway || !strings.Contains(res.body, "dbad") {
				t.Errorf("status %d, body %q; want 502 naming the deployment", res.status, res.body)
			}
		})
	}
}

func TestFastClientGone(t *testing.T) {
	arrived := make(chan struct{}, 1)
	appDone := make(chan struct{}, 1)
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: startApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
			appDone <- struct{}{}
		case <-time.After(wait):
		}
	}))})
	url, client := startRouter(t, &router.Router{Table: &tab})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Host = "app.test"
	errc := make(chan error, 1)
	go func() {
		res, err := client.Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-arrived:
	case <-time.After(wait):
		t.Fatal("request did not reach the app")
	}
	cancel()
	select {
	case <-appDone:
	case <-time.After(wait):
		t.Fatal("the app's request was not cancelled when the client went away")
	}
	<-errc
}

func TestFastIdleTimeout(t *testing.T) {
	var closed atomic.Int64
	srv := httptest.NewUnstartedServer(named("app"))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: tcpBackend(srv.Listener.Addr().String())})
	url, client := startRouter(t, &router.Router{Table: &tab, IdleConnTimeout: 20 * time.Millisecond})
	if res := mustGet(t, client, url, "app.test", ""); res.body != "app" {
		t.Fatalf("body %q", res.body)
	}
	deadline := time.Now().Add(wait)
	for closed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the idle connection to the app was never closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A new request dials again.
	if res := mustGet(t, client, url, "app.test", ""); res.body != "app" {
		t.Fatalf("body %q after the idle connection expired", res.body)
	}
}

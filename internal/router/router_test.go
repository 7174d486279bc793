package router_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/router"
)

// wait bounds every wait in these tests; it is a guard against hangs, never
// an assertion about speed.
const wait = 30 * time.Second

// startApp runs h as a deployment's app on loopback and returns a Backend
// that dials it.
func startApp(t testing.TB, h http.Handler) router.Backend {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return tcpBackend(srv.Listener.Addr().String())
}

func tcpBackend(addr string) router.Backend {
	return router.BackendFunc(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
}

// named is an app that answers every request with its name.
func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})
}

// startRouter serves rt on loopback as the server does, through a
// router.Front, and returns its URL and a client.
func startRouter(t testing.TB, rt *router.Router) (string, *http.Client) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := &router.Front{Router: rt, Fallback: &http.Server{Handler: rt, ReadHeaderTimeout: wait}}
	served := make(chan error, 1)
	go func() { served <- front.Serve(ln) }()
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := front.Shutdown(ctx); err != nil {
			t.Errorf("shutting the front down: %v", err)
		}
		if err := <-served; err != http.ErrServerClosed {
			t.Errorf("Front.Serve returned %v; want http.ErrServerClosed", err)
		}
		rt.CloseIdleConnections()
	})
	return "http://" + ln.Addr().String(), &http.Client{Transport: tr, Timeout: wait}
}

type response struct {
	status int
	header http.Header
	body   string
}

// get requests url with the given Host header (and Accept, if not empty).
func get(client *http.Client, url, host, accept string) (response, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return response{}, err
	}
	req.Host = host
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{res.StatusCode, res.Header, string(b)}, nil
}

func mustGet(t *testing.T, client *http.Client, url, host, accept string) response {
	t.Helper()
	res, err := get(client, url, host, accept)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	return res
}

func TestRouting(t *testing.T) {
	var tab router.Table
	tab.Set("app.example.test", router.Route{Deployment: "d1", Project: "app", Backend: startApp(t, named("app A"))})
	tab.Set("a1b2c3d4e5f6.example.test", router.Route{Deployment: "a1b2c3d4e5f6", Backend: startApp(t, named("preview B"))})
	tab.Set("Custom.Example.ORG.", router.Route{Deployment: "d3", Backend: startApp(t, named("custom C"))})
	url, client := startRouter(t, &router.Router{Table: &tab})

	tests := []struct {
		host       string
		wantStatus int
		wantBody   string // exact for 200, substring otherwise
	}{
		{"app.example.test", 200, "app A"},
		{"APP.Example.Test", 200, "app A"},
		{"app.example.test:8080", 200, "app A"},
		{"app.example.test.", 200, "app A"},
		{"App.Example.Test.:443", 200, "app A"},
		{"a1b2c3d4e5f6.example.test", 200, "preview B"},
		{"custom.example.org", 200, "custom C"},
		{"CUSTOM.example.org:80", 200, "custom C"},
		{"unknown.example.test", 404, "Nothing is deployed at unknown.example.test"},
		{"example.test", 404, "No app here"},
		{"xapp.example.test", 404, "No app here"},
		{"127.0.0.1", 404, "No app here"},
		{"[::1]:80", 404, "No app here"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			res := mustGet(t, client, url, tt.host, "")
			if res.status != tt.wantStatus {
				t.Fatalf("status = %d; want %d (body %q)", res.status, tt.wantStatus, res.body)
			}
			if tt.wantStatus == 200 && res.body != tt.wantBody || tt.wantStatus != 200 && !strings.Contains(res.body, tt.wantBody) {
				t.Errorf("body = %q; want %q", res.body, tt.wantBody)
			}
			if tt.wantStatus != 200 {
				for _, app := range []string{"app A", "preview B", "custom C"} {
					if strings.Contains(res.body, app) {
						t.Errorf("%d page shows app %q", res.status, app)
					}
				}
			}
		})
	}
}

func TestZeroRouter(t *testing.T) {
	url, client := startRouter(t, &router.Router{})
	if res := mustGet(t, client, url, "app.example.test", ""); res.status != 404 {
		t.Errorf("zero Router: status = %d; want 404", res.status)
	}
}

func TestPages(t *testing.T) {
	// Each route has a live app behind it that must never be reached.
	var hits atomic.Int64
	app := startApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "SECRET APP")
	}))
	var tab router.Table
	tab.Set("stopped.test", router.Route{Deployment: "dstop", Project: "web", State: router.Stopped, Reason: "Stopped by <b>alice</b>.", Backend: app})
	tab.Set("failed.test", router.Route{Deployment: "dfail", State: router.Failed, Reason: "Health check did not pass within 5m0s.", Backend: app})
	tab.Set("deploying.test", router.Route{Deployment: "ddep", State: router.Deploying, Backend: app})
	tab.Set("nobackend.test", router.Route{Deployment: "dnone"})
	tab.Set("weird.test", router.Route{Deployment: "dweird", State: 42, Backend: app})
	url, client := startRouter(t, &router.Router{Table: &tab})

	tests := []struct {
		host       string
		wantStatus int
		want       []string // in both text and HTML
		retryAfter bool
	}{
		{"stopped.test", 410, []string{"Deployment dstop of project web is stopped", "alice"}, false},
		{"failed.test", 503, []string{"Deployment dfail failed", "Health check did not pass within 5m0s."}, false},
		{"deploying.test", 503, []string{"Deployment ddep is starting"}, true},
		{"nobackend.test", 503, []string{"Deployment dnone is not available"}, true},
		{"weird.test", 503, []string{"Deployment dweird is not available"}, true},
		{"unknown.test", 404, []string{"Nothing is deployed at unknown.test"}, false},
	}
	for _, tt := range tests {
		for _, accept := range []string{"", "*/*", "text/html,application/xhtml+xml,*/*;q=0.8"} {
			t.Run(tt.host+"/"+accept, func(t *testing.T) {
				res := mustGet(t, client, url, tt.host, accept)
				if res.status != tt.wantStatus {
					t.Fatalf("status = %d; want %d", res.status, tt.wantStatus)
				}
				html := strings.Contains(accept, "text/html")
				ct := res.header.Get("Content-Type")
				if html && ct != "text/html; charset=utf-8" || !html && ct != "text/plain; charset=utf-8" {
					t.Errorf("Content-Type = %q (Accept %q)", ct, accept)
				}
				if html && !strings.HasPrefix(res.body, "<!doctype html>") {
					t.Errorf("body is not an HTML page: %q", res.body)
				}
				for _, w := range tt.want {
					if !strings.Contains(res.body, w) {
						t.Errorf("body %q does not contain %q", res.body, w)
					}
				}
				if html && strings.Contains(res.body, "<b>alice") {
					t.Error("Reason was not escaped")
				}
				if strings.Contains(res.body, "SECRET APP") {
					t.Error("page shows the app")
				}
				if got := res.header.Get("Cache-Control"); got != "no-store" {
					t.Errorf("Cache-Control = %q; want no-store", got)
				}
				if got := res.header.Get("Retry-After") != ""; got != tt.retryAfter {
					t.Errorf("Retry-After present = %v; want %v", got, tt.retryAfter)
				}
			})
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the app behind non-serving routes got %d requests; want 0", n)
	}
}

// rawRequest sends raw bytes to addr and parses one response.
func rawRequest(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	res, _ := rawExchange(t, addr, raw)
	return res
}

// rawExchange sends raw bytes to addr and returns one response and as much
// of its body as could be read.
func rawExchange(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c := dialRaw(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", raw, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

// TestRawRequests sends requests a Go client would refuse to send.
func TestRawRequests(t *testing.T) {
	var tab router.Table
	tab.Set("app.example.test", router.Route{Deployment: "d1", Backend: startApp(t, named("app"))})
	url, _ := startRouter(t, &router.Router{Table: &tab})
	addr := strings.TrimPrefix(url, "http://")

	tests := []struct {
		name string
		raw  string
		want int
	}{
		{"valid", "GET / HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n", 200},
		{"no host http/1.0", "GET / HTTP/1.0\r\n\r\n", 400},
		{"no host http/1.1", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400},
		{"empty label", "GET / HTTP/1.1\r\nHost: app..example.test\r\nConnection: close\r\n\r\n", 400},
		{"percent", "GET / HTTP/1.1\r\nHost: app%2eexample.test\r\nConnection: close\r\n\r\n", 400},
		{"bad port", "GET / HTTP/1.1\r\nHost: app.example.test:80x\r\nConnection: close\r\n\r\n", 400},
		{"two ports", "GET / HTTP/1.1\r\nHost: app.example.test:80:80\r\nConnection: close\r\n\r\n", 400},
		{"open bracket", "GET / HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n", 400},
		{"userinfo", "GET / HTTP/1.1\r\nHost: a@app.example.test\r\nConnection: close\r\n\r\n", 400},
		{"connect", "CONNECT app.example.test:443 HTTP/1.1\r\nHost: app.example.test:443\r\n\r\n", 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := rawRequest(t, addr, tt.raw); res.StatusCode != tt.want {
				t.Errorf("status = %d; want %d", res.StatusCode, tt.want)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	app := startApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "Accept-Encoding"} {
			fmt.Fprintf(w, "%s=%s\n", h, strings.Join(r.Header.Values(h), ","))
		}
		fmt.Fprintf(w, "Host=%s\nURI=%s\n", r.Host, r.RequestURI)
	}))
	var tab router.Table
	tab.Set("app.example.test", router.Route{Deployment: "d1", Backend: app})
	url, client := startRouter(t, &router.Router{Table: &tab})

	req, _ := http.NewRequest("GET", url+"/path/x?q=1&r=2", nil)
	req.Host = "App.Example.Test:8080"
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("X-Forwarded-Host", "evil.test")
	req.Header.Set("Forwarded", "for=6.6.6.6")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	got := string(b)
	for _, want := range []string{
		"X-Forwarded-For=127.0.0.1\n", // the client's spoofed value is dropped
		"X-Forwarded-Host=App.Example.Test:8080\n",
		"X-Forwarded-Proto=http\n",
		"Forwarded=\n",
		"Accept-Encoding=gzip\n", // the client's, passed through (no transparent decompression)
		"Host=App.Example.Test:8080\n",
		"URI=/path/x?q=1&r=2\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("backend saw:\n%s\nwant a line %q", got, want)
		}
	}
}

func TestStreaming(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
	}{
		{"chunked", nil},
		{"event-stream", map[string]string{"Content-Type": "text/event-stream"}},
		{"content-length", map[string]string{"Content-Length": "12"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := make(chan struct{})
			app := startApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				io.WriteString(w, "first,")
				w.(http.Flusher).Flush()
				select {
				case <-next:
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "second")
			}))
			var tab router.Table
			tab.Set("app.example.test", router.Route{Deployment: "d1", Backend: app})
			url, client := startRouter(t, &router.Router{Table: &tab})

			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			req.Host = "app.example.test"
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			// The second half is only written after the first arrived: a
			// proxy that buffers deadlocks here until ctx ends.
			first := make([]byte, len("first,"))
			if _, err := io.ReadFull(res.Body, first); err != nil {
				t.Fatalf("reading the first part before the second is sent: %v", err)
			}
			close(next)
			rest, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(first) + string(rest); got != "first,second" {
				t.Errorf("body = %q", got)
			}
		})
	}
}

// echoUpgrade is an app that switches to an "echo" protocol and echoes
// every byte.
func echoUpgrade(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "echo" {
		http.Error(w, "upgrade required", http.StatusUpgradeRequired)
		return
	}
	c, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	brw.Flush()
	io.Copy(c, brw)
}

func TestUpgrade(t *testing.T) {
	var tab router.Table
	tab.Set("ws.example.test", router.Route{Deployment: "d1", Backend: startApp(t, http.HandlerFunc(echoUpgrade))})
	url, _ := startRouter(t, &router.Router{Table: &tab})

	c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), wait)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	io.WriteString(c, "GET /socket HTTP/1.1\r\nHost: ws.example.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Upgrade") != "echo" {
		t.Fatalf("response = %d, Upgrade %q; want 101 echo", res.StatusCode, res.Header.Get("Upgrade"))
	}
	for _, msg := range []string{"hello\n", "second message\n"} {
		io.WriteString(c, msg)
		got, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if got != msg {
			t.Errorf("echo = %q; want %q", got, msg)
		}
	}
}

// TestAtomicSwitch switches a host between two deployments many times while
// clients hammer it: no request may fail, every answer comes from one of the
// two, and a request sent after a switch returns reaches the new one.
func TestAtomicSwitch(t *testing.T) {
	const (
		workers     = 8
		perWorker   = 200
		maxSwitches = 2000
		host        = "app.example.test"
	)
	backends := map[string]router.Backend{
		"A": startApp(t, named("A")),
		"B": startApp(t, named("B")),
	}
	var tab router.Table
	route := func(name string) router.Route {
		return router.Route{Deployment: "dep" + strings.ToLower(name), Backend: backends[name]}
	}
	tab.Set(host, route("A"))
	url, client := startRouter(t, &router.Router{Table: &tab})

	var (
		wg      sync.WaitGroup
		failed  atomic.Int64
		seen    [2]atomic.Int64
		firstMu sync.Mutex
		first   error
	)
	fail := func(err error) {
		failed.Add(1)
		firstMu.Lock()
		if first == nil {
			first = err
		}
		firstMu.Unlock()
	}
	for range workers {
		wg.Go(func() {
			for range perWorker {
				res, err := get(client, url, host, "")
				switch {
				case err != nil:
					fail(err)
				case res.status != 200:
					fail(fmt.Errorf("status %d: %q", res.status, res.body))
				case res.body == "A":
					seen[0].Add(1)
				case res.body == "B":
					seen[1].Add(1)
				default:
					fail(fmt.Errorf("unexpected body %q", res.body))
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	switches := 0
	cur := "A"
switching:
	for switches < maxSwitches {
		select {
		case <-done:
			break switching
		default:
		}
		next := map[string]string{"A": "B", "B": "A"}[cur]
		if switches%2 == 0 {
			tab.Set(host, route(next))
		} else {
			tab.Update(func(m map[string]router.Route) {
				m[host] = route(next)
				m["dep"+strings.ToLower(next)+".example.test"] = route(next)
			})
		}
		cur = next
		switches++
		// From the instant the switch returns, new requests go to the new
		// deployment, even with warm idle connections to the old one.
		res, err := get(client, url, host, "")
		if err != nil {
			t.Fatalf("after switch %d: %v", switches, err)
		}
		if res.body != cur {
			t.Fatalf("after switch %d to %s, a new request reached %q", switches, cur, res.body)
		}
	}
	select {
	case <-done:
	case <-time.After(4 * wait):
		t.Fatal("workers did not finish")
	}

	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed; first: %v", n, workers*perWorker, first)
	}
	t.Logf("%d requests (%d to A, %d to B) across %d switches", workers*perWorker, seen[0].Load(), seen[1].Load(), switches)
	if switches < 2 {
		t.Errorf("only %d switches happened under load", switches)
	}

	tab.Set(host, route("B"))
	for i := range 50 {
		if res := mustGet(t, client, url, host, ""); res.body != "B" {
			t.Fatalf("request %d after the final switch reached %q; want B", i, res.body)
		}
	}
}

// TestInFlightCompletes starts a slow request on the old deployment,
// switches the host (and then stops the old deployment), and checks that
// the slow request still completes from the old one while new requests
// reach the new one.
func TestInFlightCompletes(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	old := startApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, "old")
	}))
	var tab router.Table
	tab.Set("app.example.test", router.Route{Deployment: "dold", Backend: old})
	tab.Set("dold.example.test", router.Route{Deployment: "dold", Backend: old})
	url, client := startRouter(t, &router.Router{Table: &tab})

	type result struct {
		res response
		err error
	}
	slow := make(chan result, 1)
	go func() {
		res, err := get(client, url+"/slow", "app.example.test", "")
		slow <- result{res, err}
	}()
	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("slow request did not reach the old deployment")
	}

	newApp := startApp(t, named("new"))
	tab.Update(func(m map[string]router.Route) {
		m["app.example.test"] = router.Route{Deployment: "dnew", Backend: newApp}
		m["dold.example.test"] = router.Route{Deployment: "dold", State: router.Stopped}
	})
	if res := mustGet(t, client, url, "app.example.test", ""); res.body != "new" {
		t.Fatalf("new request reached %q; want new", res.body)
	}
	if res := mustGet(t, client, url, "dold.example.test", ""); res.status != http.StatusGone {
		t.Fatalf("old preview URL: status %d; want 410", res.status)
	}

	releaseOnce.Do(func() { close(release) })
	select {
	case r := <-slow:
		if r.err != nil || r.res.status != 200 || r.res.body != "old" {
			t.Fatalf("in-flight request: %+v, %v; want 200 old", r.res, r.err)
		}
	case <-time.After(wait):
		t.Fatal("in-flight request did not complete")
	}
}

func TestBackendErrors(t *testing.T) {
	// A listener that accepts and closes at once.
	closesAtOnce := rawApp(t, func(net.Conn) {})
	// An address nothing listens on.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := closed.Addr().String()
	closed.Close()

	unblock := make(chan struct{})
	t.Cleanup(func() { close(unblock) })

	tests := []struct {
		name       string
		backend    router.Backend
		wantStatus int
		wantText   string
	}{
		{"refused", tcpBackend(refusedAddr), 502, "did not answer"},
		{"closes at once", tcpBackend(closesAtOnce), 502, "did not answer"},
		{"no connection", router.BackendFunc(func(context.Context) (net.Conn, error) { return nil, nil }), 502, "did not answer"},
		{"error", router.BackendFunc(func(context.Context) (net.Conn, error) {
			return nil, errors.New("runc: netns /var/run/netns/x: no such file")
		}), 502, "did not answer"},
		{"honours ctx", router.BackendFunc(func(ctx context.Context) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}), 503, "could not be reached in time"},
		{"ignores ctx", router.BackendFunc(func(context.Context) (net.Conn, error) {
			<-unblock
			return nil, errors.New("woke too late")
		}), 503, "could not be reached in time"},
	}
	var tab router.Table
	for i, tt := range tests {
		tab.Set(fmt.Sprintf("h%d.example.test", i), router.Route{Deployment: fmt.Sprintf("dep%d", i), Backend: tt.backend})
	}
	url, client := startRouter(t, &router.Router{Table: &tab, DialTimeout: 100 * time.Millisecond})

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, accept := range []string{"", "text/html"} {
				res := mustGet(t, client, url, fmt.Sprintf("h%d.example.test", i), accept)
				if res.status != tt.wantStatus {
					t.Fatalf("status = %d; want %d (body %q)", res.status, tt.wantStatus, res.body)
				}
				for _, want := range []string{tt.wantText, fmt.Sprintf("Deployment dep%d", i)} {
					if !strings.Contains(res.body, want) {
						t.Errorf("body %q does not contain %q", res.body, want)
					}
				}
				for _, leak := range []string{"dial", "127.0.0.1", "refused", "runc", "netns", "EOF", "goroutine", "woke"} {
					if strings.Contains(res.body, leak) {
						t.Errorf("body leaks %q: %q", leak, res.body)
					}
				}
				if tt.wantStatus == 503 && res.header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
			}
		})
	}
}

func TestOnRequest(t *testing.T) {
	var (
		mu    sync.Mutex
		calls = map[string]int{}
	)
	var tab router.Table
	tab.Set("a.test", router.Route{Deployment: "da", Backend: startApp(t, named("a"))})
	tab.Set("b.test", router.Route{Deployment: "db", Backend: startApp(t, named("b"))})
	tab.Set("s.test", router.Route{Deployment: "ds", State: router.Stopped})
	dones := map[string]int{}
	url, client := startRouter(t, &router.Router{Table: &tab, OnRequest: func(d string) {
		mu.Lock()
		calls[d]++
		mu.Unlock()
	}, OnRequestDone: func(d string) {
		mu.Lock()
		dones[d]++
		mu.Unlock()
	}})
	for host, n := range map[string]int{"a.test": 5, "b.test": 3, "s.test": 2, "unknown.test": 1} {
		for range n {
			mustGet(t, client, url, host, "")
		}
	}
	// OnRequestDone may run just after the client has read the answer.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := dones["da"] + dones["db"]
		mu.Unlock()
		if n >= 8 {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || calls["da"] != 5 || calls["db"] != 3 {
		t.Errorf("OnRequest calls = %v; want map[da:5 db:3]", calls)
	}
	if len(dones) != 2 || dones["da"] != 5 || dones["db"] != 3 {
		t.Errorf("OnRequestDone calls = %v; want map[da:5 db:3]", dones)
	}
}

// TestPoolsDoNotMix alternates keep-alive requests between two deployments:
// each connection pool must stay with its own deployment.
func TestPoolsDoNotMix(t *testing.T) {
	var tab router.Table
	var conns [2]atomic.Int64
	for i, name := range []string{"one", "two"} {
		srv := httptest.NewUnstartedServer(named(name))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns[i].Add(1)
			}
		}
		srv.Start()
		t.Cleanup(srv.Close)
		// Deployment ids that are not DNS labels are hashed into pool keys.
		dep := map[string]string{"one": "d1", "two": "Not A Label/2"}[name]
		tab.Set(name+".test", router.Route{Deployment: dep, Backend: tcpBackend(srv.Listener.Addr().String())})
	}
	url, client := startRouter(t, &router.Router{Table: &tab})
	for i := range 100 {
		name := []string{"one", "two"}[i%2]
		if res := mustGet(t, client, url, name+".test", ""); res.body != name {
			t.Fatalf("request %d for %s reached %q", i, name, res.body)
		}
	}
	if conns[0].Load() == 0 || conns[1].Load() == 0 || conns[0].Load()+conns[1].Load() > 10 {
		t.Errorf("backend connections = %d, %d; want a few each (reused)", conns[0].Load(), conns[1].Load())
	}
}

func TestRequestBody(t *testing.T) {
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: startApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read first: an HTTP/1 server may not read a body after writing.
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %s", r.Method, b)
	}))})
	url, client := startRouter(t, &router.Router{Table: &tab})
	req, _ := http.NewRequest("POST", url, strings.NewReader(strings.Repeat("x", 100000)))
	req.Host = "app.test"
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := "POST " + strings.Repeat("x", 100000); string(b) != want {
		t.Errorf("status %d, body of %d bytes (%.200q); want the %d bytes sent back", res.StatusCode, len(b), b, len(want))
	}
}

// TestCloseIdleConnectionsToASilentInstance plays an instance that ended
// without closing its connections (a VM switched off): the router's pooled
// connection to it would hold the next request for ever. Once told that
// the deployment's instance stopped, the router dials afresh.
func TestCloseIdleConnectionsToASilentInstance(t *testing.T) {
	var generation atomic.Int64 // connections accepted before a bump are the dead instance's
	type genKey struct{}
	done := make(chan struct{})
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g := r.Context().Value(genKey{}).(int64); g != generation.Load() {
			<-done // silent: no answer, no FIN
			return
		}
		fmt.Fprintf(w, "instance %d", generation.Load())
	}))
	app.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, genKey{}, generation.Load())
	}
	app.Start()
	t.Cleanup(app.Close)
	t.Cleanup(func() { close(done) })
	var tb router.Table
	tb.Set("app.example.test", router.Route{Deployment: "dep1", Project: "p", Backend: tcpBackend(app.Listener.Addr().String())})
	rt := &router.Router{Table: &tb}
	url, client := startRouter(t, rt)
	get := func() (string, error) {
		req, _ := http.NewRequest("GET", url+"/", nil)
		req.Host = "app.example.test"
		res, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}
	if body, err := get(); err != nil || body != "instance 0" {
		t.Fatalf("first GET: %q %v", body, err)
	}
	generation.Add(1) // the instance ended silently; the next one answers new connections
	rt.CloseIdleConnectionsTo("dep1")
	if body, err := get(); err != nil || body != "instance 1" {
		t.Fatalf("GET after the instance stopped: %q %v, want an answer from a new connection", body, err)
	}
}

// A route's own DialTimeout, longer than the router's, lets a slow wake
// finish (a VM that boots for longer than the router's default); one
// shorter than the router's does not cut the router's.
func TestRouteDialTimeout(t *testing.T) {
	app := startApp(t, named("woken"))
	slow := func(d time.Duration) router.Backend {
		return router.BackendFunc(func(ctx context.Context) (net.Conn, error) {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return app.DialContext(ctx)
		})
	}
	var tab router.Table
	// The router waits 100 ms; the wake takes 400 ms.
	tab.Set("long.test", router.Route{Deployment: "dlong", Backend: slow(400 * time.Millisecond), DialTimeout: time.Minute})
	tab.Set("default.test", router.Route{Deployment: "ddefault", Backend: slow(400 * time.Millisecond)})
	tab.Set("short.test", router.Route{Deployment: "dshort", Backend: slow(50 * time.Millisecond), DialTimeout: time.Nanosecond})
	url, client := startRouter(t, &router.Router{Table: &tab, DialTimeout: 100 * time.Millisecond})
	for host, want := range map[string]int{"long.test": 200, "default.test": 503, "short.test": 200} {
		if res := mustGet(t, client, url, host, ""); res.status != want {
			t.Errorf("%s: status %d, want %d (body %q)", host, res.status, want, res.body)
		}
	}
}

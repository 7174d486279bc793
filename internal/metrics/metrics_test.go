package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/metrics"
	"github.com/slipwayhq/slipway/internal/router"
)

const wait = 10 * time.Second

func tcpBackend(addr string) router.Backend {
	return router.BackendFunc(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
}

// app answers as its path says.
func app() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			io.WriteString(w, "hello") // 5 bytes
		case "/redirect":
			http.Redirect(w, r, "/", http.StatusFound)
		case "/boom":
			w.WriteHeader(http.StatusInternalServerError)
		case "/echo":
			io.Copy(w, r.Body)
		case "/upgrade":
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "test")
			w.WriteHeader(http.StatusSwitchingProtocols)
			c, brw, err := http.NewResponseController(w).Hijack()
			if err == nil {
				brw.WriteString("bye")
				brw.Flush()
				c.Close()
			}
		default:
			http.NotFound(w, r)
		}
	}))
}

// serveRouter serves rt as the server does (a Front, net/http behind it)
// and returns its URL.
func serveRouter(t *testing.T, rt *router.Router) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := &router.Front{Router: rt, Fallback: &http.Server{Handler: rt, ReadHeaderTimeout: wait}}
	go front.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		front.Shutdown(ctx)
		rt.CloseIdleConnections()
	})
	return "http://" + ln.Addr().String()
}

// scrape reads /metrics over HTTP and returns every sample by its series
// ("name{label="value",...}").
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %s %s", res.Status, res.Header.Get("Content-Type"))
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		samples[line[:i]] = v
	}
	return samples
}

// series names a sample of deployment d of project shop in production,
// with its labels in the order the text format prints them (sorted):
// class before the others, result after.
func series(name, d string, extra ...string) string {
	l := fmt.Sprintf(`deployment=%q,environment="production",project="shop"`, d)
	switch {
	case len(extra) == 2 && extra[0] == "class":
		l = fmt.Sprintf("class=%q,", extra[1]) + l
	case len(extra) == 2:
		l += fmt.Sprintf(",%s=%q", extra[0], extra[1])
	}
	return name + "{" + l + "}"
}

// TestRouterTraffic drives requests of every kind through a router, by
// its front and by net/http, to an app on loopback and to one that is
// down, and reads the counts back from /metrics.
func TestRouterTraffic(t *testing.T) {
	a := app()
	defer a.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()

	m := metrics.New(metrics.Config{})
	var tab router.Table
	tab.Set("shop.test", router.Route{Deployment: "d1", Project: "shop", Environment: "production", Backend: tcpBackend(a.Listener.Addr().String())})
	tab.Set("down.test", router.Route{Deployment: "d2", Project: "shop", Environment: "production", Backend: tcpBackend(deadAddr)})
	tab.Set("gone.test", router.Route{Deployment: "d3", Project: "shop", Environment: "production", State: router.Stopped})
	rt := &router.Router{Table: &tab, Metrics: m}
	front := serveRouter(t, rt)
	netHTTP := httptest.NewServer(rt)
	defer netHTTP.Close()
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	ms := httptest.NewServer(mux)
	defer ms.Close()

	client := &http.Client{Timeout: wait, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(base, method, host, path, body string, want int) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body == "" {
			req.Body = nil
		}
		req.Host = host
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s%s: %v", method, host, path, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("%s %s%s: %d, want %d", method, host, path, res.StatusCode, want)
		}
	}
	for range 3 {
		do(front, "GET", "shop.test", "/", "", 200) // the front's own path
	}
	do(netHTTP.URL, "GET", "shop.test", "/", "", 200)           // net/http's fast path
	do(front, "POST", "shop.test", "/echo", "hello world", 200) // handed over: ReverseProxy
	do(front, "HEAD", "shop.test", "/", "", 200)                // no body
	do(front, "GET", "shop.test", "/redirect", "", 302)
	do(front, "GET", "shop.test", "/missing", "", 404)
	do(netHTTP.URL, "GET", "shop.test", "/missing", "", 404)
	do(front, "GET", "shop.test", "/boom", "", 500)
	do(front, "GET", "down.test", "/", "", 502)        // the router's page
	do(netHTTP.URL, "PUT", "down.test", "/", "x", 502) // the same through ReverseProxy
	// A protocol switch (as a WebSocket's), through ReverseProxy's hijack.
	up, err := net.Dial("tcp", strings.TrimPrefix(front, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(up, "GET /upgrade HTTP/1.1\r\nHost: shop.test\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	up.SetReadDeadline(time.Now().Add(wait))
	switched, _ := io.ReadAll(up)
	up.Close()
	if !strings.HasPrefix(string(switched), "HTTP/1.1 101 ") || !strings.HasSuffix(string(switched), "bye") {
		t.Fatalf("upgrade: %q", switched)
	}
	do(front, "GET", "gone.test", "/", "", 410)    // a page, not proxied: not counted
	do(front, "GET", "nowhere.test", "/", "", 404) // unknown host: not counted

	// The upgrade is counted when the router sees its connection close,
	// which may come after the requests above: wait for it.
	s := scrape(t, ms.URL+"/metrics")
	for deadline := time.Now().Add(wait); s[series("slipway_router_requests_total", "d1", "class", "1xx")] == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		s = scrape(t, ms.URL+"/metrics")
	}
	for _, c := range []struct {
		series string
		want   float64
	}{
		{series("slipway_router_requests_total", "d1", "class", "2xx"), 6},
		{series("slipway_router_requests_total", "d1", "class", "3xx"), 1},
		{series("slipway_router_requests_total", "d1", "class", "4xx"), 2},
		{series("slipway_router_requests_total", "d1", "class", "5xx"), 1},
		{series("slipway_router_requests_total", "d1", "class", "1xx"), 1}, // the upgrade
		{series("slipway_router_requests_total", "d2", "class", "5xx"), 2},
		{series("slipway_router_requests_total", "d2", "class", "2xx"), 0},
		{series("slipway_router_request_duration_seconds_count", "d1"), 10},
		{series("slipway_router_request_duration_seconds_count", "d2"), 2},
		{series("slipway_router_request_body_bytes_total", "d1"), 11},
		{series("slipway_router_request_body_bytes_total", "d2"), 0}, // never reached the app
	} {
		if got, ok := s[c.series]; !ok || got != c.want {
			t.Errorf("%s = %v (present %v), want %v", c.series, got, ok, c.want)
		}
	}
	// Response bodies: 4×"hello", the echo, the redirect's and 404s'
	// bodies, none for HEAD and /boom: at least 4×5+11 bytes.
	if got := s[series("slipway_router_response_body_bytes_total", "d1")]; got < 31 {
		t.Errorf("response bytes of d1 = %v, want ≥ 31", got)
	}
	if got := s[series("slipway_router_response_body_bytes_total", "d2")]; got <= 0 {
		t.Errorf("response bytes of d2 (its error pages) = %v, want > 0", got)
	}
	for k := range s {
		if strings.Contains(k, `deployment="d3"`) {
			t.Errorf("a stopped deployment's page was counted: %s", k)
		}
	}
	if _, ok := s["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	if _, ok := s["process_resident_memory_bytes"]; !ok {
		t.Error("no process metrics")
	}
}

// TestCardinalityBounded lets 1,000 deployments come and go, each with a
// request through the router, a wake and a restart, and checks that only
// the series of those still there remain.
func TestCardinalityBounded(t *testing.T) {
	a := app()
	defer a.Close()
	m := metrics.New(metrics.Config{})
	var tab router.Table
	rt := &router.Router{Table: &tab, Metrics: m}
	front := serveRouter(t, rt)
	client := &http.Client{Timeout: wait}
	backend := tcpBackend(a.Listener.Addr().String())

	count := func() int {
		fams, err := m.Gatherer().Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range fams {
			if strings.HasPrefix(f.GetName(), "slipway_") && !strings.HasPrefix(f.GetName(), "slipway_build_") {
				n += len(f.GetMetric())
			}
		}
		return n
	}
	const total, kept = 1000, 10
	var perDeployment int
	for i := range total {
		d := metrics.Deployment{ID: fmt.Sprintf("d%04d", i), Project: fmt.Sprintf("p%d", i%50), Environment: "production"}
		host := d.ID + ".test"
		tab.Set(host, router.Route{Deployment: d.ID, Project: d.Project, Environment: d.Environment, Backend: backend})
		req, _ := http.NewRequest("GET", front+"/", nil)
		req.Host = host
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		m.Woke(d, 30*time.Millisecond, 2, nil)
		m.Restarted(d)
		if i == 0 {
			perDeployment = count()
		}
		if i < total-kept {
			// Stopped: the route says so, and its series go.
			tab.Set(host, router.Route{Deployment: d.ID, Project: d.Project, State: router.Stopped})
			m.Forget(d)
			// Late news of it changes nothing.
			m.Woke(d, time.Millisecond, 0, nil)
			m.Restarted(d)
			m.Deployment(router.Route{Deployment: d.ID}).Observe(200, time.Millisecond, 0, 5)
		}
	}
	t.Logf("%d series per deployment", perDeployment)
	if perDeployment < 5 {
		t.Fatalf("only %d series for one deployment", perDeployment)
	}
	if got, want := count(), kept*perDeployment; got != want {
		t.Errorf("%d series after %d deployments came and %d went, want %d (%d per deployment kept)",
			got, total, total-kept, want, perDeployment)
	}
}

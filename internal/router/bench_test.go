package router_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/metrics"
	"github.com/slipwayhq/slipway/internal/router"
)

// BenchmarkProxy compares a small request sent straight to an app with the
// same request sent through the router, side by side, over loopback with
// 16 concurrent clients per CPU: through a Front (as the server serves it)
// and through net/http's server alone (as handed-over connections and TLS
// are served). Compare the ns/op of the sub-benchmarks; the difference is
// the router's cost per request; router-metrics is the front with
// Prometheus metrics on (package metrics), as the server runs it, so its
// difference to router is what metrics cost. cpu-ns/op is the CPU
// time the whole process (client, router and app) spent per request.
func BenchmarkProxy(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello, world\n")
	}))
	defer app.Close()

	var tab router.Table
	tab.Set("app.bench.test", router.Route{Deployment: "dbench", Backend: tcpBackend(app.Listener.Addr().String())})
	rt := &router.Router{Table: &tab}
	netHTTP := httptest.NewServer(rt)
	defer netHTTP.Close()
	frontURL, _ := startRouter(b, rt)
	measured := &router.Router{Table: &tab, Metrics: metrics.New(metrics.Config{})}
	measuredURL, _ := startRouter(b, measured)

	for _, bc := range []struct{ name, url, host string }{
		{"direct", app.URL, ""},
		{"router", frontURL, "app.bench.test"},
		{"router-metrics", measuredURL, "app.bench.test"},
		{"router-nethttp", netHTTP.URL, "app.bench.test"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 1024}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			b.ReportAllocs()
			b.SetParallelism(16)
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest("GET", bc.url, nil)
				if bc.host != "" {
					req.Host = bc.host
				}
				for pb.Next() {
					res, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						b.Errorf("status %d", res.StatusCode)
						return
					}
				}
			})
			b.StopTimer()
			// CPU time of the whole process (client, router and app) per
			// request: steadier than ns/op on a busy machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime returns the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

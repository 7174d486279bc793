package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/metrics"
	"github.com/slipwayhq/slipway/internal/store"
)

// startMetrics creates the metrics that the router, the lifecycle and the
// builds report to (wired in newController and serveApps), with each
// running instance's usage read through the driver at scrape time. They
// are served at /metrics on the API listener to API tokens and, with
// MetricsListen, on a listener of their own without a token.
func (s *server) startMetrics(context.Context) error {
	cfg := metrics.Config{Instances: s.liveInstances, Usage: usageReaders(s.drivers)}
	s.metrics = metrics.New(cfg)
	if s.cfg.MetricsListen == "" {
		return nil
	}
	addr := metricsAddr(s.cfg.MetricsListen)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.metricsLn = ln
	s.serveOn(srv.Serve, ln)
	s.onStop(func(ctx context.Context) { srv.Shutdown(ctx) })
	s.log.Info("serving metrics without a token", "listen", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

// metricsAddr puts an address without a host ("9100", ":9100") on
// loopback: metrics served without a token leave the host only when the
// operator names an address that does.
func metricsAddr(addr string) string {
	if !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// liveInstances lists the running instances for the metrics.
func (s *server) liveInstances() []metrics.Instance {
	if s.ctl == nil {
		return nil
	}
	live := s.ctl.Instances()
	out := make([]metrics.Instance, 0, len(live))
	for _, in := range live {
		out = append(out, metrics.Instance{Deployment: deploymentLabels(in.Deployment), Handle: in.Handle})
	}
	return out
}

func deploymentLabels(d store.Deployment) metrics.Deployment {
	return metrics.Deployment{ID: d.ID, Project: d.ProjectName, Environment: d.EnvironmentName}
}

// metricsObserver tells the metrics what the lifecycle does.
type metricsObserver struct{ m *metrics.Metrics }

// StatusChanged records how long a deployment was queued when its build
// begins, and drops a deployment's series once it is stopped or failed.
func (o metricsObserver) StatusChanged(d store.Deployment, from deploy.Status) {
	switch to := deploy.Status(d.Status); {
	case from == deploy.Pending && to == deploy.Initializing:
		o.m.BuildQueued(d.InitializingAt.Sub(d.CreatedAt))
	case to.Terminal():
		o.m.Forget(deploymentLabels(d))
	}
}

func (o metricsObserver) Woke(d store.Deployment, took time.Duration, held int, err error) {
	o.m.Woke(deploymentLabels(d), took, held, err)
}

func (o metricsObserver) Restarted(d store.Deployment, _ deploy.Restart) {
	o.m.Restarted(deploymentLabels(d))
}

// Slept: a sleep is seen in the wake that follows it.
func (o metricsObserver) Slept(store.Deployment) {}

var _ deploy.Observer = metricsObserver{}

package server

import (
	"context"

	"github.com/slipwayhq/slipway/internal/history"
	"github.com/slipwayhq/slipway/internal/metrics"
)

// startHistory samples the metrics into the store's history every
// HistoryInterval, for the dashboard's plots and the API's series.
func (s *server) startHistory(context.Context) error {
	sampler := history.New(history.Config{Store: s.store, Source: historySource{s.metrics},
		Interval: s.cfg.HistoryInterval, Log: s.log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sampler.Run(ctx)
	}()
	s.onStop(func(context.Context) {
		cancel()
		<-done
	})
	return nil
}

// historySource reads the metrics for the history.
type historySource struct{ m *metrics.Metrics }

func (h historySource) Read(ctx context.Context) []history.Reading {
	rs := h.m.Read(ctx)
	out := make([]history.Reading, 0, len(rs))
	for _, r := range rs {
		hr := history.Reading{Deployment: r.Deployment.ID, Requests: r.Requests,
			Instance: r.Instance, CPU: r.CPU, Memory: r.Memory}
		if r.Latency != nil {
			hr.Latency = history.Rebucket(r.LatencyBounds, r.Latency)
		}
		out = append(out, hr)
	}
	return out
}

var _ history.Source = historySource{}

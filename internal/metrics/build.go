package metrics

import (
	"context"
	"time"

	"github.com/slipwayhq/slipway/internal/build"
)

// Builder wraps b so that every build's duration and result, and the
// steps and cache hits of successful ones, are recorded.
func (m *Metrics) Builder(b build.Builder) build.Builder { return &measuredBuilder{b: b, m: m} }

type measuredBuilder struct {
	b build.Builder
	m *Metrics
}

func (mb *measuredBuilder) Build(ctx context.Context, req build.Request) (build.Result, error) {
	began := time.Now()
	res, err := mb.b.Build(ctx, req)
	result := "success"
	if err != nil {
		result = "failure"
	}
	mb.m.buildDuration.WithLabelValues(result).Observe(time.Since(began).Seconds())
	if err == nil {
		mb.m.buildSteps.Add(float64(res.Steps))
		mb.m.buildCached.Add(float64(res.Cached))
	}
	return res, err
}

var _ build.Builder = (*measuredBuilder)(nil)

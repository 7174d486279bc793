package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Reading is one deployment's counters at one moment, as a history of
// them needs (the server feeds package history with them).
type Reading struct {
	Deployment Deployment
	// Requests counts the requests proxied since the deployment's series
	// were created, by status class 1xx … 5xx.
	Requests [5]uint64
	// LatencyBounds are the request-duration histogram's upper bounds
	// and Latency its cumulative bucket counts, then the total; nil when
	// the deployment has had no request since its series were created.
	LatencyBounds []float64
	Latency       []uint64
	// Instance is the running instance's id ("" when none runs), CPU
	// its CPU time since it started and Memory what it is charged now.
	Instance string
	CPU      time.Duration
	Memory   int64
}

// Read returns a Reading of every deployment that has request series or
// a running instance.
func (m *Metrics) Read(ctx context.Context) []Reading {
	m.mu.Lock()
	recs := make(map[string]*deploymentRecorder, len(m.deps))
	for id, r := range m.deps {
		recs[id] = r
	}
	m.mu.Unlock()
	var out []Reading
	index := map[string]int{}
	for id, r := range recs {
		rd := Reading{Deployment: Deployment{ID: id, Project: r.labels[0], Environment: r.labels[1]}}
		for i, c := range r.classes {
			rd.Requests[i] = uint64(value(c).GetCounter().GetValue())
		}
		if h, ok := r.duration.(prometheus.Metric); ok {
			hist := value(h).GetHistogram()
			for _, b := range hist.GetBucket() {
				rd.LatencyBounds = append(rd.LatencyBounds, b.GetUpperBound())
				rd.Latency = append(rd.Latency, b.GetCumulativeCount())
			}
			rd.Latency = append(rd.Latency, hist.GetSampleCount())
		}
		index[id] = len(out)
		out = append(out, rd)
	}
	if m.instances == nil || m.usage == nil {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, usageTimeout)
	defer cancel()
	for _, in := range m.instances() {
		if in.Handle == nil || ctx.Err() != nil {
			continue
		}
		i, ok := index[in.Deployment.ID]
		if ok && out[i].Instance != "" {
			continue
		}
		u, err := m.usage.Usage(ctx, in.Handle)
		if err != nil {
			continue // stopped meanwhile, or asleep
		}
		if !ok {
			i = len(out)
			index[in.Deployment.ID] = i
			out = append(out, Reading{Deployment: in.Deployment})
		}
		out[i].Instance, out[i].CPU, out[i].Memory = in.Handle.ID, u.CPU, u.MemoryBytes
	}
	return out
}

// value reads a metric's current value.
func value(c prometheus.Metric) *dto.Metric {
	var d dto.Metric
	c.Write(&d)
	return &d
}

package history

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// Reading is one deployment's live counters at one moment, cumulative
// since they began (the server's start, or the deployment's first request
// since).
type Reading struct {
	Deployment string
	// Requests counts answered requests by status class, 1xx … 5xx.
	Requests [5]uint64
	// Latency counts request durations per bucket of LatencyBounds (the
	// last is +Inf): cumulative over time, not over buckets.
	Latency []uint64
	// Instance is the running instance's id, "" when none runs (asleep,
	// stopped); CPU is its CPU time since it started, Memory what it is
	// charged now.
	Instance string
	CPU      time.Duration
	Memory   int64
}

// Source reads the live counters of every deployment that has any.
type Source interface {
	Read(ctx context.Context) []Reading
}

// Config configures a Sampler. Store and Source are required.
type Config struct {
	Store  *store.Store
	Source Source
	// Interval is how often Run samples. If zero, 10 seconds.
	Interval time.Duration
	// MaxRows caps the rows of the whole history (all series). If zero,
	// DefaultMaxRows; negative: no cap beyond each series' own.
	MaxRows int
	// Log receives errors. If nil, slog.Default().
	Log *slog.Logger
}

// DefaultMaxRows is the history's cap when Config.MaxRows is zero: about
// 245 series full to MaxRowsPerSeries. A row takes about 130 bytes on
// disk, index included (measured with 81,900 rows), so a full series is
// about 106 KB and the whole history at most about 26 MB.
const DefaultMaxRows = 200_000

// pruneEvery is how often Sample prunes.
const pruneEvery = time.Minute

// Sampler turns readings into the stored history. Sample is not safe for
// concurrent use; Run calls it from one goroutine.
type Sampler struct {
	cfg       Config
	last      map[string]*seen // by deployment id
	sampled   bool             // a Sample has run: deployments seen from now on are new
	lastPrune time.Time
}

// seen is what the previous reading of a deployment said.
type seen struct {
	project  string // its project's id; "" when it is not in the store
	requests [5]uint64
	latency  []uint64
	instance string
	cpu      time.Duration
}

// New returns a Sampler. It panics without cfg.Store or cfg.Source.
func New(cfg Config) *Sampler {
	if cfg.Store == nil || cfg.Source == nil {
		panic("history: Config.Store and Config.Source are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.MaxRows == 0 {
		cfg.MaxRows = DefaultMaxRows
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Sampler{cfg: cfg, last: map[string]*seen{}}
}

// Run samples every Interval until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := s.Sample(ctx, now); err != nil && ctx.Err() == nil {
				s.cfg.Log.Warn("metrics history", "err", err)
			}
		}
	}
}

// Sample reads the counters at now, adds what changed since the previous
// reading to the intervals now falls in, and prunes the history (at most
// once a minute).
func (s *Sampler) Sample(ctx context.Context, now time.Time) error {
	readings := s.cfg.Source.Read(ctx)
	current := make(map[string]bool, len(readings))
	var pts []store.MetricPoint
	totals := map[string]*store.MetricPoint{} // by project id
	var order []string
	for _, r := range readings {
		if current[r.Deployment] {
			continue
		}
		current[r.Deployment] = true
		prev, ok := s.last[r.Deployment]
		if !ok {
			prev = &seen{}
			d, err := s.cfg.Store.GetDeployment(ctx, r.Deployment)
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return err
			default:
				prev.project = d.ProjectID
			}
			s.last[r.Deployment] = prev
		}
		p := s.delta(prev, r, ok)
		if prev.project == "" || (p.Requests == 0 && r.Instance == "") {
			continue
		}
		p.ProjectID, p.DeploymentID = prev.project, r.Deployment
		pts = append(pts, p)
		t, ok := totals[prev.project]
		if !ok {
			t = &store.MetricPoint{ProjectID: prev.project}
			totals[prev.project] = t
			order = append(order, prev.project)
		}
		mem := t.MemoryMax + p.MemoryMax // the project uses its deployments' memory together
		t.Add(p)
		t.MemoryMax = mem
	}
	for id := range s.last {
		if !current[id] {
			delete(s.last, id) // forgotten (stopped) or restarted from zero: a new start
		}
	}
	s.sampled = true
	for _, id := range order {
		pts = append(pts, *totals[id])
	}
	var out []store.MetricPoint
	for _, res := range Resolutions {
		step := int64(res.Step / time.Second)
		at := now.Unix() / step * step
		for _, p := range pts {
			p.Step, p.At = step, at
			p.Latency = append([]uint64(nil), p.Latency...)
			out = append(out, p)
		}
	}
	if err := s.cfg.Store.AddMetricPoints(ctx, out); err != nil {
		return err
	}
	if now.Sub(s.lastPrune) >= pruneEvery || now.Before(s.lastPrune) {
		s.lastPrune = now
		if _, err := s.cfg.Store.PruneMetricPoints(ctx, Cutoffs(now), s.cfg.MaxRows); err != nil {
			return err
		}
	}
	return nil
}

// Cutoffs maps each resolution's step (seconds) to the start of its
// oldest interval kept at now (Unix seconds).
func Cutoffs(now time.Time) map[int64]int64 {
	out := map[int64]int64{}
	for _, res := range Resolutions {
		step := int64(res.Step / time.Second)
		out[step] = now.Unix()/step*step - int64(res.Keep/time.Second)
	}
	return out
}

// delta is what changed between prev and r, and makes r the new prev. A
// counter lower than before started again from zero (a new series or
// instance) and counts whole. An instance's CPU time counts whole when it
// is new since the previous sample; the first sample only takes note of
// the instances already running (their CPU time may span days).
func (s *Sampler) delta(prev *seen, r Reading, known bool) store.MetricPoint {
	var p store.MetricPoint
	diff := func(now, before uint64) uint64 {
		if now >= before {
			return now - before
		}
		return now
	}
	var reqs [5]uint64
	for i := range r.Requests {
		reqs[i] = diff(r.Requests[i], prev.requests[i])
	}
	for _, n := range reqs {
		p.Requests += int64(n)
	}
	p.Errors4xx, p.Errors5xx = int64(reqs[3]), int64(reqs[4])
	if p.Requests > 0 && len(r.Latency) > 0 { // nothing stored for an interval without requests
		p.Latency = make([]uint64, len(r.Latency))
		for i, n := range r.Latency {
			var before uint64
			if i < len(prev.latency) {
				before = prev.latency[i]
			}
			p.Latency[i] = diff(n, before)
		}
	}
	if r.Instance != "" {
		p.MemoryMax = r.Memory
		switch {
		case known && r.Instance == prev.instance:
			if r.CPU >= prev.cpu {
				p.CPU = r.CPU - prev.cpu
			} else {
				p.CPU = r.CPU
			}
		case known || s.sampled:
			p.CPU = r.CPU // started since the previous sample
		}
	}
	prev.requests, prev.latency, prev.instance, prev.cpu = r.Requests, append(prev.latency[:0], r.Latency...), r.Instance, r.CPU
	return p
}

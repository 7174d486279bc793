// Package metrics collects Slipway's metrics where they happen and serves
// them in the Prometheus text format.
//
// What is measured, and by whom:
//   - the router, per deployment: requests by status class, their
//     duration, request and response body bytes (Metrics implements
//     router.Metrics; the router resolves a deployment's counters once per
//     route, not per request);
//   - the lifecycle, per deployment: wakes from zero, their duration, the
//     requests held while waking, and instance restarts (Woke, Restarted);
//   - each running instance's CPU, memory and pids, read from its sandbox
//     (runtime.UsageReader) when /metrics is scraped;
//   - builds: duration and result, time spent queued, steps and cache
//     hits (Builder wraps a build.Builder; BuildQueued);
//   - the server process itself (Go runtime and process collectors).
//
// Labels are bounded: per-deployment series carry project, environment
// and deployment (and the status class or wake result), and Forget drops
// every series of a deployment once it is stopped or failed, so
// deployments that are gone drop out of /metrics. Builds carry only their
// result.
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime"
)

// Deployment names a deployment as its series are labelled.
type Deployment struct {
	ID          string
	Project     string
	Environment string
}

func (d Deployment) labels() []string { return []string{d.Project, d.Environment, d.ID} }

// Instance is a running instance of a deployment, whose usage is read at
// each scrape.
type Instance struct {
	Deployment Deployment
	Handle     *runtime.Handle
}

// Config configures Metrics. The zero value works: no instance usage.
type Config struct {
	// Instances lists the running instances, at most one per deployment,
	// at each scrape. If nil, no instance usage is reported.
	Instances func() []Instance
	// Usage reads an instance's usage. If nil, no instance usage is
	// reported.
	Usage runtime.UsageReader
}

// Metrics holds Slipway's metrics in a registry of its own. It is safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec   // project, environment, deployment, class
	duration     *prometheus.HistogramVec // project, environment, deployment
	requestBytes *prometheus.CounterVec
	responseByte *prometheus.CounterVec
	wakes        *prometheus.CounterVec // …, result
	wakeDuration *prometheus.HistogramVec
	held         *prometheus.CounterVec
	restarts     *prometheus.CounterVec

	buildDuration *prometheus.HistogramVec // result
	buildQueued   prometheus.Histogram
	buildSteps    prometheus.Counter
	buildCached   prometheus.Counter

	// instances and usage read the running instances' usage (Read).
	instances func() []Instance
	usage     runtime.UsageReader

	mu   sync.Mutex
	deps map[string]*deploymentRecorder // by deployment id
	// gone remembers the deployments forgotten most recently, so that a
	// request or wake still in flight when its deployment ended does not
	// bring its series back. A ring: bounded however many come and go.
	gone     map[string]bool
	goneRing []string
	goneNext int
}

// maxGone is how many forgotten deployments are remembered.
const maxGone = 4096

var deploymentLabels = []string{"project", "environment", "deployment"}

// New returns Metrics with everything registered.
func New(cfg Config) *Metrics {
	m := &Metrics{
		reg:  prometheus.NewRegistry(),
		deps: map[string]*deploymentRecorder{},
		gone: map[string]bool{},

		instances: cfg.Instances,
		usage:     cfg.Usage,
	}
	with := func(extra ...string) []string { return append(append([]string{}, deploymentLabels...), extra...) }
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "slipway_router_requests_total",
		Help: "Requests the router proxied to a deployment, by the class of the status the client got (1xx to 5xx; 502/503 are the router's own when the app could not be reached).",
	}, with("class"))
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "slipway_router_request_duration_seconds",
		Help:    "Time from the router reading a request to writing the last byte of its answer, wakes included.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, with())
	m.requestBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "slipway_router_request_body_bytes_total",
		Help: "Request body bytes the router passed from clients to a deployment.",
	}, with())
	m.responseByte = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "slipway_router_response_body_bytes_total",
		Help: "Response body bytes the router sent to clients for a deployment.",
	}, with())
	m.wakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "slipway_deployment_wakes_total",
		Help: "Wakes from zero of a deployment, by result (ok, failed).",
	}, with("result"))
	m.wakeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "slipway_deployment_wake_duration_seconds",
		Help:    "Time from a request finding a deployment asleep to its new instance passing its first health check.",
		Buckets: []float64{.01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 30},
	}, with())
	m.held = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "slipway_deployment_wake_held_requests_total",
		Help: "Requests (connections the router asked for) held while a deployment woke.",
	}, with())
	m.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "slipway_instance_restarts_total",
		Help: "Restarts of a deployment's instance after it exited or failed its health checks.",
	}, with())
	m.buildDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "slipway_build_duration_seconds",
		Help:    "Duration of image builds (build and push), by result (success, failure).",
		Buckets: []float64{.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600},
	}, []string{"result"})
	m.buildQueued = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "slipway_build_queue_wait_seconds",
		Help:    "Time a deployment waited in the build queue (PENDING) before its build began.",
		Buckets: []float64{.01, .1, .5, 1, 5, 10, 30, 60, 300},
	})
	m.buildSteps = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "slipway_build_steps_total",
		Help: "Build steps completed by successful builds, cached ones included.",
	})
	m.buildCached = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "slipway_build_cache_hits_total",
		Help: "Build steps of successful builds that came from the build cache.",
	})
	m.reg.MustRegister(m.requests, m.duration, m.requestBytes, m.responseByte,
		m.wakes, m.wakeDuration, m.held, m.restarts,
		m.buildDuration, m.buildQueued, m.buildSteps, m.buildCached,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.Instances != nil && cfg.Usage != nil {
		m.reg.MustRegister(&usageCollector{list: cfg.Instances, usage: cfg.Usage})
	}
	return m
}

// Handler serves the metrics in the Prometheus text format. It does no
// authentication of its own.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Gatherer is the registry, for tests and other exporters.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// deploymentRecorder holds one deployment's request series, resolved once.
type deploymentRecorder struct {
	labels   []string
	classes  [5]prometheus.Counter // 1xx … 5xx
	duration prometheus.Observer
	in, out  prometheus.Counter
}

// Observe implements router.RequestRecorder.
func (d *deploymentRecorder) Observe(status int, took time.Duration, in, out int64) {
	if c := status/100 - 1; c >= 0 && c < len(d.classes) {
		d.classes[c].Inc()
	}
	if status == http.StatusSwitchingProtocols {
		return // a WebSocket's duration is its session's, not a request's; its bytes are not seen
	}
	d.duration.Observe(took.Seconds())
	if in > 0 {
		d.in.Add(float64(in))
	}
	if out > 0 {
		d.out.Add(float64(out))
	}
}

// discard records nothing: the recorder of a deployment that is gone.
type discard struct{}

func (discard) Observe(int, time.Duration, int64, int64) {}

var classes = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// Deployment implements router.Metrics: the series of route's deployment,
// created on its first request.
func (m *Metrics) Deployment(route router.Route) router.RequestRecorder {
	d := Deployment{ID: route.Deployment, Project: route.Project, Environment: route.Environment}
	if r := m.recorder(d); r != nil {
		return r
	}
	return discard{}
}

// recorder returns d's request series, creating them, or nil if d is gone.
func (m *Metrics) recorder(d Deployment) *deploymentRecorder {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone[d.ID] {
		return nil
	}
	if r, ok := m.deps[d.ID]; ok {
		return r
	}
	l := d.labels()
	r := &deploymentRecorder{
		labels:   l,
		duration: m.duration.WithLabelValues(l...),
		in:       m.requestBytes.WithLabelValues(l...),
		out:      m.responseByte.WithLabelValues(l...),
	}
	for i, c := range classes {
		r.classes[i] = m.requests.WithLabelValues(append(l, c)...)
	}
	m.deps[d.ID] = r
	return r
}

// Woke records a wake from zero of d that took took, with held requests
// waiting on it; err is why it failed, if it did.
func (m *Metrics) Woke(d Deployment, took time.Duration, held int, err error) {
	if m.isGone(d.ID) {
		return
	}
	l := d.labels()
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.wakes.WithLabelValues(append(l, result)...).Inc()
	m.wakeDuration.WithLabelValues(l...).Observe(took.Seconds())
	if held > 0 {
		m.held.WithLabelValues(l...).Add(float64(held))
	}
}

// Restarted records a restart of d's instance.
func (m *Metrics) Restarted(d Deployment) {
	if m.isGone(d.ID) {
		return
	}
	m.restarts.WithLabelValues(d.labels()...).Inc()
}

func (m *Metrics) isGone(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gone[id]
}

// Forget deletes every series of d: it is stopped or failed. Later
// measurements of d (a request still in flight) are dropped.
func (m *Metrics) Forget(d Deployment) {
	m.mu.Lock()
	if r, ok := m.deps[d.ID]; ok {
		// The labels its series were created with (a route may name the
		// project or environment differently than the caller).
		d.Project, d.Environment = r.labels[0], r.labels[1]
		delete(m.deps, d.ID)
	}
	if !m.gone[d.ID] {
		if len(m.goneRing) < maxGone {
			m.goneRing = append(m.goneRing, d.ID)
		} else {
			delete(m.gone, m.goneRing[m.goneNext])
			m.goneRing[m.goneNext] = d.ID
			m.goneNext = (m.goneNext + 1) % maxGone
		}
		m.gone[d.ID] = true
	}
	m.mu.Unlock()
	l := d.labels()
	for _, c := range classes {
		m.requests.DeleteLabelValues(append(l, c)...)
	}
	for _, v := range []*prometheus.CounterVec{m.requestBytes, m.responseByte, m.held, m.restarts} {
		v.DeleteLabelValues(l...)
	}
	m.duration.DeleteLabelValues(l...)
	m.wakeDuration.DeleteLabelValues(l...)
	m.wakes.DeleteLabelValues(append(l, "ok")...)
	m.wakes.DeleteLabelValues(append(l, "failed")...)
}

// BuildQueued records how long a deployment waited for its build to begin.
func (m *Metrics) BuildQueued(wait time.Duration) {
	m.buildQueued.Observe(max(wait, 0).Seconds())
}

// usageCollector reads each running instance's usage at scrape time.
type usageCollector struct {
	list  func() []Instance
	usage runtime.UsageReader
}

var (
	cpuDesc = prometheus.NewDesc("slipway_instance_cpu_seconds_total",
		"CPU time the deployment's running instance has used since it started (from its cgroup).", deploymentLabels, nil)
	memDesc = prometheus.NewDesc("slipway_instance_memory_bytes",
		"Memory charged to the deployment's running instance, page cache included (from its cgroup).", deploymentLabels, nil)
	memLimitDesc = prometheus.NewDesc("slipway_instance_memory_limit_bytes",
		"Memory limit of the deployment's running instance.", deploymentLabels, nil)
	pidsDesc = prometheus.NewDesc("slipway_instance_pids",
		"Processes and threads of the deployment's running instance.", deploymentLabels, nil)
)

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cpuDesc
	ch <- memDesc
	ch <- memLimitDesc
	ch <- pidsDesc
}

// usageTimeout bounds reading the usage of all instances in one scrape.
const usageTimeout = 5 * time.Second

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), usageTimeout)
	defer cancel()
	seen := map[string]bool{}
	for _, in := range c.list() {
		if in.Handle == nil || seen[in.Deployment.ID] || ctx.Err() != nil {
			continue
		}
		u, err := c.usage.Usage(ctx, in.Handle)
		if err != nil {
			continue // stopped meanwhile, or asleep: no series
		}
		seen[in.Deployment.ID] = true
		l := in.Deployment.labels()
		ch <- prometheus.MustNewConstMetric(cpuDesc, prometheus.CounterValue, u.CPU.Seconds(), l...)
		ch <- prometheus.MustNewConstMetric(memDesc, prometheus.GaugeValue, float64(u.MemoryBytes), l...)
		if u.MemoryLimitBytes > 0 {
			ch <- prometheus.MustNewConstMetric(memLimitDesc, prometheus.GaugeValue, float64(u.MemoryLimitBytes), l...)
		}
		ch <- prometheus.MustNewConstMetric(pidsDesc, prometheus.GaugeValue, float64(u.Pids), l...)
	}
}

var (
	_ router.Metrics         = (*Metrics)(nil)
	_ router.RequestRecorder = (*deploymentRecorder)(nil)
	_ prometheus.Collector   = (*usageCollector)(nil)
)

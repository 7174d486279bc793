package web

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/slipwayhq/slipway/internal/history"
	"github.com/slipwayhq/slipway/internal/store"
)

// metricsView is the metrics section of a project's or a deployment's
// page: the plots of its history over one range.
type metricsView struct {
	// URL serves the section alone (charts.js refreshes it and switches
	// ranges in place).
	URL     string
	Range   string
	Ranges  []rangeLink
	Charts  []chartView
	Summary string
	// Refresh is how often, in seconds, the section is worth reloading.
	Refresh int
	// Empty says nothing was measured over the range: no plots then.
	Empty bool
}

type rangeLink struct {
	Name, Label, Href string
	Current           bool
}

// chartView is a chart with its caption.
type chartView struct {
	chart
	Headline string
	Legend   []chartLine
}

var rangeLabels = map[history.Range]string{history.Hour: "Hour", history.Day: "Day", history.Week: "Week"}

// metricsOf reads the history of a deployment (or, with deploymentID "",
// of a project) over the range r's query asks for (an hour if none).
func (h *handler) metricsOf(r *http.Request, projectID, deploymentID, url string) (metricsView, error) {
	rg, err := history.ParseRange(r.URL.Query().Get("range"))
	if err != nil {
		rg = history.Hour
	}
	s, err := history.Read(r.Context(), h.store, projectID, deploymentID, rg, time.Now())
	if err != nil {
		return metricsView{}, err
	}
	v := metricsView{URL: url, Range: string(rg), Refresh: int(max(rg.Step(), 10*time.Second) / time.Second)}
	for _, other := range history.Ranges {
		q := r.URL.Query()
		q.Set("range", string(other))
		v.Ranges = append(v.Ranges, rangeLink{Name: string(other), Label: rangeLabels[other], Href: "?" + q.Encode() + "#metrics", Current: other == rg})
	}
	v.Summary = fmt.Sprintf("%s requests over the last %s, in intervals of %s.", countString(s.Requests), rg, stepString(s.Step))
	v.Charts = charts(s)
	v.Empty = s.Measured == 0
	return v, nil
}

// charts lays out a series as the five plots.
func charts(s history.Series) []chartView {
	n := len(s.Points)
	rate, errs, p50, p95, cpu, mem := make([]*float64, n), make([]*float64, n), make([]*float64, n), make([]*float64, n), make([]*float64, n), make([]*float64, n)
	for i, p := range s.Points {
		rate[i] = ptr(p.RequestsPerSecond)
		errs[i] = p.ErrorRate
		p50[i], p95[i] = p.P50, p.P95
		cpu[i] = ptr(p.CPU)
		mem[i] = ptr(float64(p.MemoryBytes))
	}
	base := chart{From: s.From, Step: s.Step, Span: s.To.Sub(s.From).Truncate(s.Step)}
	mk := func(id, title string, u unit, lines ...chartLine) chartView {
		c := base
		c.ID, c.Title, c.Unit, c.Lines = "chart-"+id, title, u, lines
		return chartView{chart: c}
	}
	req := mk("requests", "Requests", unitRate, chartLine{Name: "requests/s", Class: "req", Values: rate, Area: true})
	req.Headline = countString(s.Requests) + " total"
	er := mk("errors", "Errors (5xx)", unitPercent, chartLine{Name: "5xx share", Class: "err", Values: errs, Area: true})
	er.Headline = "none"
	if s.Requests > 0 {
		er.Headline = fmt.Sprintf("%s (%s)", unitPercent.format(float64(s.Errors5xx)/float64(s.Requests)), countString(s.Errors5xx))
	}
	lat := mk("latency", "Latency", unitSeconds,
		chartLine{Name: "p95", Class: "p95", Values: p95},
		chartLine{Name: "p50", Class: "p50", Values: p50})
	lat.Legend = lat.Lines
	lat.Headline = "–"
	if s.P50 != nil && s.P95 != nil {
		lat.Headline = "p50 " + unitSeconds.format(*s.P50) + " · p95 " + unitSeconds.format(*s.P95)
	}
	cp := mk("cpu", "CPU", unitCores, chartLine{Name: "cores", Class: "cpu", Values: cpu, Area: true})
	cp.Headline = "–"
	if _, peak, ok := lastAndPeak(cpu); ok {
		cp.Headline = "peak " + unitCores.format(peak)
	}
	me := mk("memory", "Memory", unitBytes, chartLine{Name: "memory", Class: "mem", Values: mem, Area: true})
	me.Headline = "peak " + unitBytes.format(float64(s.PeakMemoryBytes))
	return []chartView{req, er, lat, cp, me}
}

func ptr(v float64) *float64 { return &v }

// countString writes n with thousands separated.
func countString(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func stepString(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return plural(int(d/time.Hour), "hour")
	case d >= time.Minute:
		return plural(int(d/time.Minute), "minute")
	}
	return plural(int(d/time.Second), "second")
}

// renderMetrics writes the metrics section alone.
func (h *handler) renderMetrics(w http.ResponseWriter, v metricsView) error {
	var buf bytes.Buffer
	if err := h.pages["project"].ExecuteTemplate(&buf, "metrics", v); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
	return nil
}

func (h *handler) projectMetrics(w http.ResponseWriter, r *http.Request) error {
	p, err := h.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	v, err := h.metricsOf(r, p.ID, "", "/projects/"+p.Name+"/metrics")
	if err != nil {
		return err
	}
	return h.renderMetrics(w, v)
}

func (h *handler) deploymentMetrics(w http.ResponseWriter, r *http.Request) error {
	d, err := h.store.GetDeployment(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	v, err := h.metricsOf(r, d.ProjectID, d.ID, "/deployments/"+d.ID+"/metrics")
	if err != nil {
		return err
	}
	return h.renderMetrics(w, v)
}

// hasRun reports whether a deployment ever started an instance: only then
// has it metrics to show.
func hasRun(d store.Deployment) bool { return !d.DeployingAt.IsZero() }

package api

import (
	"net/http"
	"time"

	"github.com/slipwayhq/slipway/internal/history"
)

// MetricsSeries is a range of the metrics history of a deployment or a
// project (GET …/metrics).
type MetricsSeries struct {
	Range       string    `json:"range"`
	StepSeconds int       `json:"stepSeconds"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	// Over the whole range.
	Requests        int64          `json:"requests"`
	Errors5xx       int64          `json:"errors5xx"`
	P50Ms           *float64       `json:"p50Ms"`
	P95Ms           *float64       `json:"p95Ms"`
	PeakMemoryBytes int64          `json:"peakMemoryBytes"`
	Points          []MetricsPoint `json:"points"`
}

// MetricsPoint is one interval of a MetricsSeries.
type MetricsPoint struct {
	T                 time.Time `json:"t"`
	Requests          int64     `json:"requests"`
	Errors4xx         int64     `json:"errors4xx"`
	Errors5xx         int64     `json:"errors5xx"`
	RequestsPerSecond float64   `json:"requestsPerSecond"`
	ErrorRate         *float64  `json:"errorRate"`
	P50Ms             *float64  `json:"p50Ms"`
	P95Ms             *float64  `json:"p95Ms"`
	CPU               float64   `json:"cpu"`
	MemoryBytes       int64     `json:"memoryBytes"`
}

func ms(s *float64) *float64 {
	if s == nil {
		return nil
	}
	v := *s * 1000
	return &v
}

// SeriesJSON is the API's document of a history series.
func SeriesJSON(s history.Series) MetricsSeries {
	out := MetricsSeries{Range: string(s.Range), StepSeconds: int(s.Step / time.Second), From: s.From, To: s.To,
		Requests: s.Requests, Errors5xx: s.Errors5xx, P50Ms: ms(s.P50), P95Ms: ms(s.P95), PeakMemoryBytes: s.PeakMemoryBytes,
		Points: make([]MetricsPoint, 0, len(s.Points))}
	for _, p := range s.Points {
		out.Points = append(out.Points, MetricsPoint{T: p.At, Requests: p.Requests, Errors4xx: p.Errors4xx, Errors5xx: p.Errors5xx,
			RequestsPerSecond: p.RequestsPerSecond, ErrorRate: p.ErrorRate, P50Ms: ms(p.P50), P95Ms: ms(p.P95),
			CPU: p.CPU, MemoryBytes: p.MemoryBytes})
	}
	return out
}

func (s *Server) projectMetrics(w http.ResponseWriter, r *http.Request) error {
	rg, err := history.ParseRange(r.URL.Query().Get("range"))
	if err != nil {
		return errBadRequest(err.Error())
	}
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	series, err := history.Read(r.Context(), s.store, p.ID, "", rg, time.Now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, SeriesJSON(series))
	return nil
}

func (s *Server) deploymentMetrics(w http.ResponseWriter, r *http.Request) error {
	rg, err := history.ParseRange(r.URL.Query().Get("range"))
	if err != nil {
		return errBadRequest(err.Error())
	}
	d, err := s.store.GetDeployment(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	series, err := history.Read(r.Context(), s.store, d.ProjectID, d.ID, rg, time.Now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, SeriesJSON(series))
	return nil
}

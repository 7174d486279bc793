package history

import (
	"context"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// Point is one interval of a series as the plots show it.
type Point struct {
	At       time.Time // the interval's start
	Requests int64
	// Errors5xx are the requests answered 5xx (the app's, or the
	// router's 502/503 when the app could not be reached); Errors4xx 4xx.
	Errors5xx, Errors4xx int64
	// RequestsPerSecond is Requests over the interval's length (over the
	// part that has passed, for the current interval).
	RequestsPerSecond float64
	// ErrorRate is Errors5xx / Requests; nil without requests.
	ErrorRate *float64
	// P50 and P95 are latency quantiles in seconds, estimated from the
	// histogram; nil without requests.
	P50, P95 *float64
	// CPU is the CPU used, in cores (CPU seconds per second).
	CPU float64
	// MemoryBytes is the most memory seen in the interval; zero when no
	// instance ran.
	MemoryBytes int64
}

// Series is a range of a series, one Point per interval (intervals with
// nothing stored are points of zero), oldest first.
type Series struct {
	Range  Range
	Step   time.Duration
	From   time.Time // the first interval's start
	To     time.Time // when it was read
	Points []Point
	// Measured is how many of the intervals have anything stored.
	Measured int
	// Over the whole range.
	Requests, Errors5xx int64
	P50, P95            *float64
	PeakMemoryBytes     int64
}

// PointReader reads stored intervals (store.Reader does).
type PointReader interface {
	MetricPoints(ctx context.Context, projectID, deploymentID string, step, since int64) ([]store.MetricPoint, error)
}

// Read returns the series of a deployment (or, with deploymentID "", of a
// project's deployments together) over rg, as of now.
func Read(ctx context.Context, r PointReader, projectID, deploymentID string, rg Range, now time.Time) (Series, error) {
	res := rg.resolution()
	step := int64(res.Step / time.Second)
	last := now.Unix() / step * step
	first := last - int64(res.Keep/time.Second)
	stored, err := r.MetricPoints(ctx, projectID, deploymentID, step, first)
	if err != nil {
		return Series{}, err
	}
	byAt := make(map[int64]store.MetricPoint, len(stored))
	for _, p := range stored {
		byAt[p.At] = p
	}
	s := Series{Range: rg, Step: res.Step, From: time.Unix(first, 0).UTC(), To: now, Measured: len(byAt)}
	var all []uint64
	for at := first; at <= last; at += step {
		p := byAt[at]
		length := float64(step)
		if at == last {
			length = max(1, now.Sub(time.Unix(at, 0)).Seconds())
		}
		pt := Point{At: time.Unix(at, 0).UTC(), Requests: p.Requests, Errors5xx: p.Errors5xx, Errors4xx: p.Errors4xx,
			RequestsPerSecond: float64(p.Requests) / length, CPU: p.CPU.Seconds() / length, MemoryBytes: p.MemoryMax}
		if p.Requests > 0 {
			rate := float64(p.Errors5xx) / float64(p.Requests)
			pt.ErrorRate = &rate
		}
		pt.P50, pt.P95 = Quantile(0.5, p.Latency), Quantile(0.95, p.Latency)
		s.Points = append(s.Points, pt)
		s.Requests += p.Requests
		s.Errors5xx += p.Errors5xx
		s.PeakMemoryBytes = max(s.PeakMemoryBytes, p.MemoryMax)
		if len(p.Latency) > len(all) {
			all = append(all, make([]uint64, len(p.Latency)-len(all))...)
		}
		for i, n := range p.Latency {
			all[i] += n
		}
	}
	s.P50, s.P95 = Quantile(0.5, all), Quantile(0.95, all)
	return s, nil
}

// Quantile estimates the q-quantile (0 < q < 1), in seconds, of the
// durations counted per bucket of LatencyBounds (the last +Inf), as
// Prometheus' histogram_quantile does: linearly within the bucket it falls
// in; in the +Inf bucket it is the highest bound. Nil when nothing was
// counted.
func Quantile(q float64, counts []uint64) *float64 {
	var total uint64
	for _, n := range counts {
		total += n
	}
	if total == 0 {
		return nil
	}
	rank := q * float64(total)
	var cum float64
	for i, n := range counts {
		if n == 0 {
			continue
		}
		if cum+float64(n) >= rank {
			if i >= len(LatencyBounds) {
				v := LatencyBounds[len(LatencyBounds)-1]
				return &v
			}
			lower := 0.0
			if i > 0 {
				lower = LatencyBounds[i-1]
			}
			v := lower + (LatencyBounds[i]-lower)*(rank-cum)/float64(n)
			return &v
		}
		cum += float64(n)
	}
	v := LatencyBounds[len(LatencyBounds)-1]
	return &v
}

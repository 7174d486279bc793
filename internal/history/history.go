// Package history keeps a small history of each deployment's and each
// project's requests and resource usage in Slipway's own store, for the
// dashboard's plots and the API's series: no metrics server needed.
//
// A Sampler reads the live counters (requests by status class, the
// request-duration histogram, the running instance's CPU time and
// memory) every few seconds, turns them into what changed since the
// previous reading, and adds that to the intervals it falls in at three
// resolutions (Resolutions): 10 seconds kept for an hour, 5 minutes kept
// for a day, an hour kept for a week. Each deployment has its series, and
// each project one more for all its deployments together (so a project's
// history outlives the deployments that made it). A deployment with no
// requests and no running instance writes nothing.
//
// Bounded: a series holds at most 361 + 289 + 169 = 819 rows (MaxRowsPerSeries),
// older intervals are pruned, series of projects and deployments that no
// longer exist are deleted, and the whole table is capped (Config.MaxRows;
// the oldest rows of deployments go first).
//
// Read turns a series' stored intervals into points for a Range: request
// rate, the share of 5xx answers, p50 and p95 latency estimated from the
// histogram, CPU in cores and peak memory.
package history

import (
	"fmt"
	"time"
)

// Resolution is one level of the history: intervals of Step, kept for
// Keep.
type Resolution struct {
	Step, Keep time.Duration
}

// Resolutions are the levels the Sampler writes, finest first.
var Resolutions = []Resolution{
	{Step: 10 * time.Second, Keep: time.Hour},
	{Step: 5 * time.Minute, Keep: 24 * time.Hour},
	{Step: time.Hour, Keep: 7 * 24 * time.Hour},
}

// MaxRowsPerSeries bounds the rows one series (a deployment, or a
// project's total) holds: each resolution's intervals within Keep, plus
// the one that has just begun.
var MaxRowsPerSeries = func() int {
	n := 0
	for _, r := range Resolutions {
		n += int(r.Keep/r.Step) + 1
	}
	return n
}()

// Range is a span the history can be read over.
type Range string

// The ranges, each read at one resolution.
const (
	Hour Range = "hour"
	Day  Range = "day"
	Week Range = "week"
)

// Ranges lists the ranges, shortest first.
var Ranges = []Range{Hour, Day, Week}

// ParseRange reads a range's name; "" is Hour.
func ParseRange(s string) (Range, error) {
	switch Range(s) {
	case "", Hour:
		return Hour, nil
	case Day, Week:
		return Range(s), nil
	}
	return "", fmt.Errorf("unknown range %q (hour, day or week)", s)
}

// resolution is the level r is read at.
func (r Range) resolution() Resolution {
	switch r {
	case Day:
		return Resolutions[1]
	case Week:
		return Resolutions[2]
	}
	return Resolutions[0]
}

// Span is how far back r reaches.
func (r Range) Span() time.Duration { return r.resolution().Keep }

// Step is the length of r's intervals.
func (r Range) Step() time.Duration { return r.resolution().Step }

// LatencyBounds are the upper bounds, in seconds, of the request-duration
// buckets the history keeps (the router's histogram's); the last bucket
// (+Inf) is implied. A Source whose histogram has other bounds is
// rebucketed onto these (Rebucket).
var LatencyBounds = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Rebucket maps cumulative bucket counts of a histogram with upper bounds
// (the last count is the total, +Inf) onto LatencyBounds, as counts per
// bucket (not cumulative), len(LatencyBounds)+1 of them. Each source
// bucket lands in the first history bucket whose bound is at least its
// own.
func Rebucket(bounds []float64, cumulative []uint64) []uint64 {
	out := make([]uint64, len(LatencyBounds)+1)
	var prev uint64
	for i, c := range cumulative {
		n := c - min(c, prev)
		prev = max(prev, c)
		j := len(LatencyBounds) // +Inf
		if i < len(bounds) {
			for k, b := range LatencyBounds {
				if b >= bounds[i] {
					j = k
					break
				}
			}
		}
		out[j] += n
	}
	return out
}

package server

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricSamples parses the text format into samples by series.
func metricSamples(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// scrape reads the API listener's /metrics with the token.
func (h *harness) scrape() map[string]float64 {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.api+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	res, err := h.http.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		h.t.Fatalf("GET /metrics: %s", res.Status)
	}
	return metricSamples(h.t, res.Body)
}

// TestMetrics deploys an app that scales to zero after a second, wakes it
// with a slow request and reads, while that request is in flight, the
// wake and the instance's usage from /metrics; then the requests, bytes
// and builds; and, once the deployment is stopped, that its series are
// gone.
func TestMetrics(t *testing.T) {
	h := startServer(t)
	h.call("POST", "/api/v1/projects", map[string]string{"name": "metered"}, nil)
	h.do("PATCH", "/api/v1/projects/metered/settings", strings.NewReader(`{"idleTimeout":"1s"}`), "application/json")
	d := h.deployApp("metered")
	labels := `deployment="` + d.ID + `",environment="production",project="metered"`
	host := d.ID + ".slipway.localhost"

	if res, err := http.Get(h.api + "/metrics"); err != nil || res.StatusCode != 401 {
		t.Fatalf("GET /metrics without a token: %v %v, want 401", res.Status, err)
	}

	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(h.runtimeLog(d.ID), "scaled to zero") {
		if time.Now().After(deadline) {
			t.Fatalf("never scaled to zero; log:\n%s", h.runtimeLog(d.ID))
		}
		time.Sleep(100 * time.Millisecond)
	}
	slow := make(chan error, 1)
	go func() {
		code, body, err := h.body(host, "/slow?ms=3000")
		if err == nil && (code != 200 || body != "slow done\n") {
			err = io.ErrUnexpectedEOF
		}
		slow <- err
	}()
	// A wake's series are updated one after another (the count, the
	// duration, the held requests, in that order), so a scrape may fall
	// between them: wait for the last.
	var s map[string]float64
	held := `slipway_deployment_wake_held_requests_total{` + labels + `}`
	deadline = time.Now().Add(20 * time.Second)
	for {
		s = h.scrape()
		if s[held] >= 1 && s[`slipway_instance_pids{`+labels+`}`] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no wake with held requests (%v) or no instance usage in /metrics while the slow request is in flight", s[held])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := s[`slipway_deployment_wakes_total{`+labels+`,result="ok"}`]; got != 1 {
		t.Errorf("wakes = %v, want 1", got)
	}
	if got := s[`slipway_deployment_wake_duration_seconds_count{`+labels+`}`]; got != 1 {
		t.Errorf("wake durations observed = %v, want 1", got)
	}
	cpu, mem := s[`slipway_instance_cpu_seconds_total{`+labels+`}`], s[`slipway_instance_memory_bytes{`+labels+`}`]
	if cpu <= 0 || mem <= 0 {
		t.Errorf("instance usage: cpu %v s, memory %v bytes; want both > 0", cpu, mem)
	}
	if err := <-slow; err != nil {
		t.Fatalf("the slow request: %v", err)
	}
	for range 3 {
		if code, _, err := h.body(host, "/"); err != nil || code != 200 {
			t.Fatalf("GET /: %d %v", code, err)
		}
	}
	s = h.scrape()
	for series, want := range map[string]float64{
		`slipway_router_requests_total{class="2xx",` + labels + `}`:     4,
		`slipway_router_requests_total{class="5xx",` + labels + `}`:     0,
		`slipway_router_request_duration_seconds_count{` + labels + `}`: 4,
		`slipway_router_response_body_bytes_total{` + labels + `}`:      -1, // > 0
		`slipway_build_duration_seconds_count{result="success"}`:        -1,
		`slipway_build_queue_wait_seconds_count`:                        -1,
		`slipway_build_steps_total`:                                     -1,
		`go_goroutines`:                                                 -1,
		`process_resident_memory_bytes`:                                 -1,
	} {
		got, ok := s[series]
		if want < 0 && (!ok || got <= 0) || want >= 0 && got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, map[bool]any{true: "> 0", false: want}[want < 0])
		}
	}

	h.call("POST", "/api/v1/deployments/"+d.ID+"/stop", nil, nil)
	for series := range h.scrape() {
		if strings.Contains(series, d.ID) {
			t.Errorf("a stopped deployment's series is still there: %s", series)
		}
	}
}

// TestMetricsListen serves the metrics on a listener of their own, without
// a token, on loopback when no host is given.
func TestMetricsListen(t *testing.T) {
	for in, want := range map[string]string{":9100": "127.0.0.1:9100", "9100": "127.0.0.1:9100",
		"0.0.0.0:9100": "0.0.0.0:9100", "[::1]:9100": "[::1]:9100"} {
		if got := metricsAddr(in); got != want {
			t.Errorf("metricsAddr(%q) = %q, want %q", in, got, want)
		}
	}
	s := &server{cfg: Config{MetricsListen: "127.0.0.1:0"}, log: slog.New(slog.DiscardHandler), errc: make(chan error, 1)}
	if err := s.startMetrics(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	res, err := http.Get("http://" + s.metricsLn.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s", res.Status)
	}
	if _, ok := metricSamples(t, res.Body)["go_goroutines"]; !ok {
		t.Error("no go_goroutines sample")
	}
}

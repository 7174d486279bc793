package server

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
)

// TestMetricsHistory drives requests through the router to a deployed app
// and reads them back from the series API: the deployment's and its
// project's, with the slow requests in the upper latency and the
// instance's memory.
func TestMetricsHistory(t *testing.T) {
	h := startServer(t)
	d := h.deployApp("plotted")
	host := d.ID + ".slipway.localhost"
	for i := range 10 {
		path := "/"
		if i >= 8 {
			path = "/slow?ms=300"
		}
		if code, _, err := h.body(host, path); err != nil || code != 200 {
			t.Fatalf("GET %s: %d %v", path, code, err)
		}
	}
	var s api.MetricsSeries
	deadline := time.Now().Add(30 * time.Second)
	for {
		h.call("GET", "/api/v1/deployments/"+d.ID+"/metrics", nil, &s)
		if s.Requests >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deployment's series counts %d requests, want 10", s.Requests)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s.Requests != 10 || s.Errors5xx != 0 || s.Range != "hour" || s.StepSeconds != 10 || len(s.Points) != 361 {
		t.Errorf("series: %d requests, %d errors, range %s, step %d, %d points; want 10, 0, hour, 10, 361",
			s.Requests, s.Errors5xx, s.Range, s.StepSeconds, len(s.Points))
	}
	if s.P50Ms == nil || s.P95Ms == nil || *s.P50Ms >= 250 || *s.P95Ms < 250 {
		t.Errorf("latency p50 %v ms, p95 %v ms; want p50 < 250 ms ≤ p95 (2 of 10 requests took 300 ms)", s.P50Ms, s.P95Ms)
	}
	var counted int64
	for _, p := range s.Points {
		counted += p.Requests
	}
	if counted != s.Requests || s.PeakMemoryBytes <= 0 {
		t.Errorf("points add up to %d requests (total %d); peak memory %d", counted, s.Requests, s.PeakMemoryBytes)
	}
	var proj api.MetricsSeries
	h.call("GET", "/api/v1/projects/plotted/metrics?range=day", nil, &proj)
	if proj.Requests != 10 || proj.StepSeconds != 300 || len(proj.Points) != 289 {
		t.Errorf("the project's day: %d requests, step %d, %d points; want 10, 300, 289", proj.Requests, proj.StepSeconds, len(proj.Points))
	}
	// The dashboard plots the same: signed in with the token, the
	// deployment's metrics section counts the requests.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: time.Minute}
	res, err := browser.PostForm(h.api+"/login", url.Values{"secret": {testToken}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	res, err = browser.Get(h.api + "/deployments/" + d.ID + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(page), "10 requests over the last hour") || !strings.Contains(string(page), `<svg xmlns="http://www.w3.org/2000/svg" class="chart"`) {
		t.Errorf("the dashboard's metrics of %s: %s\n%.600s", d.ID, res.Status, page)
	}
	if code := h.call("GET", "/api/v1/projects/plotted/metrics?range=year", nil, nil); code != 400 {
		t.Errorf("range=year: %d, want 400", code)
	}
}

package web

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/history"
	"github.com/slipwayhq/slipway/internal/store"
)

// seedHistory stores a week of made-up history for a deployment and its
// project, shaped like a day's traffic with a burst of errors, and an
// instance that went to sleep for a while (gaps in latency).
func seedHistory(t *testing.T, st *store.Store, d store.Deployment, now time.Time) {
	t.Helper()
	var pts []store.MetricPoint
	for _, res := range history.Resolutions {
		step := int64(res.Step / time.Second)
		last := now.Unix() / step * step
		for at := last - int64(res.Keep/time.Second); at <= last; at += step {
			hours := float64(at%86400) / 3600
			rate := max(0.3, 4+3*math.Sin(hours/24*2*math.Pi)+1.5*math.Sin(float64(at)/700))
			if (last-at)/step%97 < 9 { // asleep: no requests, no instance
				continue
			}
			reqs := int64(rate * float64(step))
			var e5 int64
			if (last-at)/step%53 < 3 {
				e5 = reqs / 12
			}
			lat := make([]uint64, len(history.LatencyBounds)+1)
			lat[3] = uint64(reqs) * 6 / 10
			lat[4] = uint64(reqs) * 3 / 10
			lat[6] = uint64(reqs) - lat[3] - lat[4]
			p := store.MetricPoint{ProjectID: d.ProjectID, DeploymentID: d.ID, Step: step, At: at, Requests: reqs, Errors5xx: e5,
				Latency: lat, CPU: time.Duration(rate * float64(step) * 4e6), MemoryMax: int64((40 + rate*3) * (1 << 20))}
			total := p
			total.DeploymentID = ""
			pts = append(pts, p, total)
		}
	}
	if err := st.AddMetricPoints(context.Background(), pts); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsSections(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	e.project("shop")
	d := e.deploy("shop", deploy.CreateRequest{Promote: true})
	d = e.waitStatus(d.ID, deploy.Running)
	seedHistory(t, e.st, d, time.Now())
	c := e.client()
	c.signIn()

	for _, path := range []string{"/projects/shop", "/deployments/" + d.ID} {
		r := c.get(path)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, r.status)
		}
		mustContain(t, path, r.body, `id="metrics"`, `id="chart-requests"`, `id="chart-errors"`, `id="chart-latency"`,
			`id="chart-cpu"`, `id="chart-memory"`, `<svg xmlns="http://www.w3.org/2000/svg" class="chart"`, `aria-current="true">Hour<`,
			"in intervals of 10 seconds", `class="chart-line chart-line-req"`)
	}
	// The section alone, over a day; a range that does not exist is an
	// hour's.
	r := c.get("/projects/shop/metrics?range=day")
	if r.status != http.StatusOK || strings.Contains(r.body, "<html") {
		t.Fatalf("the section alone: %d, a whole page: %v", r.status, strings.Contains(r.body, "<html"))
	}
	mustContain(t, "the day section", r.body, `aria-current="true">Day<`, "in intervals of 5 minutes", `data-refresh="300"`)
	mustContain(t, "a range that does not exist", c.get("/deployments/"+d.ID+"/metrics?range=year").body, `aria-current="true">Hour<`)
	if r := c.get("/deployments/nosuchdeploy/metrics"); r.status != http.StatusNotFound {
		t.Errorf("metrics of an unknown deployment: %d", r.status)
	}
	// A deployment that never ran has no metrics section.
	failed := e.deploy("shop", deploy.CreateRequest{}, "FAIL")
	e.waitStatus(failed.ID, deploy.Failed)
	if body := c.get("/deployments/" + failed.ID).body; strings.Contains(body, `id="metrics"`) {
		t.Error("a deployment that failed to build shows metrics")
	}

	// A project with nothing measured says so, without empty plots.
	e.project("quiet")
	mustContain(t, "a quiet project", c.get("/projects/quiet").body, `id="metrics"`, "Nothing measured over the last hour")
	if strings.Contains(c.get("/projects/quiet").body, `id="chart-requests"`) {
		t.Error("a project with nothing measured shows empty plots")
	}

	// The API's series say the same.
	for _, path := range []string{"/api/v1/projects/shop/metrics?range=week", "/api/v1/deployments/" + d.ID + "/metrics?range=week"} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var s api.MetricsSeries
		err = json.NewDecoder(res.Body).Decode(&s)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", path, res.StatusCode, err)
		}
		if s.Range != "week" || s.StepSeconds != 3600 || len(s.Points) != 169 || s.Requests == 0 || s.P95Ms == nil || *s.P95Ms <= *s.P50Ms {
			t.Errorf("GET %s: range %s step %d, %d points, %d requests, p50 %v p95 %v", path, s.Range, s.StepSeconds, len(s.Points), s.Requests, s.P50Ms, s.P95Ms)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/projects/shop/metrics?range=year", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusBadRequest {
		t.Errorf("range=year: %v %v, want 400", res.Status, err)
	}
}

// TestBuildStepsShown: the deployment page lists the build's steps as its
// log tells, with how many are done.
func TestBuildStepsShown(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	e.builder.Output = []string{"#2 [1/2] FROM debian", "#2 CACHED", "#3 [2/2] RUN make", "#3 DONE 1.5s"}
	e.project("steps")
	d := e.deploy("steps", deploy.CreateRequest{Promote: true})
	e.waitStatus(d.ID, deploy.Running)
	c := e.client()
	c.signIn()
	mustContain(t, "the deployment page", c.get("/deployments/"+d.ID).body,
		`id="build-steps-count" aria-live="polite">3 of 3 done<`,
		`<li class="bstep bstep-cached" data-step="2">`, `<span class="bstep-name">[2/2] RUN make</span><span class="bstep-took">1.5s</span>`)
}

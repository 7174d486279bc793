package server

import (
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/build/plan"
)

// exampleApp is one app of examples/ deployed end to end, and what it must
// show.
type exampleApp struct {
	dir      string // under examples/
	provider string // the plan's provider: builder "plan:<provider>"
	start    string // the detected (and used) start command
	image    string // the plan's runtime base image: a stand-in of internal/baseimage
	// body checks GET / of deployment id and returns what is wrong, or "".
	body func(id, body string) string
	// coldLog is a line the first build's log must hold: the proof that the
	// dependencies were installed as the example says.
	coldLog string
	// more are further paths and a substring of their answer.
	more map[string]string
}

// offlineExamples are the examples whose dependencies install on a host
// that reaches only the Go module proxy, the npm registry and Debian's
// mirror. examples/fastapi-uv and examples/django-poetry are not among
// them: their plans run `pip install uv` / `pip install poetry` and then
// install from their lock files (FastAPI 0.115, Django 4.2, gunicorn 23),
// none of which the Debian archive has, so they need PyPI.
var offlineExamples = []exampleApp{
	{
		dir: "go", provider: "go", start: "/usr/local/bin/app", image: "debian:bookworm-slim",
		body: contains("hello from go, deployment %s\n"),
	},
	{
		// A real `npm ci` of the example's dependency (ms) from the npm
		// registry, on the stand-in of node:24 (the official Node build).
		dir: "node", provider: "node", start: "npm start", image: "node:24-bookworm-slim",
		body: func(id, body string) string {
			re := regexp.MustCompile(`^hello from node v24\.\d+\.\d+, deployment ` + id + `, up \d+(ms|s|m)\n$`)
			if !re.MatchString(body) {
				return fmt.Sprintf("want a match for %s", re)
			}
			return ""
		},
		coldLog: "added 1 package",
	},
	{
		dir: "static", provider: "static", start: "python3 -m http.server $PORT --bind 0.0.0.0 --directory /app",
		image: "python:3.11-slim-bookworm",
		body:  contains("<h1>hello from a static site</h1>"),
		more:  map[string]string{"/style.css": "font-family"},
	},
	{
		// Debian's flask and gunicorn, carried by the python stand-in:
		// pip finds them installed and fetches nothing.
		dir: "flask-pip", provider: "python", start: "gunicorn --bind 0.0.0.0:$PORT app:app",
		image:   "python:3.11-slim-bookworm",
		body:    contains("hello from flask, deployment %s\n"),
		coldLog: "Requirement already satisfied: flask==2.2.2",
	},
}

// contains checks that the body holds format, with %s replaced by the
// deployment id when format has one.
func contains(format string) func(id, body string) string {
	return func(id, body string) string {
		want := format
		if strings.Contains(format, "%s") {
			want = fmt.Sprintf(format, id)
		}
		if !strings.Contains(body, want) {
			return fmt.Sprintf("want it to contain %q", want)
		}
		return ""
	}
}

// TestExamplesEndToEnd deploys each offline-installable example of
// examples/ twice through the real server (BuildKit, the embedded registry
// with the base-image stand-ins, runc, the router): the first upload is a
// cold build, the second, of the same source, must be served from the build
// cache (every COPY and RUN step CACHED). Each must reach RUNNING, record
// its plan (builder, start command), and answer GET / through the router.
// The durations are logged, not asserted.
func TestExamplesEndToEnd(t *testing.T) {
	h := startServer(t)
	for _, ex := range offlineExamples {
		t.Run(ex.dir, func(t *testing.T) {
			h.t = t
			dir := filepath.Join("..", "..", "examples", ex.dir)
			pl, err := plan.Detect(dir, plan.Options{})
			if err != nil {
				t.Fatalf("detecting the plan of examples/%s: %v", ex.dir, err)
			}
			if pl.Provider != ex.provider || pl.BaseImages.Runtime != ex.image || pl.StartCommand != ex.start {
				t.Fatalf("examples/%s plans provider %q, runtime image %q, start %q; want %q, %q, %q",
					ex.dir, pl.Provider, pl.BaseImages.Runtime, pl.StartCommand, ex.provider, ex.image, ex.start)
			}
			project := "ex-" + ex.dir
			if code := h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: project}, nil); code != http.StatusCreated {
				t.Fatalf("creating project %s: %d", project, code)
			}

			cold, coldTook := deployExample(h, project, dir)
			coldLog := logText(h.buildLog(cold.ID))
			checkDeployment(t, h, ex, cold, pl)
			if ex.coldLog != "" {
				if i := strings.Index(coldLog, ex.coldLog); i < 0 {
					t.Errorf("the first build's log lacks %q:\n%s", ex.coldLog, coldLog)
				} else {
					line, _, _ := strings.Cut(coldLog[strings.LastIndex(coldLog[:i], "\n")+1:], "\n")
					t.Logf("first build: %s", line)
				}
			}
			for _, img := range []string{pl.BaseImages.Build, pl.BaseImages.Runtime} {
				if !strings.Contains(coldLog, "docker.io/library/"+img) {
					t.Errorf("the build log never names the base image %s", img)
				}
			}
			if ex.provider == "python" && strings.Contains(coldLog, "Downloading ") {
				t.Errorf("pip downloaded packages; the stand-in should satisfy them all:\n%s", coldLog)
			}
			// The first deployment of a project is its current one.
			if code, body, err := h.body(project+".slipway.localhost", "/"); err != nil || code != 200 {
				t.Errorf("GET %s.slipway.localhost/: %d %v", project, code, err)
			} else if why := ex.body(cold.ID, body); why != "" {
				t.Errorf("GET %s.slipway.localhost/ = %q: %s", project, body, why)
			}

			warm, warmTook := deployExample(h, project, dir)
			checkDeployment(t, h, ex, warm, pl)
			cached, ran := buildSteps(h.buildLog(warm.ID))
			if len(cached) == 0 || len(ran) > 0 {
				t.Errorf("rebuilding the same source: steps run again %q, cached %q; want every COPY and RUN step cached", ran, cached)
			}
			t.Logf("examples/%s (%s on %s): cold upload → RUNNING %s (build %s); warm %s (build %s, %d steps cached)",
				ex.dir, cold.Builder, pl.BaseImages.Build, coldTook.Round(100*time.Millisecond),
				(time.Duration(cold.BuildDurationMS) * time.Millisecond).Round(100*time.Millisecond),
				warmTook.Round(100*time.Millisecond),
				(time.Duration(warm.BuildDurationMS) * time.Millisecond).Round(100*time.Millisecond), len(cached))
		})
	}
}

// deployExample uploads dir to project and waits until the deployment is
// RUNNING (failing the test with its build log if it is not); it returns
// the deployment and the time from upload to RUNNING.
func deployExample(h *harness, project, dir string) (api.Deployment, time.Duration) {
	h.t.Helper()
	start := time.Now()
	d := h.wait(h.upload(project, dir, "").ID)
	took := time.Since(start)
	if d.Status != "RUNNING" {
		h.t.Fatalf("deploying %s: %s %s\nbuild log:\n%s\nruntime log:\n%s", dir, d.Status, d.FailureReason,
			logText(h.buildLog(d.ID)), h.runtimeLog(d.ID))
	}
	return d, took
}

// checkDeployment checks the plan facts recorded on d and its answers at
// its preview URL.
func checkDeployment(t *testing.T, h *harness, ex exampleApp, d api.Deployment, pl *plan.Plan) {
	t.Helper()
	if want := "plan:" + ex.provider; d.Builder != want {
		t.Errorf("builder = %q, want %q", d.Builder, want)
	}
	if d.StartCommand != ex.start || d.DetectedStartCommand != ex.start {
		t.Errorf("startCommand %q, detectedStartCommand %q; want both %q", d.StartCommand, d.DetectedStartCommand, ex.start)
	}
	if d.ImageDigest == "" || !strings.Contains(d.Image, "@sha256:") {
		t.Errorf("image %q, digest %q", d.Image, d.ImageDigest)
	}
	host := d.ID + ".slipway.localhost"
	code, body, err := h.body(host, "/")
	if err != nil || code != 200 {
		t.Errorf("GET %s/: %d %q %v\nruntime log:\n%s", host, code, body, err, h.runtimeLog(d.ID))
	} else if why := ex.body(d.ID, body); why != "" {
		t.Errorf("GET %s/ = %q: %s", host, body, why)
	}
	for path, want := range ex.more {
		if code, body, err := h.body(host, path); err != nil || code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s%s: %d %q %v; want 200 with %q", host, path, code, body, err, want)
		}
	}
}

// stepLine is a line of BuildKit's progress as the build log keeps it:
// "#7 [2/4] RUN npm ci", "#7 CACHED", "#7 DONE 2.1s".
var stepLine = regexp.MustCompile(`^#(\d+) (.*)$`)

// buildSteps returns the Dockerfile COPY and RUN steps of a build log that
// BuildKit reported CACHED, and those it ran.
func buildSteps(lines []api.LogLine) (cached, ran []string) {
	names := map[string]string{}
	for _, l := range lines {
		m := stepLine.FindStringSubmatch(l.Text)
		if m == nil {
			continue
		}
		name, seen := names[m[1]]
		if !seen {
			names[m[1]] = m[2]
			continue
		}
		if !regexp.MustCompile(`^\[[^\]]+\] (COPY|RUN) `).MatchString(name) {
			continue
		}
		switch {
		case m[2] == "CACHED":
			cached = append(cached, name)
		case strings.HasPrefix(m[2], "DONE "):
			ran = append(ran, name)
		}
	}
	return cached, ran
}

func logText(lines []api.LogLine) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Text + "\n")
	}
	return b.String()
}

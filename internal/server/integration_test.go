package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/source"
)

// These tests run the whole server for real: SQLite, the embedded registry,
// a buildkitd it starts, runc and the router. They need root, runc,
// buildkitd and the base images of scripts/base-images.sh; under CI they
// fail when one is missing, elsewhere they skip saying why.

const testToken = "sw_integration_test_token"

func requireRealParts(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("integration test cannot run: %s (scripts/setup.sh installs it)", why)
		}
		t.Skipf("skipping integration test: %s (run scripts/setup.sh as root, or set CI to make this fatal)", why)
	}
	if os.Geteuid() != 0 {
		missing("needs root")
	}
	for _, bin := range []string{"runc", "buildkitd", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing(bin + " not found in PATH")
		}
	}
	dir := os.Getenv("SLIPWAY_BASE_IMAGES")
	if dir == "" {
		dir = "/var/lib/slipway/base-images"
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		missing("no base images in " + dir)
	}
	return dir
}

// harness is a running server and an API client for it.
type harness struct {
	t      *testing.T
	api    string
	router string
	http   *http.Client
}

func startServer(t *testing.T) *harness {
	baseImages := requireRealParts(t)
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			DataDir: data, Listen: "127.0.0.1:0", RouterListen: "127.0.0.1:0",
			BaseImagesDir: baseImages, BootstrapToken: testToken, DeployWindow: 20 * time.Second,
			Out: io.Discard,
			Started: func(a, r net.Addr) {
				started <- [2]net.Addr{a, r}
			},
		})
	}()
	var h *harness
	select {
	case addrs := <-started:
		h = &harness{t: t, api: "http://" + addrs[0].String(), router: addrs[1].String(), http: &http.Client{Timeout: time.Minute}}
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(3 * time.Minute):
		cancel()
		t.Fatal("server did not start within 3 minutes")
	}
	t.Cleanup(func() {
		// Stop every deployment so no sandbox outlives the test, then the server.
		var ps []api.Project
		h.call("GET", "/api/v1/projects", nil, &ps)
		for _, p := range ps {
			var ds []api.Deployment
			h.call("GET", "/api/v1/projects/"+p.Name+"/deployments?limit=500", nil, &ds)
			for _, d := range ds {
				h.call("POST", "/api/v1/deployments/"+d.ID+"/stop", nil, nil)
			}
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("server did not shut down within a minute")
		}
	})
	return h
}

func (h *harness) do(method, path string, body io.Reader, contentType string) (int, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.api+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (h *harness) call(method, path string, in, out any) int {
	h.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	code, b := h.do(method, path, body, "application/json")
	if out != nil && code < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("%s %s: decoding %s: %v", method, path, b, err)
		}
	}
	return code
}

// upload creates a deployment of dir (packed as the CLI packs it).
func (h *harness) upload(project, dir, query string) api.Deployment {
	h.t.Helper()
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		h.t.Fatal(err)
	}
	code, b := h.do("POST", "/api/v1/projects/"+project+"/deployments?"+query, &buf, "application/gzip")
	if code != http.StatusCreated {
		h.t.Fatalf("upload %s: %d %s", dir, code, b)
	}
	var d api.Deployment
	json.Unmarshal(b, &d)
	return d
}

// wait polls the deployment until it is RUNNING, FAILED or STOPPED.
func (h *harness) wait(id string) api.Deployment {
	h.t.Helper()
	deadline := time.Now().Add(6 * time.Minute)
	for time.Now().Before(deadline) {
		var d api.Deployment
		h.call("GET", "/api/v1/deployments/"+id, nil, &d)
		switch d.Status {
		case "RUNNING", "FAILED", "STOPPED":
			return d
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatalf("deployment %s did not finish within 6 minutes", id)
	return api.Deployment{}
}

// get sends a request for host through the router.
func (h *harness) get(host string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+h.router+"/", nil)
	req.Host = host
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatalf("GET %s through the router: %v", host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (h *harness) buildLog(id string) []api.LogLine {
	var page api.LogPage
	h.call("GET", "/api/v1/deployments/"+id+"/build-logs?limit=5000", nil, &page)
	return page.Lines
}

// app writes a throwaway app directory holding files.
func app(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDeployHelloEndToEnd(t *testing.T) {
	h := startServer(t)
	if code := h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: "hello"}, nil); code != http.StatusCreated {
		t.Fatalf("create project: %d", code)
	}

	start := time.Now()
	d := h.upload("hello", "../../examples/hello", "branch=main&commit=0123456789abcdef0123456789abcdef01234567&message=first+deploy&author=Ada+%3Cada%40example.com%3E")
	if d.Status != "PENDING" || d.Trigger != "upload" || d.Commit.Branch != "main" || d.Commit.Author != "Ada <ada@example.com>" {
		t.Fatalf("created deployment: %+v", d)
	}
	d = h.wait(d.ID)
	elapsed := time.Since(start)
	if d.Status != "RUNNING" {
		for _, l := range h.buildLog(d.ID) {
			t.Log(l.Text)
		}
		t.Fatalf("deployment %s is %s: %s", d.ID, d.Status, d.FailureReason)
	}
	t.Logf("upload → RUNNING: %s", elapsed.Round(time.Millisecond))

	// Statuses passed through, in order, as the build log records them.
	var transitions []string
	lines := h.buildLog(d.ID)
	for _, l := range lines {
		if strings.HasPrefix(l.Text, "status ") {
			transitions = append(transitions, strings.TrimPrefix(l.Text, "status "))
		}
		if l.Time.Before(d.CreatedAt.Add(-time.Second)) || l.Time.After(time.Now().Add(time.Second)) {
			t.Errorf("build log line %q has timestamp %s outside the deployment's life", l.Text, l.Time)
		}
	}
	want := []string{"PENDING → INITIALIZING", "INITIALIZING → BUILDING", "BUILDING → DEPLOYING", "DEPLOYING → RUNNING"}
	if strings.Join(transitions, ", ") != strings.Join(want, ", ") {
		t.Errorf("transitions = %q, want %q", transitions, want)
	}
	var sawBuildKit bool
	for _, l := range lines {
		if strings.Contains(l.Text, "go build") {
			sawBuildKit = true
		}
	}
	if !sawBuildKit {
		t.Errorf("build log has no line from BuildKit's RUN go build step; got %d lines", len(lines))
	}

	// Phase timings: three closed, ordered phases.
	if len(d.Phases) != 3 {
		t.Fatalf("phases = %+v", d.Phases)
	}
	for i, p := range d.Phases {
		if p.EndedAt == nil || p.EndedAt.Before(p.StartedAt) || p.DurationMS < 0 {
			t.Errorf("phase %s: %+v", p.Name, p)
		}
		if i > 0 && p.StartedAt.Before(*d.Phases[i-1].EndedAt) {
			t.Errorf("phase %s starts before %s ends", p.Name, d.Phases[i-1].Name)
		}
		t.Logf("phase %-12s %5d ms", p.Name, p.DurationMS)
	}
	if d.ImageDigest == "" || !strings.Contains(d.Image, "@sha256:") || !d.Current {
		t.Errorf("image %q digest %q current %v", d.Image, d.ImageDigest, d.Current)
	}

	// Served through the router at the preview URL and the default hostname.
	for _, host := range []string{d.ID + ".slipway.localhost", "hello.slipway.localhost", "hello-production.slipway.localhost"} {
		code, body := h.get(host)
		if code != 200 || !strings.Contains(body, "hello from") || !strings.Contains(body, d.ID) {
			t.Errorf("GET %s: %d %q", host, code, body)
		}
	}
	if code, _ := h.get("nothing-here.slipway.localhost"); code != http.StatusNotFound {
		t.Errorf("unknown host: %d, want 404", code)
	}

	// The app's own output reaches the runtime log.
	var sawRequest bool
	for i := 0; i < 50 && !sawRequest; i++ {
		var page api.LogPage
		h.call("GET", "/api/v1/deployments/"+d.ID+"/logs?limit=100", nil, &page)
		for _, l := range page.Lines {
			if strings.Contains(l.Text, "GET /") && l.Stream == "stdout" {
				sawRequest = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawRequest {
		t.Error("runtime log never showed the app's request log line")
	}

	t.Run("bad input keeps the current deployment serving", func(t *testing.T) {
		cases := []struct {
			name   string
			files  map[string]string
			reason string
		}{
			{"failing build step", map[string]string{"Dockerfile": "FROM golang:1.23\nRUN echo compiling && exit 3\n"}, "exit code: 3"},
			{"malformed Dockerfile", map[string]string{"Dockerfile": "FORM golang:1.23\n"}, "FORM"},
			{"no Dockerfile", map[string]string{"index.html": "<p>hi</p>"}, "no Dockerfile"},
			{"app exits at once", map[string]string{"Dockerfile": "FROM golang:1.23\nCMD [\"sh\", \"-c\", \"echo giving up; exit 7\"]\n"}, "exited"},
			{"app never answers", map[string]string{"Dockerfile": "FROM golang:1.23\nCMD [\"sleep\", \"3600\"]\n"}, "did not answer"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				bad := h.upload("hello", app(t, tc.files), "")
				bad = h.wait(bad.ID)
				if bad.Status != "FAILED" || !strings.Contains(bad.FailureReason, tc.reason) {
					t.Errorf("status %s, reason %q; want FAILED with %q", bad.Status, bad.FailureReason, tc.reason)
				}
				if len(h.buildLog(bad.ID)) == 0 {
					t.Error("build log of the failed deployment is empty")
				}
				if code, body := h.get("hello.slipway.localhost"); code != 200 || !strings.Contains(body, d.ID) {
					t.Errorf("default hostname after a failed deployment: %d %q", code, body)
				}
				if code, body := h.get(bad.ID + ".slipway.localhost"); code < 400 || strings.Contains(body, "hello from") {
					t.Errorf("preview of the failed deployment: %d %q", code, body)
				}
			})
		}
	})

	t.Run("malformed uploads get 4xx or FAILED", func(t *testing.T) {
		if code, b := h.do("POST", "/api/v1/projects/hello/deployments", strings.NewReader("not a tarball"), "application/gzip"); code != http.StatusBadRequest || !strings.Contains(string(b), "invalid_source") {
			t.Errorf("garbage upload: %d %s", code, b)
		}
		if code, _ := h.do("POST", "/api/v1/projects/nope/deployments", strings.NewReader("x"), "application/gzip"); code != http.StatusNotFound {
			t.Errorf("unknown project: %d", code)
		}
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(bytes.Repeat([]byte("not a tar header "), 100))
		zw.Close()
		code, b := h.do("POST", "/api/v1/projects/hello/deployments", &gz, "application/gzip")
		if code != http.StatusCreated {
			t.Fatalf("gzip of garbage: %d %s", code, b)
		}
		var bad api.Deployment
		json.Unmarshal(b, &bad)
		bad = h.wait(bad.ID)
		if bad.Status != "FAILED" || bad.FailureReason == "" {
			t.Errorf("gzip of garbage: %s %q", bad.Status, bad.FailureReason)
		}
	})

	t.Run("stop", func(t *testing.T) {
		var stopped api.Deployment
		h.call("POST", "/api/v1/deployments/"+d.ID+"/stop", nil, &stopped)
		if stopped.Status != "STOPPED" {
			t.Fatalf("stop: %+v", stopped)
		}
		code, body := h.get(d.ID + ".slipway.localhost")
		if code != http.StatusGone || strings.Contains(body, "hello from") {
			t.Errorf("stopped deployment: %d %q", code, body)
		}
	})
}

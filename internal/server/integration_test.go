package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/source"
	"github.com/slipwayhq/slipway/internal/source/github"
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

// harness is a running server and an API client for it. One server is
// shared by the tests of this package (a cold build is the slow part);
// TestMain stops it.
type harness struct {
	t          *testing.T
	api        string
	router     string
	http       *http.Client
	data       string
	baseImages string
	cancel     context.CancelFunc
	done       chan error
	// github stands in for GitHub's REST API (the server's GitHubAPIURL).
	github *ghStandIn
	// edit, if set, changes the server's configuration before each start.
	edit func(*Config)
}

var shared *harness

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.shutdown()
	}
	os.Exit(code)
}

func startServer(t *testing.T) *harness {
	t.Helper()
	baseImages := requireRealParts(t)
	if shared != nil {
		shared.t = t
		return shared
	}
	h := &harness{t: t, data: t.TempDir(), baseImages: baseImages, http: &http.Client{Timeout: time.Minute},
		api: freeAddr(t), router: freeAddr(t)}
	// The data directory outlives the first test: TestMain removes it.
	h.data = filepath.Join(os.TempDir(), "slipway-integration-"+strconv.Itoa(os.Getpid()))
	os.RemoveAll(h.data)
	// As scripts/run.sh does (mkdir -p): the server must restrict it.
	if err := os.MkdirAll(h.data, 0o755); err != nil {
		t.Fatal(err)
	}
	h.github = newGHStandIn("ghp_clone_token")
	h.start()
	shared = h
	return h
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the server on h's data directory and addresses.
func (h *harness) start() {
	h.t.Helper()
	if err := h.startErr(); err != nil {
		h.t.Fatal(err)
	}
}

// startErr is start, returning its failure. A server that did not start
// leaves no network behind: its cleanup (shutdown) is not registered yet,
// and one that failed late in its start has opened its networks already.
func (h *harness) startErr() error {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		cfg := Config{
			DataDir: h.data, Listen: h.api, RouterListen: h.router,
			BaseImagesDir: h.baseImages, BootstrapToken: testToken, DeployWindow: 20 * time.Second, HistoryInterval: 250 * time.Millisecond,
			GitHubAPIURL: h.github.srv.URL,
			Out:          io.Discard,
			Started:      func(a, r net.Addr) { started <- struct{}{} },
		}
		if h.edit != nil {
			h.edit(&cfg)
		}
		done <- Run(ctx, cfg)
	}()
	select {
	case <-started:
	case err := <-done:
		cancel()
		if rerr := RemoveNetwork(h.data); rerr != nil {
			h.t.Logf("removing the network of the server that did not start: %v", rerr)
		}
		return fmt.Errorf("server did not start: %w", err)
	case <-time.After(3 * time.Minute):
		cancel()
		return errors.New("server did not start within 3 minutes")
	}
	h.cancel, h.done = cancel, done
	if !strings.HasPrefix(h.api, "http://") {
		h.api = "http://" + h.api
	}
	return nil
}

// stop stops the server process's work; app instances keep running.
func (h *harness) stop() error {
	h.cancel()
	select {
	case err := <-h.done:
		return err
	case <-time.After(time.Minute):
		return fmt.Errorf("server did not shut down within a minute")
	}
}

// restart stops and starts the server on the same data and addresses.
func (h *harness) restart() {
	h.t.Helper()
	if err := h.stop(); err != nil {
		h.t.Errorf("stopping the server: %v", err)
	}
	h.api = strings.TrimPrefix(h.api, "http://")
	h.start()
}

// shutdown stops every deployment, so no sandbox outlives the tests, then
// the server, and removes the data. It runs after the tests, so it reports
// to stderr.
func (h *harness) shutdown() {
	get := func(path string, out any) {
		req, _ := http.NewRequest("GET", h.api+path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		if resp, err := h.http.Do(req); err == nil {
			json.NewDecoder(resp.Body).Decode(out)
			resp.Body.Close()
		}
	}
	var ps []api.Project
	get("/api/v1/projects", &ps)
	for _, p := range ps {
		var ds []api.Deployment
		get("/api/v1/projects/"+p.Name+"/deployments?limit=500", &ds)
		for _, d := range ds {
			req, _ := http.NewRequest("POST", h.api+"/api/v1/deployments/"+d.ID+"/stop", nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			if resp, err := h.http.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
	if err := h.stop(); err != nil {
		fmt.Fprintln(os.Stderr, "integration server:", err)
	}
	if err := RemoveNetwork(h.data); err != nil {
		fmt.Fprintln(os.Stderr, "integration server: removing its network:", err)
	}
	os.RemoveAll(h.data)
	h.github.srv.Close()
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
	if fi, err := os.Stat(h.data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory %s: mode %v, %v; want 0700 (it holds unpacked images and the key)", h.data, fi.Mode().Perm(), err)
	}
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
	// The dashboard is served on the API address and asks for a sign-in.
	req, _ := http.NewRequest("GET", h.api+"/", nil)
	req.Header.Set("Accept", "text/html")
	if resp, err := h.http.Do(req); err != nil {
		t.Errorf("dashboard: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(strings.ToLower(string(b)), "sign in") {
			t.Errorf("dashboard without a session: %d %.200s", resp.StatusCode, b)
		}
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
			{"malformed Dockerfile", map[string]string{"Dockerfile": "FORM golang:1.23\n"}, "Dockerfile:1: invalid Dockerfile"},
			{"malformed Dockerfile instruction", map[string]string{"Dockerfile": "FROM golang:1.23\nFORM x\n"}, "FORM"},
			{"nothing to build", map[string]string{"README.txt": "just words"}, "nothing to build in the source tree: looked for"},
			{"broken package.json", map[string]string{"package.json": "{\n  \"name\": \"x\",\n  \"scripts\": {\n}"}, "package.json:4"},
			{"app exits at once", map[string]string{"Dockerfile": "FROM golang:1.23\nCMD [\"sh\", \"-c\", \"echo giving up; exit 7\"]\n"}, "exited"},
			{"app never answers", map[string]string{"Dockerfile": "FROM golang:1.23\nCMD [\"sleep\", \"3600\"]\n"}, "did not answer GET / on port 3000 within the deployment window (20s): it listens on no TCP port"},
			{"app binds another port", map[string]string{"Dockerfile": "FROM golang:1.23\nCMD [\"perl\", \"-MIO::Socket::INET\", \"-e\", \"my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die; sleep 3600\"]\n"}, "it listens on port 8080 instead"},
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

// body sends a request for host and path through the router.
func (h *harness) body(host, path string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://"+h.router+path, nil)
	req.Host = host
	resp, err := h.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (h *harness) runtimeLog(id string) string {
	var page api.LogPage
	h.call("GET", "/api/v1/deployments/"+id+"/logs?limit=1000", nil, &page)
	var b strings.Builder
	for _, l := range page.Lines {
		b.WriteString(l.Text + "\n")
	}
	return b.String()
}

// sleeps returns how many times deployment id has scaled to zero.
func (h *harness) sleeps(id string) int {
	return strings.Count(h.runtimeLog(id), "scaled to zero after")
}

// waitSleep waits, at most within, until deployment id has scaled to zero
// more than n times (n: sleeps, read after the request that last woke it).
// Counting from the last request, not from the wakes the test meant to
// make, a test never mistakes an awake app for a sleeping one: a slow
// deploy's app may sleep, and be woken, before the first measured wake.
func (h *harness) waitSleep(id string, n int, within time.Duration) {
	h.t.Helper()
	for deadline := time.Now().Add(within); h.sleeps(id) <= n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			h.t.Fatalf("deployment %s never scaled to zero again (%d times so far) within %v; runtime log:\n%s", id, n, within, h.runtimeLog(id))
		}
	}
}

// projectWith creates project with settings (its sandbox, idle timeout,
// deploy window…), failing the test if either is refused.
func (h *harness) projectWith(project string, settings map[string]string) {
	h.t.Helper()
	if code := h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: project}, nil); code != http.StatusCreated {
		h.t.Fatalf("creating project %s: %d", project, code)
	}
	if code := h.call("PATCH", "/api/v1/projects/"+project+"/settings", settings, nil); code != http.StatusOK {
		h.t.Fatalf("settings of %s %v: %d", project, settings, code)
	}
}

// deployApp deploys testdata/app to project (created if needed) and waits
// for RUNNING.
func (h *harness) deployApp(project string) api.Deployment {
	h.t.Helper()
	h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: project}, nil)
	d := h.wait(h.upload(project, "testdata/app", "").ID)
	if d.Status != "RUNNING" {
		for _, l := range h.buildLog(d.ID) {
			h.t.Log(l.Text)
		}
		h.t.Fatalf("deploying testdata/app to %s: %s %s", project, d.Status, d.FailureReason)
	}
	return d
}

func TestRuntimeAndRouting(t *testing.T) {
	h := startServer(t)
	start := time.Now()
	alpha := h.deployApp("alpha")
	t.Logf("testdata/app deployed in %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	beta := h.deployApp("beta")
	t.Logf("the same source to another project (build cache hit) deployed in %s", time.Since(start).Round(time.Millisecond))

	t.Run("two apps on port 3000 side by side", func(t *testing.T) {
		for _, d := range []api.Deployment{alpha, beta} {
			code, body, err := h.body(d.Project+".slipway.localhost", "/")
			if err != nil || code != 200 || !strings.Contains(body, "app "+d.ID+" ") {
				t.Errorf("%s: %d %q %v", d.Project, code, body, err)
			}
		}
	})

	t.Run("a crash is noticed at once and the app restarted", func(t *testing.T) {
		_, before, _ := h.body("alpha.slipway.localhost", "/")
		crashed := time.Now()
		h.body("alpha.slipway.localhost", "/crash")
		var after string
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if code, b, err := h.body("alpha.slipway.localhost", "/"); err == nil && code == 200 && b != before {
				after = b
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if after == "" {
			t.Fatalf("alpha was not restarted within 30 s; runtime log:\n%s", h.runtimeLog(alpha.ID))
		}
		t.Logf("crash → serving again: %s", time.Since(crashed).Round(time.Millisecond))
		log := h.runtimeLog(alpha.ID)
		if !strings.Contains(log, "crashing on request") || !strings.Contains(log, "the app exited (exit code 3)") {
			t.Errorf("runtime log lacks the crash and its event:\n%s", log)
		}
	})

	t.Run("switching deployments under load drops nothing", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var total, failed atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil && total.Load() < 200000 {
					code, _, err := h.body("beta.slipway.localhost", "/")
					total.Add(1)
					if err != nil || code != 200 {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %v", code, err))
					}
				}
			}()
		}
		var ids []string
		for i := 0; i < 3; i++ {
			var d api.Deployment
			h.call("POST", "/api/v1/deployments/"+beta.ID+"/redeploy", nil, &d)
			d = h.wait(d.ID)
			if d.Status != "RUNNING" {
				t.Errorf("redeploy %d: %s %s", i, d.Status, d.FailureReason)
			}
			ids = append(ids, d.ID)
		}
		time.Sleep(200 * time.Millisecond)
		cancel()
		wg.Wait()
		t.Logf("%d requests across %d switches, %d failed", total.Load(), len(ids), failed.Load())
		if failed.Load() != 0 {
			t.Errorf("%d of %d requests failed during the switches; first: %v", failed.Load(), total.Load(), firstErr.Load())
		}
		if _, body, _ := h.body("beta.slipway.localhost", "/"); !strings.Contains(body, ids[len(ids)-1]) {
			t.Errorf("beta serves %q, want the newest deployment %s", body, ids[len(ids)-1])
		}
		beta.ID = ids[len(ids)-1]
	})

	t.Run("scale to zero and wake", func(t *testing.T) {
		h.do("PATCH", "/api/v1/projects/beta/settings", strings.NewReader(`{"idleTimeout":"1s"}`), "application/json")
		var d api.Deployment
		h.call("POST", "/api/v1/deployments/"+beta.ID+"/redeploy", nil, &d)
		d = h.wait(d.ID)
		if d.Status != "RUNNING" {
			t.Fatalf("redeploy: %s", d.FailureReason)
		}
		const wakes = 20
		var client []time.Duration
		// A first request (which wakes the app if it already slept), then
		// the measured wakes, each after the app slept again.
		if code, body, err := h.body(d.ID+".slipway.localhost", "/"); err != nil || code != 200 {
			t.Fatalf("GET: %d %q %v", code, body, err)
		}
		slept := h.sleeps(d.ID)
		first := time.Now() // the measured wakes are those recorded since
		for i := 0; i < wakes; i++ {
			h.waitSleep(d.ID, slept, 20*time.Second)
			start := time.Now()
			code, body, err := h.body(d.ID+".slipway.localhost", "/")
			client = append(client, time.Since(start))
			if err != nil || code != 200 || !strings.Contains(body, d.ID) {
				t.Fatalf("wake %d: %d %q %v", i, code, body, err)
			}
			slept = h.sleeps(d.ID)
		}
		// A wake is recorded (a synced commit) once its request is on its
		// way: the last one may land just after its answer.
		var recorded []api.Wake
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			var all []api.Wake
			h.call("GET", "/api/v1/deployments/"+d.ID+"/wakes", nil, &all)
			recorded = slices.DeleteFunc(all, func(w api.Wake) bool { return w.StartedAt.Before(first) })
			if len(recorded) >= wakes || time.Now().After(deadline) {
				break
			}
		}
		if len(recorded) != wakes {
			t.Errorf("recorded %d wakes since the first measured one, want %d", len(recorded), wakes)
		}
		sort.Slice(client, func(i, j int) bool { return client[i] < client[j] })
		t.Logf("wake from zero, request → response through the router, %d wakes: median %s, worst %s",
			wakes, client[wakes/2].Round(100*time.Microsecond), client[wakes-1].Round(100*time.Microsecond))
		h.do("PATCH", "/api/v1/projects/beta/settings", strings.NewReader(`{"idleTimeout":"0"}`), "application/json")
	})

	t.Run("a server restart re-attaches running apps", func(t *testing.T) {
		_, before, err := h.body("alpha.slipway.localhost", "/")
		if err != nil {
			t.Fatal(err)
		}
		h.restart()
		code, after, err := h.body("alpha.slipway.localhost", "/")
		if err != nil || code != 200 || after != before {
			t.Errorf("after restart alpha answers %d %q (%v), want the same process: %q", code, after, err, before)
		}
		if log := h.runtimeLog(alpha.ID); !strings.Contains(log, "re-attached after a server restart") {
			t.Errorf("no re-attach event:\n%s", log)
		}
	})
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Grace", "GIT_AUTHOR_EMAIL=grace@example.com",
		"GIT_COMMITTER_NAME=Grace", "GIT_COMMITTER_EMAIL=grace@example.com", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// copyApp makes a git repository at dir/acme/web holding testdata/app.
func copyApp(t *testing.T, dir string) string {
	repo := filepath.Join(dir, "acme", "web")
	os.MkdirAll(repo, 0o755)
	for _, f := range []string{"Dockerfile", "go.mod", "main.go"} {
		b, err := os.ReadFile(filepath.Join("testdata/app", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(repo, f), b, 0o644)
	}
	git(t, repo, "init", "-q", "-b", "main")
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "first version\n\nfrom the integration test")
	return repo
}

func (h *harness) deployments(project string) []api.Deployment {
	var ds []api.Deployment
	h.call("GET", "/api/v1/projects/"+project+"/deployments?limit=100", nil, &ds)
	return ds
}

func TestGitPushWebhookAndRollback(t *testing.T) {
	h := startServer(t)
	h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: "pushed"}, nil)
	repo := copyApp(t, t.TempDir())
	remote := strings.Replace(h.api, "http://", "http://git:"+testToken+"@", 1) + "/git/pushed.git"

	start := time.Now()
	out := git(t, repo, "push", remote, "main")
	pushToLive := time.Since(start)
	if !strings.Contains(out, "remote: ") || !strings.Contains(out, "is RUNNING") || !strings.Contains(out, "http://pushed.slipway.localhost") {
		t.Fatalf("git push output lacks the build log or the URLs:\n%s", out)
	}
	t.Logf("git push → RUNNING: %s (a warm build cache when testdata/app was built before)", pushToLive.Round(time.Millisecond))
	sha := strings.TrimSpace(git(t, repo, "rev-parse", "HEAD"))
	first := h.deployments("pushed")[0]
	if first.Trigger != "push" || first.Commit.SHA != sha || first.Commit.Branch != "main" ||
		first.Commit.Author != "Grace <grace@example.com>" || !strings.HasPrefix(first.Commit.Message, "first version") || first.Status != "RUNNING" {
		t.Fatalf("pushed deployment: %+v", first)
	}
	if code, body, _ := h.body("pushed.slipway.localhost", "/"); code != 200 || !strings.Contains(body, first.ID) {
		t.Fatalf("pushed app: %d %q", code, body)
	}

	t.Run("unmapped branch and bad token", func(t *testing.T) {
		git(t, repo, "checkout", "-q", "-b", "feature")
		out := git(t, repo, "push", remote, "feature")
		if !strings.Contains(out, "not deployed") {
			t.Errorf("push of an unmapped branch:\n%s", out)
		}
		if n := len(h.deployments("pushed")); n != 1 {
			t.Errorf("an unmapped branch created a deployment (%d)", n)
		}
		bad := strings.Replace(remote, testToken, "sw_wrong", 1)
		cmd := exec.Command("git", "push", bad, "feature")
		cmd.Dir, cmd.Env = repo, append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
		b, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(b), "Authentication failed") {
			t.Errorf("push with a bad token: %v\n%s", err, b)
		}
		git(t, repo, "checkout", "-q", "main")
	})

	var second api.Deployment
	t.Run("signed GitHub webhook", func(t *testing.T) {
		var link api.Repository
		b, _ := json.Marshal(api.LinkRepositoryRequest{URL: "file://" + repo})
		code, resp := h.do("PUT", "/api/v1/projects/pushed/repository", bytes.NewReader(b), "application/json")
		if code != 200 || json.Unmarshal(resp, &link) != nil || link.WebhookSecret == "" {
			t.Fatalf("link: %d %s", code, resp)
		}
		os.WriteFile(filepath.Join(repo, "VERSION"), []byte("2\n"), 0o644)
		git(t, repo, "add", "VERSION")
		git(t, repo, "commit", "-q", "-m", "second version")
		sha2 := strings.TrimSpace(git(t, repo, "rev-parse", "HEAD"))
		payload, _ := json.Marshal(map[string]any{
			"ref": "refs/heads/main", "before": sha, "after": sha2, "created": false, "deleted": false, "forced": false,
			"repository":  map[string]any{"full_name": "acme/web", "clone_url": "file://" + repo},
			"head_commit": map[string]any{"id": sha2, "message": "second version", "author": map[string]any{"name": "Grace", "email": "grace@example.com"}},
		})
		deliver := func(sig, delivery string) (int, string) {
			req, _ := http.NewRequest("POST", h.api+"/hooks/github/pushed", bytes.NewReader(payload))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-GitHub-Delivery", delivery)
			if sig != "" {
				req.Header.Set("X-Hub-Signature-256", sig)
			}
			start := time.Now()
			resp, err := h.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if took := time.Since(start); took > time.Second {
				t.Logf("webhook answered in %s (over a second)", took)
			}
			return resp.StatusCode, string(b)
		}
		if code, body := deliver("sha256=0000", "d-bad"); code != 401 {
			t.Errorf("bad signature: %d %s", code, body)
		}
		if code, body := deliver("", "d-missing"); code != 401 {
			t.Errorf("missing signature: %d %s", code, body)
		}
		if n := len(h.deployments("pushed")); n != 1 {
			t.Fatalf("a refused delivery queued a deployment")
		}
		sig := github.Sign([]byte(link.WebhookSecret), payload)
		if code, body := deliver(sig, "d-1"); code != 202 {
			t.Fatalf("signed delivery: %d %s", code, body)
		}
		if code, body := deliver(sig, "d-1"); code != 200 || !strings.Contains(body, "duplicate") {
			t.Errorf("replayed delivery: %d %s", code, body)
		}
		// A captured delivery sent again under a new id is the same push.
		if code, body := deliver(sig, "d-2"); code != 200 || !strings.Contains(body, "duplicate") {
			t.Errorf("delivery replayed under a new id: %d %s", code, body)
		}
		ds := h.deployments("pushed")
		if len(ds) != 2 {
			t.Fatalf("deployments after a delivery and its replay: %d", len(ds))
		}
		second = h.wait(ds[0].ID)
		if second.Status != "RUNNING" || second.Trigger != "webhook" || second.Commit.SHA != sha2 || second.Commit.Message != "second version" {
			t.Fatalf("webhook deployment: %+v", second)
		}
		if _, body, _ := h.body("pushed.slipway.localhost", "/"); !strings.Contains(body, second.ID) {
			t.Errorf("default hostname serves %q, want %s", body, second.ID)
		}
	})

	t.Run("rollback switches traffic back without a build", func(t *testing.T) {
		if second.ID == "" {
			t.Skip("needs the webhook deployment")
		}
		n := len(h.deployments("pushed"))
		var d api.Deployment
		if code := h.call("POST", "/api/v1/deployments/"+first.ID+"/promote", nil, &d); code != 200 || !d.Current {
			t.Fatalf("promote: %d %+v", code, d)
		}
		if _, body, _ := h.body("pushed.slipway.localhost", "/"); !strings.Contains(body, first.ID) {
			t.Errorf("after rollback the default hostname serves %q, want %s", body, first.ID)
		}
		if _, body, _ := h.body(second.ID+".slipway.localhost", "/"); !strings.Contains(body, second.ID) {
			t.Errorf("the rolled-back deployment lost its preview URL: %q", body)
		}
		if len(h.deployments("pushed")) != n {
			t.Error("rollback created a deployment")
		}
	})
}

// A build pulls base images and its own project's images, never another
// project's: each build's registry token is scoped to its project.
func TestBuildCantPullAnotherProjectsImage(t *testing.T) {
	h := startServer(t)
	victim := h.deployApp("victim")
	if victim.ImageDigest == "" {
		t.Fatalf("the victim's deployment has no image digest: %+v", victim)
	}
	registry := strings.TrimPrefix(h.api, "http://")
	try := func(project, from string) api.Deployment {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+from+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: project}, nil)
		return h.wait(h.upload(project, dir, "").ID)
	}
	d := try("thief", registry+"/victim@"+victim.ImageDigest)
	// The registry answers a grant's token 403 DENIED for what it does not allow.
	if reason := strings.ToLower(d.FailureReason); d.Status != "FAILED" || !strings.Contains(reason, "403") && !strings.Contains(reason, "denied") {
		t.Errorf("a build FROM another project's image: %s %q, want FAILED, denied by the registry", d.Status, d.FailureReason)
	}
	// Its own project's earlier image is fine.
	own := try("victim", registry+"/victim@"+victim.ImageDigest)
	if own.Status != "RUNNING" {
		t.Errorf("a build FROM its own project's image: %s %q", own.Status, own.FailureReason)
	}
}

// TestFailedStartLeavesNoNetwork: a server that fails late in its start
// (every buildkitd it starts exits at once), after its networks are open,
// says why, and the harness leaves none of its bridges behind.
func TestFailedStartLeavesNoNetwork(t *testing.T) {
	baseImages := requireRealParts(t)
	bin := t.TempDir()
	fake := "#!/bin/sh\necho 'buildkitd: not today' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "buildkitd"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	h := &harness{t: t, data: t.TempDir(), baseImages: baseImages, http: &http.Client{Timeout: time.Minute},
		api: freeAddr(t), router: freeAddr(t), github: newGHStandIn("ghp_unused")}
	defer h.github.srv.Close()
	err := h.startErr()
	if err == nil {
		h.shutdown()
		t.Fatal("the server started with a buildkitd that always exits")
	}
	if !strings.Contains(err.Error(), "buildkitd: not today") {
		t.Errorf("the error does not quote buildkitd's: %v", err)
	}
	bridge, _ := NetworkNames(h.data)
	builds, _ := BuildNetworkNames(h.data)
	for _, b := range []string{bridge, builds} {
		if out, err := exec.Command("ip", "link", "show", b).CombinedOutput(); err == nil {
			t.Errorf("bridge %s is left behind:\n%s", b, out)
		}
	}
}

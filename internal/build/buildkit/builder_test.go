package buildkit

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/slipwayhq/slipway/internal/build"
)

// logRecorder collects build output lines.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
	times []time.Time
	// onLine, if set, runs for every line (under mu).
	onLine func(line string)
}

func (r *logRecorder) log(t time.Time, line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
	r.times = append(r.times, t)
	if r.onLine != nil {
		r.onLine(line)
	}
}

func (r *logRecorder) text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

func newBuilder(t *testing.T, creds map[string]Credential) *Builder {
	t.Helper()
	d, _ := sharedEnv(t)
	b, err := New(d.Addr(), Config{Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// source writes files into a fresh build context.
func source(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func buildCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// fileInImage returns the content of path in the pulled image's layers.
func fileInImage(t *testing.T, img v1.Image, path string) (string, bool) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", false
		}
		if err != nil {
			t.Fatalf("reading image filesystem: %v", err)
		}
		if strings.TrimPrefix(h.Name, "/") == strings.TrimPrefix(path, "/") {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(b), true
		}
	}
}

func TestBuildPushesImage(t *testing.T) {
	_, host := sharedEnv(t)
	b := newBuilder(t, map[string]Credential{host: {Username: "anyone", Secret: testSecret}})
	nonce := time.Now().Format(time.RFC3339Nano)
	dir := source(t, map[string]string{
		"Dockerfile":   "FROM scratch\nCOPY hello.txt /srv/hello.txt\n",
		"hello.txt":    "hello " + nonce + "\n",
		"unrelated.md": "not copied",
	})

	// Streaming: when the COPY step's header is logged, the image must not
	// have been pushed yet.
	var manifestPushed atomic.Bool
	stop := watchManifestPushes(&manifestPushed)
	defer stop()
	var headerBeforePush, sawHeader bool
	rec := &logRecorder{onLine: func(line string) {
		if strings.Contains(line, "COPY hello.txt /srv/hello.txt") && !sawHeader {
			sawHeader = true
			headerBeforePush = !manifestPushed.Load()
		}
	}}

	ref := host + "/apps/hello:d0123456789a"
	start := time.Now()
	res, err := b.Build(buildCtx(t), build.Request{ContextDir: dir, Image: ref, Log: rec.log})
	if err != nil {
		t.Fatalf("Build: %v\nlog:\n%s", err, rec.text())
	}
	t.Logf("cold build: %s", time.Since(start).Round(time.Millisecond))
	if !manifestPushed.Load() {
		t.Error("the registry saw no manifest push")
	}
	if !sawHeader || !headerBeforePush {
		t.Errorf("COPY step header logged before the push: saw=%v before=%v\nlog:\n%s", sawHeader, headerBeforePush, rec.text())
	}

	if !strings.HasPrefix(res.Digest, "sha256:") || res.Image != host+"/apps/hello@"+res.Digest {
		t.Fatalf("result = %+v", res)
	}
	img, err := crane.Pull(res.Image, crane.Insecure)
	if err != nil {
		t.Fatalf("pulling %s: %v", res.Image, err)
	}
	dg, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if dg.String() != res.Digest {
		t.Errorf("pulled digest %s, Build returned %s", dg, res.Digest)
	}
	// The tag points at the same manifest.
	if tagged, err := crane.Digest(ref, crane.Insecure); err != nil || tagged != res.Digest {
		t.Errorf("tag %s → %s, %v; want %s", ref, tagged, err, res.Digest)
	}
	if got, ok := fileInImage(t, img, "srv/hello.txt"); !ok || got != "hello "+nonce+"\n" {
		t.Errorf("srv/hello.txt in image = %q, %v", got, ok)
	}
	if _, ok := fileInImage(t, img, "unrelated.md"); ok {
		t.Error("unrelated.md is in the image")
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.lines) == 0 {
		t.Fatal("no log lines")
	}
	for i, ts := range rec.times {
		if ts.IsZero() {
			t.Errorf("line %q has no timestamp", rec.lines[i])
		}
		if !strings.HasPrefix(rec.lines[i], "#") {
			t.Errorf("line %q does not start with a step number", rec.lines[i])
		}
	}
	log := strings.Join(rec.lines, "\n")
	for _, want := range []string{"[1/1] COPY hello.txt /srv/hello.txt", "exporting to image", "pushing layers", "DONE "} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// watchManifestPushes sets pushed once the shared registry receives a
// manifest PUT; the returned func stops watching.
func watchManifestPushes(pushed *atomic.Bool) func() {
	f := func() { pushed.Store(true) }
	manifestHook.Store(&f)
	return func() { manifestHook.Store(nil) }
}

func TestBuildCached(t *testing.T) {
	_, host := sharedEnv(t)
	b := newBuilder(t, map[string]Credential{host: {Secret: testSecret}})
	nonce := time.Now().Format(time.RFC3339Nano)
	dir := source(t, map[string]string{
		"Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n",
		"a.txt":      "a " + nonce,
		"b.txt":      "b " + nonce,
	})
	var results [2]build.Result
	var logs [2]string
	var took [2]time.Duration
	for i := range 2 {
		rec := &logRecorder{}
		start := time.Now()
		res, err := b.Build(buildCtx(t), build.Request{ContextDir: dir, Image: host + "/apps/cached:v" + string(rune('1'+i)), Log: rec.log})
		took[i] = time.Since(start)
		if err != nil {
			t.Fatalf("build %d: %v\n%s", i+1, err, rec.text())
		}
		results[i], logs[i] = res, rec.text()
	}
	t.Logf("cold build %s, warm (cached) build %s", took[0].Round(time.Millisecond), took[1].Round(time.Millisecond))
	t.Logf("warm build log:\n%s", logs[1])
	if strings.Contains(logs[0], "CACHED") {
		t.Errorf("first build already cached:\n%s", logs[0])
	}
	if !strings.Contains(logs[1], "CACHED") {
		t.Errorf("second build has no CACHED step:\n%s", logs[1])
	}
	if results[0].Digest != results[1].Digest {
		t.Errorf("identical builds gave %s and %s", results[0].Digest, results[1].Digest)
	}
	// Both COPY steps come from the cache the second time.
	if results[0].Steps == 0 || results[0].Cached != 0 || results[1].Cached < 2 || results[1].Cached > results[1].Steps {
		t.Errorf("steps/cached: cold %d/%d, warm %d/%d; want none cached cold, at least the two COPY steps warm",
			results[0].Steps, results[0].Cached, results[1].Steps, results[1].Cached)
	}
}

func TestBuildUserErrors(t *testing.T) {
	_, host := sharedEnv(t)
	b := newBuilder(t, map[string]Credential{host: {Secret: testSecret}})
	tests := []struct {
		name       string
		files      map[string]string
		dockerfile string
		step       string // substring of Error.Step
		message    string // substring of Error.Message
		logs       string // substring of the build log
	}{{
		name:    "syntax error",
		files:   map[string]string{"Dockerfile": "FROM scratch\nFORM x\n"},
		step:    "Dockerfile:2",
		message: "dockerfile parse error on line 2: unknown instruction: FORM",
	}, {
		name:    "run without a shell",
		files:   map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\nRUN exit 3\n", "f": "x"},
		step:    "[2/2] RUN exit 3",
		message: `process "/bin/sh -c exit 3" did not complete successfully`,
		logs:    "ERROR: process",
	}, {
		name:    "copy of a missing file",
		files:   map[string]string{"Dockerfile": "FROM scratch\nCOPY nope.txt /\n"},
		step:    "COPY nope.txt /",
		message: `"/nope.txt": not found`,
	}, {
		name:       "dockerfile in a subdirectory with an error",
		files:      map[string]string{"deploy/Prod.Dockerfile": "FROM scratch\nCOPY missing /\n"},
		dockerfile: "deploy/Prod.Dockerfile",
		step:       "COPY missing /",
		message:    "not found",
	}, {
		name:    "no dockerfile",
		files:   map[string]string{"main.go": "package main"},
		message: `Dockerfile "Dockerfile" not found`,
	}, {
		name:       "dockerfile outside the source",
		files:      map[string]string{"Dockerfile": "FROM scratch"},
		dockerfile: "../Dockerfile",
		message:    "outside the source tree",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &logRecorder{}
			_, err := b.Build(buildCtx(t), build.Request{
				ContextDir: source(t, tt.files),
				Dockerfile: tt.dockerfile,
				Image:      host + "/apps/failing:v1",
				Log:        rec.log,
			})
			var be *build.Error
			if !errors.As(err, &be) {
				t.Fatalf("err = %v (%T), want *build.Error\nlog:\n%s", err, err, rec.text())
			}
			t.Logf("step=%q message=%q", be.Step, be.Message)
			if !strings.Contains(be.Step, tt.step) || (tt.step == "" && be.Step != "") {
				t.Errorf("Step = %q, want %q", be.Step, tt.step)
			}
			if !strings.Contains(be.Message, tt.message) {
				t.Errorf("Message = %q, want it to contain %q", be.Message, tt.message)
			}
			if !strings.Contains(rec.text(), tt.logs) {
				t.Errorf("log lacks %q:\n%s", tt.logs, rec.text())
			}
		})
	}
}

func TestBuildPushWithoutCredentialsIsInfraError(t *testing.T) {
	_, host := sharedEnv(t)
	b := newBuilder(t, nil)
	dir := source(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "unauthorized"})
	_, err := b.Build(buildCtx(t), build.Request{ContextDir: dir, Image: host + "/apps/noauth:v1"})
	if err == nil {
		t.Fatal("push without credentials succeeded")
	}
	if build.IsUserError(err) {
		t.Errorf("push refused by the registry is reported as the user's error: %v", err)
	}
	t.Logf("push without credentials: %v", err)
	if !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Errorf("error does not say the push was unauthorized: %v", err)
	}
}

// TestBuildFromMirror builds FROM a docker.io name, served by the test
// registry configured as buildkitd's docker.io mirror.
func TestBuildFromMirror(t *testing.T) {
	_, host := sharedEnv(t)
	base, err := crane.Image(map[string][]byte{"etc/base-release": []byte("stand-in\n")})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goruntime.GOARCH
	if base, err = mutate.ConfigFile(base, cf); err != nil {
		t.Fatal(err)
	}
	if err := crane.Push(base, host+"/library/slipway-test-base:1", crane.Insecure,
		crane.WithAuth(&authn.Basic{Username: "x", Password: testSecret})); err != nil {
		t.Fatalf("pushing base image: %v", err)
	}

	b := newBuilder(t, map[string]Credential{host: {Secret: testSecret}})
	dir := source(t, map[string]string{"Dockerfile": "FROM slipway-test-base:1\nCOPY app.txt /app.txt\n", "app.txt": "app"})
	rec := &logRecorder{}
	res, err := b.Build(buildCtx(t), build.Request{ContextDir: dir, Image: host + "/apps/onbase:v1", Log: rec.log})
	if err != nil {
		t.Fatalf("Build: %v\nlog:\n%s", err, rec.text())
	}
	img, err := crane.Pull(res.Image, crane.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"etc/base-release", "app.txt"} {
		if _, ok := fileInImage(t, img, f); !ok {
			t.Errorf("%s missing from the image", f)
		}
	}
}

func TestBuildDaemonUnreachable(t *testing.T) {
	b, err := New("unix://"+filepath.Join(t.TempDir(), "none.sock"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := source(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = b.Build(ctx, build.Request{ContextDir: dir, Image: "127.0.0.1:1/x:y"})
	if err == nil || build.IsUserError(err) {
		t.Fatalf("err = %v, want an infrastructure error", err)
	}
	t.Logf("unreachable daemon: %v", err)
}

func TestRepository(t *testing.T) {
	for ref, want := range map[string][2]string{
		"127.0.0.1:7300/app:d012":         {"127.0.0.1:7300/app", "127.0.0.1:7300"},
		"127.0.0.1:7300/a/b:tag":          {"127.0.0.1:7300/a/b", "127.0.0.1:7300"},
		"127.0.0.1:7300/app":              {"127.0.0.1:7300/app", "127.0.0.1:7300"},
		"127.0.0.1:7300/app@sha256:abc":   {"127.0.0.1:7300/app", "127.0.0.1:7300"},
		"127.0.0.1:7300/app:t@sha256:abc": {"127.0.0.1:7300/app", "127.0.0.1:7300"},
		"builds.test:5000/team/app:v1.2":  {"builds.test:5000/team/app", "builds.test:5000"},
	} {
		repo, host := repository(ref)
		if repo != want[0] || host != want[1] {
			t.Errorf("repository(%q) = %q, %q; want %q, %q", ref, repo, host, want[0], want[1])
		}
	}
}

func TestBuildGeneratedDockerfile(t *testing.T) {
	_, host := sharedEnv(t)
	b := newBuilder(t, map[string]Credential{host: {Secret: testSecret}})
	dir := source(t, map[string]string{"app.txt": "generated\n"})
	rec := &logRecorder{}
	res, err := b.Build(buildCtx(t), build.Request{
		ContextDir: dir, Image: host + "/apps/generated:1", Log: rec.log,
		DockerfileContent: []byte("FROM scratch\nCOPY app.txt /app.txt\n"),
	})
	if err != nil {
		t.Fatalf("Build: %v\nlog:\n%s", err, rec.text())
	}
	img, err := crane.Pull(res.Image, crane.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := fileInImage(t, img, "app.txt"); !ok || got != "generated\n" {
		t.Errorf("app.txt = %q, %v", got, ok)
	}
	if _, err := os.Stat(filepath.Join(dir, "Dockerfile")); err == nil {
		t.Error("the generated Dockerfile was written into the source tree")
	}
}

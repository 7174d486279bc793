package baseimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/internal/registry"
)

// need skips the test with reason, or fails it when CI is set: CI machines
// are expected to have everything.
func need(t *testing.T, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but %s", reason)
	}
	t.Skipf("skipping: %s", reason)
}

func have(cmd string) bool { _, err := exec.LookPath(cmd); return err == nil }

// logWriter sends lines to t.Log.
type logWriter struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		if line = strings.TrimRight(line, "\n"); line != "" {
			w.t.Log(line)
		}
	}
}

// TestBuildSeedAndBuildKit builds the real base images from the Debian
// mirror (cached in SLIPWAY_BASE_IMAGE_CACHE, default
// /var/cache/slipway/base-images: the first run takes minutes), seeds them
// into an embedded registry that requires a token except for library/
// pulls, and builds examples/hello with a throwaway buildkitd that uses the
// registry as its docker.io mirror. The result is pushed back with basic
// auth, pulled, and its binary run.
func TestBuildSeedAndBuildKit(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds real base images (-short)")
	}
	need(t, os.Geteuid() == 0, "building base images needs root")
	need(t, have("debootstrap"), "debootstrap is not installed")
	_, mirrorErr := ReadMirrors("/", "bookworm")
	need(t, mirrorErr == nil, fmt.Sprintf("no Debian mirror in the apt sources: %v", mirrorErr))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	out := t.TempDir()
	logs := &logWriter{t: t}
	opts := Options{OutDir: out, CacheDir: os.Getenv("SLIPWAY_BASE_IMAGE_CACHE"), Log: logs}
	if err := Build(ctx, opts); err != nil {
		t.Fatalf("Build: %v", err)
	}
	var again bytes.Buffer
	opts.Log = &again
	if err := Build(ctx, opts); err != nil {
		t.Fatalf("second Build: %v", err)
	}
	if got := strings.Count(again.String(), "up to date"); got != len(Names()) {
		t.Errorf("second Build rebuilt something:\n%s", again.String())
	}

	imgs, err := Images(out)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, im := range imgs {
		refs = append(refs, im.Ref)
	}
	for _, want := range []string{"library/debian:bookworm-slim", "library/debian:12", "library/golang:1.23", "library/golang:1.23-bookworm",
		"library/python:3.11-slim-bookworm", "library/python:3.11-slim", "library/python:3.11",
		"library/node:18-bookworm-slim", "library/node:18-slim", "library/node:18",
		"library/node:24-bookworm-slim", "library/node:24-slim", "library/node:24-bookworm", "library/node:24", "library/node:lts",
		"library/node:22-bookworm-slim", "library/node:22-slim", "library/node:22-bookworm", "library/node:22"} {
		if !slices.Contains(refs, want) {
			t.Errorf("layout lacks %s: %v", want, refs)
		}
	}
	cas, err := readCABundle(Options{}.withDefaults().CACerts)
	if err != nil {
		t.Fatal(err)
	}
	checkStandIns(t, imgs, cas)

	const token = "test-token"
	reg, err := registry.New(registry.Config{
		Dir: t.TempDir(),
		Authorize: func(r *http.Request) bool {
			_, pw, ok := r.BasicAuth()
			return ok && pw == token
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Seed(ctx, out, reg.Import); err != nil {
		t.Fatalf("Seed: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Record how BuildKit fetches the base images: through the mirror, and
	// with or without credentials.
	var mu sync.Mutex
	var mirrorPulls, mirrorPullsWithAuth int
	mux := http.NewServeMux()
	mux.Handle("/v2/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v2/library/golang/manifests/") {
			mu.Lock()
			mirrorPulls++
			if r.Header.Get("Authorization") != "" {
				mirrorPullsWithAuth++
			}
			mu.Unlock()
		}
		reg.ServeHTTP(w, r)
	}))
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	host := ln.Addr().String()

	need(t, have("buildkitd") && have("buildctl"), "buildkitd and buildctl are not installed (scripts/install-buildkit.sh)")
	need(t, have("runc"), "runc is not installed")
	addr := startBuildkitd(t, ctx, host)

	example, err := filepath.Abs("../../examples/hello")
	if err != nil {
		t.Fatal(err)
	}
	buildctl := func(dockerConfig string, output string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "buildctl", "--addr", addr, "build",
			"--frontend", "dockerfile.v0",
			"--local", "context="+example, "--local", "dockerfile="+example,
			"--output", output)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dockerConfig)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Run(); err != nil {
			t.Fatalf("buildctl build --output %s: %v", output, err)
		}
	}

	// First without any credentials: FROM golang:1.23 must come from the
	// mirror anonymously.
	buildctl(t.TempDir(), "type=oci,dest="+filepath.Join(t.TempDir(), "hello.tar"))
	mu.Lock()
	t.Logf("base image manifest requests through the mirror: %d (%d with credentials)", mirrorPulls, mirrorPullsWithAuth)
	if mirrorPulls == 0 || mirrorPullsWithAuth != 0 {
		t.Errorf("mirror manifest requests = %d, with credentials %d; want > 0 and 0", mirrorPulls, mirrorPullsWithAuth)
	}
	mu.Unlock()

	// Then pushed into the registry with the token as basic-auth password,
	// as Slipway's builds do.
	dockerConfig := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("slipway:" + token))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	target := host + "/examples/hello:test"
	buildctl(dockerConfig, "type=image,name="+target+",push=true,registry.insecure=true")

	ref, err := name.ParseReference(target, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: "slipway", Password: token}), remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("pulling the built image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/hello"}) {
		t.Errorf("entrypoint = %v, want [/hello]", cf.Config.Entrypoint)
	}
	files := flatten(t, img)
	bin, ok := files["hello"]
	if !ok {
		t.Fatalf("built image lacks /hello: %d files", len(files))
	}
	runHello(t, ctx, []byte(bin))

	// The python and node stand-ins work in a build as the official images
	// would: pip finds Debian's frameworks installed and downloads nothing,
	// FastAPI and uvicorn import, venv works; node and npm run, and the
	// official Node builds' npm ci installs from the npm registry (through
	// the host's intercepting proxy, if any, with its CA).
	probe := t.TempDir()
	for name, content := range map[string]string{"Dockerfile": probeDockerfile,
		"package.json": probePackageJSON, "package-lock.json": probePackageLock} {
		if err := os.WriteFile(filepath.Join(probe, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(ctx, "buildctl", "--addr", addr, "build", "--frontend", "dockerfile.v0",
		"--local", "context="+probe, "--local", "dockerfile="+probe, "--progress", "plain")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	var probeLog bytes.Buffer
	cmd.Stdout, cmd.Stderr = &probeLog, &probeLog
	if err := cmd.Run(); err != nil {
		t.Fatalf("building with the python and node stand-ins: %v\n%s", err, probeLog.String())
	}
	for _, want := range []string{"Requirement already satisfied: flask==2.2.2", "imports ok", "v18.", "uid=1000(node)",
		"node24 v24.", "node24 npm 11.", "added 1 package", "node24 ms 1m", "node24 yarn 1.22.", "node24 corepack 0.",
		"node22 v22.", "node22 npm 10.", "nodelts v24."} {
		i := strings.Index(probeLog.String(), want)
		if i < 0 {
			t.Errorf("the probe build's log lacks %q:\n%s", want, probeLog.String())
			continue
		}
		line, _, _ := strings.Cut(probeLog.String()[strings.LastIndex(probeLog.String()[:i], "\n")+1:], "\n")
		t.Logf("probe build: %s", line)
	}
}

// probeDockerfile exercises the python and node stand-ins; its last stage
// copies from the first so that BuildKit builds both.
const probeDockerfile = `FROM python:3.11-slim-bookworm AS py
RUN pip install flask==2.2.2 werkzeug==2.2.2 gunicorn==20.1.0 >/pip.log 2>&1; s=$?; cat /pip.log; \
    [ $s -eq 0 ] && ! grep -q Downloading /pip.log
RUN python -c "import fastapi, uvicorn, flask, gunicorn; print('imports', 'ok')" && uvicorn --version && \
    python -m venv /tmp/venv && /tmp/venv/bin/python -c "import sys; print(sys.prefix)"

FROM node:24-bookworm-slim AS node24
WORKDIR /app
COPY package.json package-lock.json ./
RUN echo "node24 $(node --version)" && echo "node24 npm $(npm --version)" && \
    npm ci && node -e "console.log('node24 ms', require('ms')(60000))" && \
    echo "node24 yarn $(yarn --version)" && echo "node24 corepack $(corepack --version)" && \
    npx --version && id node && docker-entrypoint.sh true && touch /node24.ok

FROM node:22 AS node22
RUN echo "node22 $(node --version)" && echo "node22 npm $(npm --version)" && touch /node22.ok

FROM node:lts AS nodelts
RUN echo "nodelts $(node --version)" && touch /nodelts.ok

FROM node:18-bookworm-slim
COPY --from=py /pip.log /pip.log
COPY --from=node24 /node24.ok /app/node_modules/ms/package.json /
COPY --from=node22 /node22.ok /
COPY --from=nodelts /nodelts.ok /
RUN node -e "console.log(process.version)" && npm --version && id node && docker-entrypoint.sh true
`

// probePackageJSON and probePackageLock are the tiny project whose npm ci
// the probe runs with node:24: one dependency from the npm registry.
const probePackageJSON = `{"name": "probe", "version": "1.0.0", "private": true, "dependencies": {"ms": "2.1.3"}}
`

const probePackageLock = `{
  "name": "probe",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {"name": "probe", "version": "1.0.0", "dependencies": {"ms": "2.1.3"}},
    "node_modules/ms": {
      "version": "2.1.3",
      "integrity": "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==",
      "license": "MIT"
    }
  }
}
`

// checkStandIns checks the image configs and a few files of the golang,
// python and node stand-ins against what the official images have, and
// that they carry the host's extra CA certificates; and that the golang
// stand-in carries the standard library precompiled and not what it was
// slimmed of.
func checkStandIns(t *testing.T, imgs []Image, cas caBundle) {
	t.Helper()
	want := map[string]struct {
		entrypoint, cmd []string
		env             []string // prefixes
		files, absent   []string
	}{
		"library/golang:1.23": {
			cmd: []string{"bash"}, env: []string{"PATH=/go/bin:/usr/local/go/bin:", "GOPATH=/go", "GODEBUG=installgoroot=all", "GOLANG_VERSION=1.23."},
			files: []string{"usr/local/go", "usr/lib/go-1.23/bin/go", "usr/lib/go-1.23/pkg/linux_amd64/runtime.a",
				"usr/lib/go-1.23/pkg/linux_amd64/net/http.a", "usr/share/go-1.23/src/net/http/server.go",
				"usr/bin/gcc", "usr/bin/git", "go/bin"},
			absent: []string{"usr/share/go-1.23/src/net/http/server_test.go", "usr/share/go-1.23/src/net/http/testdata",
				"usr/share/go-1.23/test", "usr/lib/gcc/x86_64-linux-gnu/12/lto1",
				"usr/lib/go-1.23/pkg/linux_amd64/go/types.a"}, // not among goCommonPackages
		},
		"library/python:3.11-slim-bookworm": {
			cmd: []string{"python3"}, env: []string{"PATH=/usr/local/bin:", "LANG=C.UTF-8", "PYTHON_VERSION=3.11."},
			files: []string{"usr/bin/python", "usr/bin/pip", "usr/bin/gunicorn", "usr/bin/uvicorn",
				"usr/lib/python3/dist-packages/flask/__init__.py", "usr/lib/python3/dist-packages/fastapi/__init__.py"},
			absent: []string{"usr/lib/python3.11/EXTERNALLY-MANAGED"},
		},
		"library/node:18-bookworm-slim": {
			entrypoint: []string{"docker-entrypoint.sh"}, cmd: []string{"node"}, env: []string{"PATH=/usr/local/sbin:", "NODE_VERSION=18."},
			files: []string{"usr/bin/node", "usr/bin/npm", "usr/local/bin/docker-entrypoint.sh", "home/node"},
		},
		"library/node:24-bookworm-slim": {
			entrypoint: []string{"docker-entrypoint.sh"}, cmd: []string{"node"}, env: nodeEnv("24."),
			files: officialNodeFiles, absent: []string{"usr/bin/node", "usr/local/CHANGELOG.md", "usr/local/package.json"},
		},
		"library/node:22-bookworm-slim": {
			entrypoint: []string{"docker-entrypoint.sh"}, cmd: []string{"node"}, env: nodeEnv("22."),
			files: officialNodeFiles, absent: []string{"usr/bin/node"},
		},
	}
	for _, im := range imgs {
		w, ok := want[im.Ref]
		if !ok {
			continue
		}
		cf, err := im.Image.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cf.Config.Entrypoint, w.entrypoint) || !slices.Equal(cf.Config.Cmd, w.cmd) {
			t.Errorf("%s: entrypoint %q cmd %q, want %q %q", im.Ref, cf.Config.Entrypoint, cf.Config.Cmd, w.entrypoint, w.cmd)
		}
		for _, prefix := range w.env {
			if !slices.ContainsFunc(cf.Config.Env, func(kv string) bool { return strings.HasPrefix(kv, prefix) }) {
				t.Errorf("%s: env %q has nothing starting with %q", im.Ref, cf.Config.Env, prefix)
			}
		}
		names := entryNames(t, im.Image)
		for _, ca := range cas.names() {
			w.files = append(w.files, "usr/local/share/ca-certificates/"+ca)
		}
		for _, f := range w.files {
			if !names[f] {
				t.Errorf("%s lacks /%s", im.Ref, f)
			}
		}
		for _, f := range w.absent {
			if names[f] {
				t.Errorf("%s has /%s", im.Ref, f)
			}
		}
		delete(want, im.Ref)
	}
	for ref := range want {
		t.Errorf("no image %s", ref)
	}
}

// officialNodeFiles are files the official node images have and their
// stand-ins must have too.
var officialNodeFiles = []string{"usr/local/bin/node", "usr/local/bin/npm", "usr/local/bin/npx", "usr/local/bin/corepack",
	"usr/local/bin/yarn", "usr/local/bin/yarnpkg", "usr/local/lib/node_modules/npm/bin/npm-cli.js",
	"usr/local/lib/node_modules/corepack/dist/corepack.js", "usr/local/include/node/node_version.h",
	"usr/local/bin/docker-entrypoint.sh", "home/node", "etc/ssl/certs/ca-certificates.crt"}

// nodeEnv is the environment an official Node stand-in of version prefix
// version must have: with NODE_EXTRA_CA_CERTS when the host has extra CA
// certificates, which the images then trust.
func nodeEnv(version string) []string {
	env := []string{"PATH=/usr/local/sbin:", "NODE_VERSION=" + version, "YARN_VERSION=1."}
	if cas, err := readCABundle(Options{}.withDefaults().CACerts); err == nil && len(cas.files) > 0 {
		env = append(env, "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt")
	}
	return env
}

// entryNames lists the paths of img's merged filesystem, without reading
// the files.
func entryNames(t *testing.T, img v1.Image) map[string]bool {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	names := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names[strings.TrimSuffix(strings.TrimPrefix(h.Name, "/"), "/")] = true
	}
}

// startBuildkitd starts a throwaway buildkitd whose docker.io mirror is the
// registry at host, and returns its address. It is stopped, and its mounts
// removed, when the test ends.
func startBuildkitd(t *testing.T, ctx context.Context, host string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "slipway-buildkit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeTree(dir) })
	config := BuildkitdConfig(host)
	t.Logf("buildkitd.toml:\n%s", config)
	if err := os.WriteFile(filepath.Join(dir, "buildkitd.toml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "unix://" + filepath.Join(dir, "buildkitd.sock")
	logf, err := os.Create(filepath.Join(dir, "buildkitd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("buildkitd", "--config", filepath.Join(dir, "buildkitd.toml"),
		"--root", filepath.Join(dir, "root"), "--addr", addr,
		"--oci-worker=true")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "buildkitd.log"))
			t.Logf("buildkitd log:\n%s", b)
		}
	})
	for i := 0; ; i++ {
		err := exec.CommandContext(ctx, "buildctl", "--addr", addr, "debug", "workers").Run()
		if err == nil {
			return addr
		}
		if i == 100 {
			t.Fatalf("buildkitd did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runHello runs the built binary on the host and checks its answer.
func runHello(t *testing.T, ctx context.Context, bin []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = []string{fmt.Sprintf("PORT=%d", port), "SLIPWAY_DEPLOYMENT_ID=d0123456789a"}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	for i := 0; ; i++ {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), "deployment d0123456789a") {
				t.Errorf("GET / = %d %q", resp.StatusCode, body)
			}
			return
		}
		if i == 100 {
			t.Fatalf("hello did not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

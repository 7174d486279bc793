// Package buildtest provides a stand-in for a real builder, to test the
// code around builders (the deployment lifecycle, the API) without
// BuildKit. It never replaces BuildKit outside tests. It passes the
// builder conformance suite of package buildertest.
package buildtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/internal/build"
)

// Builder "builds" any source instantly: it logs a few lines and returns a
// digest made from the source's content. It reads the Dockerfile only to
// reject a malformed one (an instruction it does not know), and steers by
// files in the source:
//
//   - OUTPUT: its lines are logged as the output of the build step, after
//     the first line (and Builder.Output).
//   - FAIL: the build then fails like a failing RUN step.
//   - BLOCK: the build then waits until Release is called or the build is
//     cancelled.
//
// Output and LineDelay make a build log stream slowly (for tests that watch
// a log arrive); set them before the first build.
type Builder struct {
	// Output are extra lines of build output, logged after the first line
	// (and before a FAIL or BLOCK takes effect). If empty, none.
	Output []string
	// LineDelay is waited before each line of Output. If zero, none.
	LineDelay time.Duration

	mu      sync.Mutex
	builds  int
	release chan struct{}
	once    sync.Once
}

// New returns a Builder.
func New() *Builder { return &Builder{release: make(chan struct{})} }

// Release lets blocked builds (and all later BLOCK builds) finish.
func (b *Builder) Release() { b.once.Do(func() { close(b.release) }) }

// Builds reports how many builds were started.
func (b *Builder) Builds() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.builds
}

// Build implements build.Builder.
func (b *Builder) Build(ctx context.Context, req build.Request) (build.Result, error) {
	b.mu.Lock()
	b.builds++
	b.mu.Unlock()
	if ctx.Err() != nil {
		return build.Result{}, context.Cause(ctx)
	}
	logf := req.Log
	if logf == nil {
		logf = func(time.Time, string) {}
	}
	if st, err := os.Stat(req.ContextDir); err != nil || !st.IsDir() {
		return build.Result{}, fmt.Errorf("build context %s is not a directory", req.ContextDir)
	}
	name, df, err := dockerfile(req)
	if err != nil {
		return build.Result{}, err
	}
	if line, keyword := checkDockerfile(df); line > 0 {
		return build.Result{}, &build.Error{
			Step:    fmt.Sprintf("%s:%d", filepath.Base(name), line),
			Message: fmt.Sprintf("dockerfile parse error on line %d: unknown instruction: %s", line, keyword),
		}
	}

	logf(time.Now(), "#1 [1/1] building "+req.Image)
	for _, line := range b.Output {
		if b.LineDelay > 0 {
			select {
			case <-time.After(b.LineDelay):
			case <-ctx.Done():
				return build.Result{}, context.Cause(ctx)
			}
		}
		logf(time.Now(), line)
	}
	if out, err := os.ReadFile(filepath.Join(req.ContextDir, "OUTPUT")); err == nil {
		for line := range strings.Lines(string(out)) {
			logf(time.Now(), "#1 "+strings.TrimRight(line, "\r\n"))
		}
	}
	if exists(filepath.Join(req.ContextDir, "FAIL")) {
		logf(time.Now(), "#1 ERROR: exit code: 3")
		return build.Result{}, &build.Error{Step: "[1/1] RUN make", Message: "exit code: 3"}
	}
	if exists(filepath.Join(req.ContextDir, "BLOCK")) {
		select {
		case <-b.release:
		case <-ctx.Done():
			return build.Result{}, context.Cause(ctx)
		}
	}
	digest, err := contentDigest(req.ContextDir, df)
	if err != nil {
		return build.Result{}, err
	}
	logf(time.Now(), "#1 DONE 0.1s")
	repo := req.Image
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return build.Result{Image: repo + "@" + digest, Digest: digest}, nil
}

// dockerfile returns the Dockerfile req builds and its name.
func dockerfile(req build.Request) (string, []byte, error) {
	if req.DockerfileContent != nil {
		return "Dockerfile", req.DockerfileContent, nil
	}
	name := req.Dockerfile
	if name == "" {
		name = "Dockerfile"
	}
	if !filepath.IsLocal(name) {
		return "", nil, &build.Error{Message: fmt.Sprintf("Dockerfile path %q is outside the source tree", name)}
	}
	df, err := os.ReadFile(filepath.Join(req.ContextDir, name))
	if err != nil {
		return "", nil, &build.Error{Message: fmt.Sprintf("Dockerfile %q not found in the source", name)}
	}
	return name, df, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// contentDigest hashes the Dockerfile and the files of the source, so that
// sources of different content get different digests and the same source
// the same one, as with a real build.
func contentDigest(dir string, df []byte) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "Dockerfile %d\n%s\n", len(df), df)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s %d\n%s\n", filepath.ToSlash(rel), len(b), b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("reading the source: %w", err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// instructions are the Dockerfile instructions.
var instructions = map[string]bool{
	"ADD": true, "ARG": true, "CMD": true, "COPY": true, "ENTRYPOINT": true,
	"ENV": true, "EXPOSE": true, "FROM": true, "HEALTHCHECK": true,
	"LABEL": true, "MAINTAINER": true, "ONBUILD": true, "RUN": true,
	"SHELL": true, "STOPSIGNAL": true, "USER": true, "VOLUME": true,
	"WORKDIR": true,
}

// checkDockerfile returns the number of the first line of df that starts
// an instruction Dockerfiles do not have, and its keyword; 0 if there is
// none. It follows line continuations (and the escape directive) and skips
// comments and the bodies of heredocs; it checks nothing else.
func checkDockerfile(df []byte) (line int, keyword string) {
	escape := `\`
	directives := true
	cont := false
	var heredocs []string // terminators still to come, in order
	for i, raw := range strings.Split(string(df), "\n") {
		l := strings.TrimSpace(raw)
		if len(heredocs) > 0 {
			if l == heredocs[0] {
				heredocs = heredocs[1:]
			}
			continue
		}
		if directives {
			if k, v, ok := strings.Cut(strings.TrimPrefix(l, "#"), "="); ok && strings.HasPrefix(l, "#") {
				if strings.EqualFold(strings.TrimSpace(k), "escape") && strings.TrimSpace(v) != "" {
					escape = strings.TrimSpace(v)
				}
				continue
			}
			directives = false
		}
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !cont {
			kw := strings.Fields(l)[0]
			if !instructions[strings.ToUpper(kw)] {
				return i + 1, kw
			}
		}
		cont = strings.HasSuffix(l, escape)
		heredocs = append(heredocs, heredocTerminators(l)...)
	}
	return 0, ""
}

// heredocTerminators returns the words that end the heredocs a line opens
// (<<EOF, <<-EOF, <<"EOF").
func heredocTerminators(l string) []string {
	var words []string
	for {
		i := strings.Index(l, "<<")
		if i < 0 {
			return words
		}
		l = l[i+2:]
		w := strings.TrimPrefix(l, "-")
		w = strings.TrimLeft(w, `"'`)
		n := 0
		for n < len(w) && (w[n] == '_' || 'A' <= w[n] && w[n] <= 'Z' || 'a' <= w[n] && w[n] <= 'z' || n > 0 && '0' <= w[n] && w[n] <= '9') {
			n++
		}
		if n > 0 {
			words = append(words, w[:n])
		}
	}
}

var _ build.Builder = (*Builder)(nil)

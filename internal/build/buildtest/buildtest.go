// Package buildtest provides a stand-in for a real builder, to test the
// code around builders (the deployment lifecycle, the API) without
// BuildKit. It never replaces BuildKit outside tests.
package buildtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/internal/build"
)

// Builder "builds" any source instantly: it logs two lines and returns a
// made-up digest. A source holding a file named FAIL fails like a failing
// RUN step; one holding BLOCK waits until Release is called or the build is
// cancelled.
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
	req.Log(time.Now(), "#1 [1/1] building "+req.Image)
	for _, line := range b.Output {
		if b.LineDelay > 0 {
			select {
			case <-time.After(b.LineDelay):
			case <-ctx.Done():
				return build.Result{}, ctx.Err()
			}
		}
		req.Log(time.Now(), line)
	}
	if _, err := os.Stat(filepath.Join(req.ContextDir, "FAIL")); err == nil {
		req.Log(time.Now(), "#1 ERROR: exit code: 3")
		return build.Result{}, &build.Error{Step: "[1/1] RUN make", Message: "exit code: 3"}
	}
	if _, err := os.Stat(filepath.Join(req.ContextDir, "BLOCK")); err == nil {
		select {
		case <-b.release:
		case <-ctx.Done():
			return build.Result{}, ctx.Err()
		}
	}
	req.Log(time.Now(), "#1 DONE 0.1s")
	digest := "sha256:" + strings.Repeat("ab", 32)
	repo := req.Image
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return build.Result{Image: repo + "@" + digest, Digest: digest}, nil
}

var _ build.Builder = (*Builder)(nil)

package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/slipwayhq/slipway/internal/baseimage"
	"github.com/slipwayhq/slipway/internal/build"
	"github.com/slipwayhq/slipway/internal/registry"
)

// recordingBuilder is the builder behind waitForBaseImages: it records
// whether the base images were in the registry when its build began.
type recordingBuilder struct {
	reg    *registry.Registry
	mu     sync.Mutex
	builds []string
	found  []bool
}

func (b *recordingBuilder) Build(ctx context.Context, req build.Request) (build.Result, error) {
	// As BuildKit resolves FROM golang:1.23 through the mirror.
	rec := httptest.NewRecorder()
	b.reg.ServeHTTP(rec, httptest.NewRequest("HEAD", "/v2/library/golang/manifests/1.23", nil))
	b.mu.Lock()
	b.builds = append(b.builds, req.Image)
	b.found = append(b.found, rec.Code == 200)
	b.mu.Unlock()
	req.Log(time.Now(), "#1 building")
	return build.Result{Image: req.Image + "@sha256:0", Digest: "sha256:0"}, nil
}

// A deployment's build whose Dockerfile needs a base image the server is
// still making waits for it, its log saying so, and begins once the image
// is in the registry; a build that needs none goes ahead at once.
func TestBuildWaitsForBaseImage(t *testing.T) {
	dir := t.TempDir()
	reg, err := registry.New(registry.Config{Dir: filepath.Join(dir, "registry")})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	began := make(chan string, 10)
	m, err := baseimage.NewMaker(baseimage.MakerConfig{
		Options: baseimage.Options{OutDir: filepath.Join(dir, "base-images")},
		Seed:    reg.Import,
		Log:     slog.New(slog.DiscardHandler),
		Build: func(ctx context.Context, o baseimage.Options) error {
			name := o.Images[0]
			began <- name
			fmt.Fprintf(o.Log, "==> %s: apt-get install %s\n", name, name)
			if name == "golang" {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return writeBaseImage(o.OutDir, name)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	hold := m.Hold() // nothing in the background: only what builds need
	m.Start(context.Background())
	t.Cleanup(m.Close)
	inner := &recordingBuilder{reg: reg}
	b := waitForBaseImages{Builder: inner, maker: m}

	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	df := "FROM golang:1.23 AS build\nRUN go build -o /app .\nFROM scratch\nCOPY --from=build /app /app\n"
	if err := os.WriteFile(filepath.Join(src, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var log []string
	done := make(chan error, 1)
	go func() {
		_, err := b.Build(context.Background(), build.Request{ContextDir: src, Image: "reg/hello:1",
			Log: func(_ time.Time, line string) { mu.Lock(); log = append(log, line); mu.Unlock() }})
		done <- err
	}()
	if got := <-began; got != "golang" {
		t.Fatalf("made %s first, want golang", got)
	}
	// A build that needs no stand-in does not wait.
	if _, err := b.Build(context.Background(), build.Request{ContextDir: src, Image: "reg/plan:1",
		DockerfileContent: []byte("FROM 127.0.0.1:7300/base:1\n"), Log: func(time.Time, string) {}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("the build went ahead before golang was made: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	hold()
	if !slices.Equal(inner.builds, []string{"reg/plan:1", "reg/hello:1"}) || !inner.found[1] {
		t.Errorf("builds %q, golang in the registry: %v; want the plan's first, hello's once golang was seeded", inner.builds, inner.found)
	}
	mu.Lock()
	got := strings.Join(log, "\n")
	mu.Unlock()
	for _, want := range []string{
		// "is not made yet: making …" or "is being made (…", as the
		// Maker may begin it before the build asks.
		"base image golang:1.23 is ",
		"usually takes about ",
		"the build waits for it",
		"base image golang: apt-get install golang",
		"base image golang:1.23 is ready (waited ",
		"#1 building",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("build log lacks %q:\n%s", want, got)
		}
	}
	if i, j := strings.Index(got, "is ready"), strings.Index(got, "#1 building"); i > j {
		t.Errorf("the build began before the base image was ready:\n%s", got)
	}
}

// writeBaseImage adds image name to the layout at dir as the Maker's
// Build would, under the tag the test's Dockerfile names.
func writeBaseImage(dir, name string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return err
		}
	}
	img, err := random.Image(64, 1)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{
		baseimage.AnnotationRefName: "library/" + name + ":1.23", baseimage.AnnotationImage: name}))
}

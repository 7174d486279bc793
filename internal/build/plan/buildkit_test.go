package plan

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/internal/baseimage"
	"github.com/slipwayhq/slipway/internal/build"
	"github.com/slipwayhq/slipway/internal/build/buildkit"
)

// requireBuildEnv skips (or, when CI is set, fails) unless a real build
// can run here: root, buildkitd, and base-image stand-ins holding refs.
// It returns the base-image layout directory.
func requireBuildEnv(t *testing.T, refs ...string) string {
	t.Helper()
	dir := os.Getenv("SLIPWAY_BASE_IMAGES")
	if dir == "" {
		dir = "/var/lib/slipway/base-images"
	}
	reason := ""
	if os.Geteuid() != 0 {
		reason = "buildkitd needs root"
	} else if _, err := buildkit.LookPath(""); err != nil {
		reason = err.Error()
	} else if imgs, err := baseimage.Images(dir); err != nil {
		reason = "reading base images: " + err.Error()
	} else {
		for _, r := range refs {
			if !slices.ContainsFunc(imgs, func(im baseimage.Image) bool { return im.Ref == r }) {
				reason = "base image " + r + " is not in " + dir + " (scripts/base-images.sh builds it)"
				break
			}
		}
	}
	if reason == "" {
		return dir
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and %s", reason)
	}
	t.Skip(reason)
	return ""
}

// TestBuildGoExampleWithBuildKit builds the Dockerfile generated for
// examples/go with a real buildkitd, pulling the base images from a
// registry seeded with the offline stand-ins (as the server does), twice:
// the second build must come from the cache. Build times are logged.
func TestBuildGoExampleWithBuildKit(t *testing.T) {
	const src = "../../../examples/go"
	p, err := Detect(src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	df, err := p.Dockerfile()
	if err != nil {
		t.Fatal(err)
	}
	layout := requireBuildEnv(t, "library/"+p.BaseImages.Build, "library/"+p.BaseImages.Runtime)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	if _, err := baseimage.Seed(ctx, layout, func(ctx context.Context, ref string, img v1.Image) error {
		r, err := name.ParseReference(host+"/"+ref, name.Insecure)
		if err != nil {
			return err
		}
		return remote.Write(r, img, remote.WithContext(ctx))
	}); err != nil {
		t.Fatalf("seeding base images: %v", err)
	}

	root := t.TempDir()
	d, err := buildkit.StartDaemon(ctx, buildkit.DaemonConfig{
		Root:                root,
		PlainHTTPRegistries: []string{host},
		DockerHubMirrors:    []string{host},
	})
	if err != nil {
		t.Fatalf("starting buildkitd: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("closing buildkitd: %v", err)
		}
		buildkit.UnmountUnder(root)
	})
	b, err := buildkit.New(d.Addr(), buildkit.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	var lines []string
	req := build.Request{
		ContextDir:        src,
		DockerfileContent: []byte(df),
		Image:             host + "/examples/go:1",
		Log:               func(_ time.Time, line string) { lines = append(lines, line) },
	}
	start := time.Now()
	res, err := b.Build(ctx, req)
	cold := time.Since(start)
	if err != nil {
		t.Fatalf("cold build: %v\nlog:\n%s", err, strings.Join(lines, "\n"))
	}
	lines = nil
	start = time.Now()
	res2, err := b.Build(ctx, req)
	warm := time.Since(start)
	if err != nil {
		t.Fatalf("warm build: %v\nlog:\n%s", err, strings.Join(lines, "\n"))
	}
	t.Logf("examples/go: cold build %s, warm build %s", cold.Round(time.Millisecond), warm.Round(time.Millisecond))
	if res2.Digest != res.Digest {
		t.Errorf("rebuilding unchanged source gave %s, then %s", res.Digest, res2.Digest)
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "CACHED") }) {
		t.Errorf("warm build log shows no cached step:\n%s", strings.Join(lines, "\n"))
	}

	ref, err := name.ParseReference(res.Image, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/bin/sh", "-c", "exec " + goBinary}; !slices.Equal(cf.Config.Cmd, want) {
		t.Errorf("Cmd %q, want %q", cf.Config.Cmd, want)
	}
	if !slices.Contains(cf.Config.Env, "PORT=3000") || cf.Config.WorkingDir != WorkDir {
		t.Errorf("Env %q WorkingDir %q", cf.Config.Env, cf.Config.WorkingDir)
	}
}

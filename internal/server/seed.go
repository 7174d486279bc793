package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/slipwayhq/slipway/internal/baseimage"
	"github.com/slipwayhq/slipway/internal/build"
	"github.com/slipwayhq/slipway/internal/registry"
)

// seedBaseImages pushes the base-image stand-ins found in dir (written by
// scripts/base-images.sh or by makeBaseImages) into the embedded registry,
// so builds find library/<name>:<tag> through the docker.io mirror.
func seedBaseImages(ctx context.Context, reg *registry.Registry, dir string, log *slog.Logger) error {
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		log.Info("no base images to seed", "dir", dir)
		return nil
	}
	refs, err := baseimage.Seed(ctx, dir, reg.Import)
	if err != nil {
		return err
	}
	log.Info("seeded base images", "dir", dir, "images", len(refs))
	return nil
}

// makeBaseImages makes, when Config.BuildBaseImages is set, the stand-ins
// that BaseImagesDir lacks in the background, seeding each when it is
// written; builds wait for those they need (see waitForBaseImages).
func (s *server) makeBaseImages(ctx context.Context) error {
	if !s.cfg.BuildBaseImages {
		return nil
	}
	if os.Geteuid() != 0 {
		s.log.Warn("not making the missing base images: that needs root (debootstrap, chroot)", "dir", s.cfg.BaseImagesDir)
		return nil
	}
	m, err := baseimage.NewMaker(baseimage.MakerConfig{
		Options: baseimage.Options{OutDir: s.cfg.BaseImagesDir, CacheDir: s.cfg.BaseImagesCache},
		Seed:    s.registry.Import,
		Log:     s.log,
	})
	if err != nil {
		return err
	}
	// Not the start's context: making goes on until shutdown.
	m.Start(context.Background())
	s.onStop(func(context.Context) { m.Close() })
	s.baseImages = m
	return nil
}

// waitForBaseImages is a build.Builder that, before each build, waits for
// the base images its Dockerfile names that the server is still making,
// saying so in the build's log, and holds the Maker's background work
// while the build waits and runs.
type waitForBaseImages struct {
	build.Builder
	maker *baseimage.Maker
}

func (w waitForBaseImages) Build(ctx context.Context, req build.Request) (build.Result, error) {
	logf := func(line string) {
		if req.Log != nil {
			req.Log(time.Now(), line)
		}
	}
	// Held from the start: no image that nobody waits for is begun between
	// the wait and the build.
	release := w.maker.Hold()
	defer release()
	if err := w.maker.Wait(ctx, baseimage.Needed(dockerfileOf(req)), logf); err != nil {
		return build.Result{}, err
	}
	return w.Builder.Build(ctx, req)
}

// dockerfileOf is the Dockerfile req builds; nil when it cannot be read
// (the builder reports that).
func dockerfileOf(req build.Request) []byte {
	if req.DockerfileContent != nil {
		return req.DockerfileContent
	}
	name := req.Dockerfile
	if name == "" {
		name = "Dockerfile"
	}
	f, err := os.OpenInRoot(req.ContextDir, name)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return b
}

package server

import (
	"context"
	"log/slog"
	"os"

	"github.com/slipwayhq/slipway/internal/baseimage"
	"github.com/slipwayhq/slipway/internal/registry"
)

// seedBaseImages pushes the base-image stand-ins found in dir (written by
// scripts/base-images.sh) into the embedded registry, so builds find
// library/<name>:<tag> through the docker.io mirror.
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

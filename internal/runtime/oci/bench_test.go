package oci

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// BenchmarkUnpackMapped unpacks a base image from the stand-ins that
// scripts/base-images.sh writes (SLIPWAY_BENCH_IMAGE, default
// library/debian:12, from /var/lib/slipway/base-images), as a cache
// without an ID map and as one with a map (files owned by shifted IDs)
// do, one after the other in each round, and reports both.
func BenchmarkUnpackMapped(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (chown)")
	}
	name := os.Getenv("SLIPWAY_BENCH_IMAGE")
	if name == "" {
		name = "library/debian:12"
	}
	img := baseImage(b, "/var/lib/slipway/base-images", name)
	layers, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	ids := IDMap{HostUID: 1879048192, HostGID: 1879048192, Size: 65536}
	var plain, mapped time.Duration
	for i := 0; i < b.N; i++ {
		for _, m := range []IDMap{{}, ids} {
			dir := filepath.Join(b.TempDir(), "rootfs")
			if err := os.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := extractLayers(context.Background(), layers, dir, m); err != nil {
				b.Fatal(err)
			}
			if m.Identity() {
				plain += time.Since(t0)
			} else {
				mapped += time.Since(t0)
			}
			os.RemoveAll(dir)
		}
	}
	b.ReportMetric(float64(plain.Milliseconds())/float64(b.N), "ms-plain/op")
	b.ReportMetric(float64(mapped.Milliseconds())/float64(b.N), "ms-mapped/op")
	b.ReportMetric(float64(mapped)/float64(plain), "mapped/plain")
}

// baseImage finds the image tagged name in the OCI layout at dir.
func baseImage(b *testing.B, dir, name string) v1.Image {
	b.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		b.Skipf("no base images at %s: %v", dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == name {
			img, err := idx.Image(d.Digest)
			if err != nil {
				b.Fatal(err)
			}
			return img
		}
	}
	b.Skipf("no image %s at %s", name, dir)
	return nil
}

package runc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
)

// TestUnpackDurability checks the crash safety of unpacked images: an
// image is marked durable by the background sync, and one that is neither
// durable nor unpacked in this boot (a crash of the machine may have torn
// it) is unpacked again.
func TestUnpackDurability(t *testing.T) {
	requireSandbox(t)
	ref := pushImage(t, "durable", nil, drivertest.Layer(t, drivertest.File{Name: "marker", Body: []byte(drivertest.NewID(t))}))
	key, err := imageKey(ref[strings.Index(ref, "@")+1:])
	if err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, Config{})
	dir := filepath.Join(d.cfg.Root, "images", key)
	h := startApp(t, d, runtime.Spec{Image: ref})
	boot, err := bootID()
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dir, unpackedFile))
	if err != nil || !strings.HasPrefix(string(token), boot+"\n") {
		t.Fatalf("%s = %q, %v; want this boot's ID first", unpackedFile, token, err)
	}
	d.waitSync()
	if _, err := os.Stat(filepath.Join(dir, durableFile)); err != nil {
		t.Fatalf("image not marked durable after the background sync: %v", err)
	}
	if err := d.Stop(t.Context(), h); err != nil {
		t.Fatal(err)
	}

	// As after a crash of the machine before the sync: another boot, no
	// mark. The tree may be torn; it is unpacked again.
	if err := os.Remove(filepath.Join(dir, durableFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, unpackedFile), []byte("another-boot\n.tmp-x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	torn := filepath.Join(dir, "rootfs", "marker")
	if err := os.Truncate(torn, 0); err != nil {
		t.Fatal(err)
	}
	startApp(t, d, runtime.Spec{Image: ref})
	if n := d.unpacks.Load(); n != 2 {
		t.Errorf("unpacks = %d, want 2 (the torn image unpacked again)", n)
	}
	if fi, err := os.Stat(torn); err != nil || fi.Size() == 0 {
		t.Errorf("the torn file was not restored: %v", err)
	}

	// Marked durable, an image from another boot is used as it is.
	d.waitSync()
	if err := os.WriteFile(filepath.Join(dir, unpackedFile), []byte("another-boot\n.tmp-x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startApp(t, d, runtime.Spec{Image: ref})
	if n := d.unpacks.Load(); n != 2 {
		t.Errorf("unpacks = %d, want 2 (a durable image reused)", n)
	}
}

// TestStartByTag checks that an image named by tag (not digest) is pulled
// and unpacked.
func TestStartByTag(t *testing.T) {
	requireSandbox(t)
	ref := pushImage(t, "bytag", nil, drivertest.Layer(t, drivertest.File{Name: "marker", Body: []byte(drivertest.NewID(t))}))
	tag := ref[:strings.Index(ref, "@")] + ":latest"
	d := newDriver(t, Config{})
	startApp(t, d, runtime.Spec{Image: tag})
	startApp(t, d, runtime.Spec{Image: tag})
	if n := d.unpacks.Load(); n != 1 {
		t.Errorf("unpacks = %d, want 1", n)
	}
}

package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
)

// pushMarked pushes an image whose one layer holds the file marker, with a
// body of its own: a digest no other test unpacked. It returns the image's
// reference by digest and the marker's body.
func pushMarked(t *testing.T, repo string) (ref, marker string) {
	t.Helper()
	marker = drivertest.NewID(t)
	img := drivertest.Image(t, v1.Config{}, drivertest.Layer(t, drivertest.File{Name: "marker", Body: []byte(marker)}))
	return drivertest.Push(t, drivertest.Registry(t), repo, img), marker
}

// newCache returns a cache in a new temporary directory that waits for
// its background sync at the end of the test.
func newCache(t *testing.T) *Cache {
	t.Helper()
	c, err := NewCache(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Wait)
	return c
}

// get gets ref from c, checks that its marker holds marker, and releases
// it.
func get(t *testing.T, c *Cache, ref, marker string) *Unpacked {
	t.Helper()
	img, release, err := c.Get(t.Context(), ref)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer release()
	if b, err := os.ReadFile(filepath.Join(img.Rootfs, "marker")); err != nil || string(b) != marker {
		t.Errorf("marker of the unpacked image = %q, %v; want %q", b, err, marker)
	}
	return img
}

// wantUnpacks checks that c has unpacked want images, as why says.
func wantUnpacks(t *testing.T, c *Cache, want int64, why string) {
	t.Helper()
	if n := c.Unpacks(); n != want {
		t.Errorf("unpacks = %d, want %d (%s)", n, want, why)
	}
}

func TestImageKey(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	if k, err := imageKey(d); err != nil || k != "sha256-"+strings.Repeat("ab", 32) {
		t.Errorf("imageKey(%q) = %q, %v", d, k, err)
	}
	for _, bad := range []string{"", "sha256:abc", "sha512:" + strings.Repeat("ab", 64), "sha256:../" + strings.Repeat("a", 61)} {
		if _, err := imageKey(bad); err == nil {
			t.Errorf("imageKey(%q) succeeded", bad)
		}
	}
}

// TestUnpackDurability checks the crash safety of unpacked images: an
// image is marked durable by the background sync, and one that is neither
// durable nor unpacked in this boot (a crash of the machine may have torn
// it) is unpacked again.
func TestUnpackDurability(t *testing.T) {
	requireRoot(t)
	ref, marker := pushMarked(t, "durable")
	key, err := imageKey(ref[strings.Index(ref, "@")+1:])
	if err != nil {
		t.Fatal(err)
	}
	c := newCache(t)
	dir := filepath.Join(c.dir, key)
	get(t, c, ref, marker)
	boot, err := bootID()
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dir, unpackedFile))
	if err != nil || !strings.HasPrefix(string(token), boot+"\n") {
		t.Fatalf("%s = %q, %v; want this boot's ID first", unpackedFile, token, err)
	}
	c.Wait()
	if _, err := os.Stat(filepath.Join(dir, durableFile)); err != nil {
		t.Fatalf("image not marked durable after the background sync: %v", err)
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
	get(t, c, ref, marker)
	wantUnpacks(t, c, 2, "the torn image unpacked again")
	if fi, err := os.Stat(torn); err != nil || fi.Size() == 0 {
		t.Errorf("the torn file was not restored: %v", err)
	}

	// Marked durable, an image from another boot is used as it is.
	c.Wait()
	if err := os.WriteFile(filepath.Join(dir, unpackedFile), []byte("another-boot\n.tmp-x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	get(t, c, ref, marker)
	wantUnpacks(t, c, 2, "a durable image reused")
}

// TestGetByTag checks that an image named by tag (not digest) is pulled
// and unpacked, once.
func TestGetByTag(t *testing.T) {
	requireRoot(t)
	ref, marker := pushMarked(t, "bytag")
	tag := ref[:strings.Index(ref, "@")] + ":latest"
	c := newCache(t)
	if img := get(t, c, tag, marker); img.Digest != ref[strings.Index(ref, "@")+1:] {
		t.Errorf("Digest = %s, want the pushed image's (%s)", img.Digest, ref)
	}
	get(t, c, tag, marker)
	wantUnpacks(t, c, 1, "the tag resolved to an image already unpacked")
}

// TestConcurrentGetsUnpackOnce checks that callers asking for the same
// image at once share one unpack.
func TestConcurrentGetsUnpackOnce(t *testing.T) {
	requireRoot(t)
	ref, marker := pushMarked(t, "concurrent")
	c := newCache(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			_, release, err := c.Get(context.Background(), ref)
			if err != nil {
				t.Errorf("Get #%d: %v", i, err)
				return
			}
			release()
		})
	}
	wg.Wait()
	get(t, c, ref, marker)
	wantUnpacks(t, c, 1, "concurrent callers share one unpack")
}

// TestRemove checks that an image an overlay is mounted on (an instance's
// filesystem) is not removed, and that one nothing uses is, to be unpacked
// again by the next Get.
func TestRemove(t *testing.T) {
	requireRoot(t)
	ref, marker := pushMarked(t, "remove")
	digest := ref[strings.Index(ref, "@")+1:]
	c := newCache(t)
	img := get(t, c, ref, marker)

	mnt := t.TempDir()
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(mnt, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	merged := filepath.Join(mnt, "merged")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", img.Rootfs, mnt, mnt)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Skipf("mounting an overlay: %v", err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			unix.Unmount(merged, unix.MNT_DETACH)
		}
	})
	if err := c.Remove(digest); !errors.Is(err, ErrInUse) {
		t.Errorf("Remove of an image in use = %v, want ErrInUse", err)
	}
	if err := unix.Unmount(merged, 0); err != nil {
		t.Fatal(err)
	}
	mounted = false

	if err := c.Remove(digest); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(img.Rootfs)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("image directory left: %v", err)
	}
	if err := c.Remove(digest); err != nil {
		t.Errorf("Remove of a removed image: %v", err)
	}
	get(t, c, ref, marker)
	wantUnpacks(t, c, 2, "a removed image unpacked again")
}

// TestGetUnreachable checks that an image that cannot be pulled is an
// error that names it, and leaves nothing in the cache.
func TestGetUnreachable(t *testing.T) {
	c := newCache(t)
	ref := "127.0.0.1:1/none@sha256:" + strings.Repeat("0", 64)
	_, _, err := c.Get(context.Background(), ref)
	if err == nil || !strings.Contains(err.Error(), ref) {
		t.Errorf("Get of an image that cannot be pulled = %v, want an error naming it", err)
	}
	if entries, _ := os.ReadDir(c.dir); len(entries) != 0 {
		t.Errorf("left in the cache: %v", entries)
	}
}

// TestUnpackFormat checks that an image unpacked by an older Slipway
// (which kept setuid bits and device nodes, and wrote no format file) is
// unpacked again.
func TestUnpackFormat(t *testing.T) {
	requireRoot(t)
	ref, marker := pushMarked(t, "format")
	key, err := imageKey(ref[strings.Index(ref, "@")+1:])
	if err != nil {
		t.Fatal(err)
	}
	c := newCache(t)
	get(t, c, ref, marker)
	get(t, c, ref, marker)
	wantUnpacks(t, c, 1, "an image of this format reused")
	c.Wait()
	if err := os.Remove(filepath.Join(c.dir, key, formatFile)); err != nil {
		t.Fatal(err)
	}
	get(t, c, ref, marker)
	wantUnpacks(t, c, 2, "an image of an older format unpacked again")
}

// TestMappedCache checks that a cache with an ID map unpacks an image
// with its files owned by the mapped IDs (the tree's root by the image's
// root), apart from the unmapped tree of the same image (unpacked by an
// older Slipway, or by a driver without a user namespace), and that
// Remove frees both.
func TestMappedCache(t *testing.T) {
	requireRoot(t)
	ids := IDMap{HostUID: 300000, HostGID: 400000, Size: 65536}
	marker := drivertest.NewID(t)
	img := drivertest.Image(t, v1.Config{}, drivertest.Layer(t,
		drivertest.File{Name: "marker", Body: []byte(marker)},
		drivertest.File{Name: "home/app/file", Body: []byte("x"), UID: 1000, GID: 1001},
		drivertest.File{Name: "big", Body: []byte("x"), UID: 70000, GID: 70000},
		drivertest.File{Name: "link", Symlink: "marker", UID: 5, GID: 6},
	))
	ref := drivertest.Push(t, drivertest.Registry(t), "mapped", img)
	digest := ref[strings.Index(ref, "@")+1:]
	dir := filepath.Join(t.TempDir(), "images")
	plain, err := NewCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plain.Wait)
	mapped, err := NewMappedCache(dir, ids)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mapped.Wait)

	old := get(t, plain, ref, marker)
	shifted := get(t, mapped, ref, marker)
	if old.Rootfs == shifted.Rootfs || shifted.Digest != digest {
		t.Fatalf("mapped tree %s (digest %s), unmapped %s", shifted.Rootfs, shifted.Digest, old.Rootfs)
	}
	owner := func(root, name string) [2]uint32 {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, name), &st); err != nil {
			t.Fatal(err)
		}
		return [2]uint32{st.Uid, st.Gid}
	}
	for name, want := range map[string][2]uint32{
		".":             {300000, 400000},
		"home":          {300000, 400000}, // made for the entries below it
		"home/app/file": {301000, 401001},
		"big":           {300000 + 65534, 400000 + 65534},
		"link":          {300005, 400006},
	} {
		if got := owner(shifted.Rootfs, name); got != want {
			t.Errorf("%s owned by %v in the mapped tree, want %v", name, got, want)
		}
	}
	if got := owner(old.Rootfs, "home/app/file"); got != [2]uint32{1000, 1001} {
		t.Errorf("the unmapped tree changed: owner %v", got)
	}
	get(t, mapped, ref, marker)
	wantUnpacks(t, mapped, 1, "the mapped tree reused")

	if err := mapped.Remove(digest); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{old.Rootfs, shifted.Rootfs} {
		if _, err := os.Stat(filepath.Dir(root)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Remove: %v", filepath.Dir(root), err)
		}
	}
}

func TestIDMap(t *testing.T) {
	var id IDMap
	if !id.Identity() || id.UID(70000) != 70000 || id.GID(0) != 0 {
		t.Errorf("the zero IDMap is not the identity")
	}
	m := IDMap{HostUID: 100000, HostGID: 200000, Size: 65536}
	for _, tc := range []struct{ in, uid, gid int }{{0, 100000, 200000}, {1000, 101000, 201000}, {65535, 165535, 265535}, {65536, 165534, 265534}, {-1, 165534, 265534}} {
		if u, g := m.UID(tc.in), m.GID(tc.in); u != tc.uid || g != tc.gid {
			t.Errorf("map of %d = %d:%d, want %d:%d", tc.in, u, g, tc.uid, tc.gid)
		}
	}
}

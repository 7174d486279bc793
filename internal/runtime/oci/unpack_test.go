package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
)

// requireRoot skips (or fails, under CI) a test that needs root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (CI is set, so it may not skip)")
	}
	t.Skip("this test needs root")
}

func extractImage(t *testing.T, layers ...v1.Layer) (string, error) {
	t.Helper()
	img := drivertest.Image(t, v1.Config{}, layers...)
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return dir, extractLayers(context.Background(), ls, dir)
}

// extract writes one tar stream into dir with the extractor alone, no
// layer filtering in front: what a hostile entry meets last.
func extract(ctx context.Context, r io.Reader, dir string) error {
	x, err := newExtractor(dir)
	if err != nil {
		return err
	}
	defer x.close()
	if err := x.apply(ctx, tar.NewReader(r), nil); err != nil {
		return err
	}
	return x.finish()
}

func TestExtractMetadata(t *testing.T) {
	requireRoot(t)
	dir, err := extractImage(t,
		drivertest.Layer(t,
			drivertest.File{Name: "d", Dir: true, Mode: 0o750, UID: 1000, GID: 1001},
			drivertest.File{Name: "d/lower", Body: []byte("l")},
			drivertest.File{Name: "bin", Dir: true},
			drivertest.File{Name: "bin/su", Body: []byte("x"), Mode: 0o4755},
			drivertest.File{Name: "tmp", Dir: true, Mode: 0o1777},
		),
		// The upper layer writes into d without listing d itself: the
		// flattened stream holds d/upper before d.
		drivertest.Layer(t,
			drivertest.File{Name: "d/upper", Body: []byte("u"), UID: 7, GID: 8, Mode: 0o600},
			drivertest.File{Name: "d/link", Symlink: "upper", UID: 7, GID: 8},
		),
	)
	if err != nil {
		t.Fatalf("extract: %v", err)
	}
	for _, tc := range []struct {
		path     string
		mode     os.FileMode
		uid, gid uint32
	}{
		{"d", os.ModeDir | 0o750, 1000, 1001},
		{"d/lower", 0o644, 0, 0},
		{"d/upper", 0o600, 7, 8},
		{"d/link", os.ModeSymlink | 0o777, 7, 8},
		{"bin/su", os.ModeSetuid | 0o755, 0, 0},
		{"tmp", os.ModeDir | os.ModeSticky | 0o777, 0, 0},
	} {
		fi, err := os.Lstat(filepath.Join(dir, tc.path))
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != tc.mode || st.Uid != tc.uid || st.Gid != tc.gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", tc.path, fi.Mode(), st.Uid, st.Gid, tc.mode, tc.uid, tc.gid)
		}
	}
}

func TestExtractUpperWins(t *testing.T) {
	requireRoot(t)
	dir, err := extractImage(t,
		drivertest.Layer(t,
			drivertest.File{Name: "f", Body: []byte("lower")},
			drivertest.File{Name: "x", Body: []byte("file in lower")},
		),
		drivertest.Layer(t,
			drivertest.File{Name: "f", Body: []byte("upper")},
			drivertest.File{Name: "x", Dir: true},
			drivertest.File{Name: "x/y", Body: []byte("in dir")},
		),
	)
	if err != nil {
		t.Fatalf("extract: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "upper" {
		t.Errorf("f = %q, want the upper layer's", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "x/y")); string(b) != "in dir" {
		t.Errorf("x/y = %q", b)
	}
}

func TestExtractStaysInside(t *testing.T) {
	requireRoot(t)
	// mutate.Extract drops entries below a non-directory, so the stream is
	// crafted by hand, as a hostile one would be.
	outside := t.TempDir()
	for name, entries := range map[string][]tar.Header{
		"through an absolute symlink": {
			{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: outside},
			{Name: "evil/planted", Typeflag: tar.TypeReg, Mode: 0o644},
		},
		"through a relative symlink": {
			{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../../" + outside},
			{Name: "evil/planted", Typeflag: tar.TypeReg, Mode: 0o644},
		},
		"hard link to a file outside": {
			{Name: "planted", Typeflag: tar.TypeLink, Linkname: "../../../../../../../../" + outside + "/target"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(filepath.Join(outside, "target"), []byte("t"), 0o644)
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range entries {
				tw.WriteHeader(&h)
			}
			tw.Close()
			dir := t.TempDir()
			extract(context.Background(), &buf, dir)
			if _, err := os.Stat(filepath.Join(outside, "planted")); err == nil {
				t.Fatalf("extract planted a file outside the root")
			}
			if fi, err := os.Lstat(filepath.Join(dir, "planted")); err == nil && fi.Mode().IsRegular() {
				t.Errorf("extract linked a file from outside the root")
			}
		})
	}
}

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
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

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
	return dir, extractLayers(context.Background(), ls, dir, IDMap{})
}

// extract writes one tar stream into dir with the extractor alone, no
// layer filtering in front: what a hostile entry meets last.
func extract(ctx context.Context, r io.Reader, dir string) error {
	x, err := newExtractor(dir, IDMap{})
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
		{"bin/su", 0o755, 0, 0}, // setuid cleared: see TestExtractGrantsNoPrivilege
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

// TestExtractGrantsNoPrivilege unpacks a crafted layer, as a hostile
// image would carry it: a setuid-root shell, a setgid file, a file with
// capabilities and device nodes. The unpacked tree lives on the host: none
// of it may grant privileges there.
func TestExtractGrantsNoPrivilege(t *testing.T) {
	requireRoot(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/sh", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 2},
		{Name: "bin/wall", Typeflag: tar.TypeReg, Mode: 0o2755, Gid: 5, Size: 2},
		{Name: "bin/ping", Typeflag: tar.TypeReg, Mode: 0o755, Size: 2, Format: tar.FormatPAX,
			// cap_setuid+ep (VFS_CAP_REVISION_2)
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": string([]byte{0, 0, 0, 2, 0x80, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})}},
		{Name: "bin/su", Typeflag: tar.TypeLink, Linkname: "bin/sh"},
		{Name: "shared/", Typeflag: tar.TypeDir, Mode: 0o2775, Gid: 50},
		{Name: "mem", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 1},
		{Name: "disk", Typeflag: tar.TypeBlock, Mode: 0o666, Devmajor: 8, Devminor: 0},
		{Name: "pipe", Typeflag: tar.TypeFifo, Mode: 0o644},
	} {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("x\n"))
		}
	}
	tw.Close()
	b := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	dir, err := extractImage(t, layer)
	if err != nil {
		t.Fatalf("extract: %v", err)
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{
		{"bin/sh", 0o755},
		{"bin/su", 0o755},
		{"bin/wall", 0o755},
		{"bin/ping", 0o755},
		{"shared", os.ModeDir | os.ModeSetgid | 0o775}, // new files inherit its group: no privilege
		{"pipe", os.ModeNamedPipe | 0o644},
	} {
		fi, err := os.Lstat(filepath.Join(dir, tc.path))
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s: mode %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
	}
	if n, err := unix.Lgetxattr(filepath.Join(dir, "bin/ping"), "security.capability", make([]byte, 64)); err != unix.ENODATA {
		t.Errorf("bin/ping keeps file capabilities (%d bytes, %v)", n, err)
	}
	for _, dev := range []string{"mem", "disk"} {
		if fi, err := os.Lstat(filepath.Join(dir, dev)); err == nil {
			t.Errorf("device node %s created (%v)", dev, fi.Mode())
		}
	}
}

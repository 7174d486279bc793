package drivertest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// appPackage is the import path of the test app's main package.
const appPackage = "github.com/slipwayhq/slipway/internal/runtime/drivertest/testdata/testapp"

// BuildApp compiles the test app (package testapp) into a static Linux
// binary with the go command and returns the binary's path. The test fails
// if the go command is missing: the suite needs the real app.
func BuildApp(t testing.TB) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building the test app needs the go command: %v", err)
	}
	out := filepath.Join(t.TempDir(), "testapp")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, appPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test app: %v\n%s", err, b)
	}
	return out
}

// File is one entry of a layer built by Layer.
type File struct {
	Name     string // path inside the image, without a leading slash
	Body     []byte // content of a regular file
	Mode     int64  // permission bits; if zero, 0644 for files and 0755 for directories
	Dir      bool   // a directory
	Symlink  string // if set, a symbolic link to this target
	Hardlink string // if set, a hard link to this path of the same layer
	UID, GID int
}

// Layer builds a gzip-compressed layer holding files, in order.
func Layer(t testing.TB, files ...File) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.Name, Mode: f.Mode, Uid: f.UID, Gid: f.GID, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			hdr.Typeflag = tar.TypeDir
			if hdr.Mode == 0 {
				hdr.Mode = 0o755
			}
		case f.Symlink != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.Symlink, 0o777
		case f.Hardlink != "":
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, f.Hardlink
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.Body))
			if hdr.Mode == 0 {
				hdr.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("writing layer: %v", err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Body); err != nil {
				t.Fatalf("writing layer: %v", err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("writing layer: %v", err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		t.Fatalf("building layer: %v", err)
	}
	return l
}

// AppFiles returns the files of the test app image: the binary at /app,
// an /etc with passwd and group entries for the user "app" (1000:1000, also
// in group "extra", 2000), and a world-writable /tmp.
func AppFiles(t testing.TB, bin string) []File {
	t.Helper()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatalf("reading test app: %v", err)
	}
	return []File{
		{Name: "app", Body: b, Mode: 0o755},
		{Name: "etc", Dir: true},
		{Name: "etc/passwd", Body: []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")},
		{Name: "etc/group", Body: []byte("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")},
		{Name: "tmp", Dir: true, Mode: 0o1777},
	}
}

// AppConfig is the image configuration of the test app image.
func AppConfig() v1.Config {
	return v1.Config{
		Entrypoint: []string{"/app"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "IMAGE_ENV=from-image", "APP_ID=from-image"},
		WorkingDir: "/",
	}
}

// Image builds an image from layers (bottom first) and cfg.
func Image(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatalf("building image: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("building image: %v", err)
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS, cf.Architecture = "linux", "amd64"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatalf("building image: %v", err)
	}
	return img
}

// Registry starts an in-memory OCI registry on loopback for the rest of
// the test and returns its host:port.
func Registry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Push pushes img to host/repo and returns its reference by digest
// (host/repo@sha256:...).
func Push(t testing.TB, host, repo string, img v1.Image) string {
	t.Helper()
	tag, err := name.NewTag(host+"/"+repo+":latest", name.Insecure)
	if err != nil {
		t.Fatalf("parsing reference: %v", err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("pushing image: %v", err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("image digest: %v", err)
	}
	return host + "/" + repo + "@" + d.String()
}

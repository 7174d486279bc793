package plan

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/mod/modfile"
)

// goProvider plans Go modules: go build of the main package into a small
// runtime image.
type goProvider struct{}

// goDefault is the Go version of a go.mod without a go directive: the
// version of the offline stand-in golang image.
const goDefault = "1.23"

// GoImage is the official image plans build Go version v ("1.23") with,
// pinned to Debian bookworm.
func GoImage(v string) string { return "golang:" + v + "-bookworm" }

// GoRuntimeImage is the image Go apps run in: Debian slim has a shell (for
// start commands with $PORT) and glibc (for cgo), and is small.
const GoRuntimeImage = "debian:bookworm-slim"

// goBinary is where the app's binary is built to and run from.
const goBinary = "/usr/local/bin/app"

var (
	cacheGoMod   = Cache{ID: "slipway-go-mod", Target: "/go/pkg/mod"}
	cacheGoBuild = Cache{ID: "slipway-go-build", Target: "/root/.cache/go-build"}
)

// goCgoModules are dependencies that need cgo: with one of them the build
// keeps CGO_ENABLED=1 (the runtime image has glibc).
var goCgoModules = []string{"github.com/mattn/go-sqlite3"}

func (goProvider) lookedFor() string { return "a Go module (go.mod)" }

func (goProvider) detect(t *tree) (bool, error) { return t.isFile("go.mod"), nil }

// parseGoMod parses go.mod with golang.org/x/mod/modfile, the go command's
// own parser. Errors are *Error with line and column (File unset).
func parseGoMod(data []byte) (*modfile.File, error) {
	f, err := modfile.Parse("go.mod", data, nil)
	if err != nil {
		var el modfile.ErrorList
		if errors.As(err, &el) && len(el) > 0 {
			e := el[0]
			msg := e.Err.Error()
			if e.Verb != "" {
				msg = e.Verb + ": " + msg
			}
			return nil, &Error{Line: e.Pos.Line, Column: e.Pos.LineRune, Message: msg}
		}
		// Syntax errors come as "go.mod:LINE:COL: message".
		msg := strings.TrimPrefix(err.Error(), "go.mod:")
		var line, col int
		if n, _ := fmt.Sscanf(msg, "%d:%d:", &line, &col); n == 2 {
			_, msg, _ = strings.Cut(msg, ": ")
		} else if n == 1 {
			_, msg, _ = strings.Cut(msg, ": ")
		}
		return nil, &Error{Line: line, Column: col, Message: msg}
	}
	return f, nil
}

func (goProvider) plan(t *tree, p *Plan) error {
	data, err := t.read("go.mod")
	if err != nil {
		return err
	}
	mf, err := parseGoMod(data)
	if err != nil {
		return withFile(err, t.rel("go.mod"))
	}
	p.Provider = ProviderGo
	p.WorkDir = WorkDir
	p.Facts.Language = &Fact{Value: "go", File: "go.mod", Reason: "go.mod is present"}
	mod := ""
	if mf.Module != nil {
		mod = mf.Module.Mod.Path
	}

	ver := &Fact{Value: goDefault, File: "go.mod", Reason: "go.mod has no go directive; the default"}
	if mf.Go != nil {
		parts, _ := parseParts(mf.Go.Version)
		if len(parts) >= 2 {
			ver.Value = joinParts(parts[:2])
		}
		ver.Line = mf.Go.Syntax.Start.Line
		ver.Reason = "go.mod's go directive says " + mf.Go.Version
		if mf.Toolchain != nil {
			ver.Reason += " (toolchain " + mf.Toolchain.Name + " is fetched by the go command when newer)"
		}
	}
	p.Facts.LanguageVersion = ver
	p.BaseImages = BaseImages{Build: GoImage(ver.Value), Runtime: GoRuntimeImage}
	p.Facts.PackageManager = &Fact{Value: "go", File: "go.mod", Reason: "Go modules"}

	pkg, file, line, why, err := goMainPackage(t, mod)
	if err != nil {
		return err
	}
	cgo := "0"
	for _, r := range mf.Require {
		if slices.Contains(goCgoModules, r.Mod.Path) {
			cgo = "1"
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s needs cgo: built with CGO_ENABLED=1", r.Mod.Path))
		}
	}
	p.BuildEnv = map[string]string{
		"CGO_ENABLED": cgo,
		"GOMODCACHE":  cacheGoMod.Target,
		"GOCACHE":     cacheGoBuild.Target,
	}
	p.Env = map[string]string{"PORT": Port}

	// Download from go.mod and go.sum alone, so that the layer stays
	// cached while only the code changes; the whole tree when go.mod
	// points into it (replace directives to directories) or a go.work does.
	inputs := []string{"go.mod"}
	if t.isFile("go.sum") {
		inputs = append(inputs, "go.sum")
	}
	for _, r := range mf.Replace {
		if r.New.Version == "" { // a directory
			inputs = []string{"."}
			break
		}
	}
	if t.isFile("go.work") {
		inputs = []string{"."}
	}
	if !t.isDir("vendor") {
		p.Steps = append(p.Steps, Step{Name: "download modules", Inputs: inputs,
			Commands: []string{"go mod download"}, Caches: []Cache{cacheGoMod}})
	}
	if pkg == "" {
		return t.noEntryPoint(p, t.errorf("go.mod", 0, 0, "%s", why))
	}
	// CGO_ENABLED=0 and -trimpath are the flags the offline golang
	// stand-in precompiles the standard library with (internal/baseimage):
	// builds with other compile flags compile std again, 20 s on two cores.
	p.Steps = append(p.Steps, Step{Name: "build", Inputs: []string{"."},
		Commands: []string{fmt.Sprintf(`go build -trimpath -ldflags="-s -w" -o %s %s`, goBinary, pkg)},
		Caches:   []Cache{cacheGoMod, cacheGoBuild}})
	// The tree comes along for apps that read templates or assets from
	// their working directory; CA certificates for apps that call out.
	p.Artifacts = []string{goBinary, "/etc/ssl/certs/ca-certificates.crt", WorkDir}
	p.Facts.EntryPoint = &Fact{Value: pkg, File: file, Line: line, Reason: why}
	p.DetectedStartCommand = goBinary
	return nil
}

var goPackageMain = regexp.MustCompile(`^package\s+main\b`)

// goMainPackage finds the package to build: the module root when it is a
// main package, else one under cmd/. With several under cmd/ it prefers
// the one named like the module, then server, api, web, app; else the
// first by name. pkg is empty when there is none (why then says so).
func goMainPackage(t *tree, mod string) (pkg, file string, line int, why string, err error) {
	if f, l := goMainIn(t, "."); f != "" {
		return ".", f, l, fmt.Sprintf("%s declares package main at the module root", f), nil
	}
	entries, err := fs.ReadDir(t.fsys, "cmd")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", "", 0, "", fmt.Errorf("reading cmd: %w", err)
	}
	var mains []string
	for _, e := range entries {
		if e.IsDir() && !strings.ContainsFunc(e.Name(), unicode.IsControl) {
			if f, _ := goMainIn(t, "cmd/"+e.Name()); f != "" {
				mains = append(mains, e.Name())
			}
		}
	}
	if len(mains) == 0 {
		return "", "", 0, "no entry point: no package main at the module root or in cmd/<name>/", nil
	}
	chosen := mains[0]
	why = fmt.Sprintf("cmd/%s is the only main package under cmd/", chosen)
	if len(mains) > 1 {
		why = fmt.Sprintf("cmd/%s is the first main package under cmd/ by name (of %s)", chosen, strings.Join(mains, ", "))
		for _, want := range []string{path.Base(mod), "server", "api", "web", "app"} {
			if slices.Contains(mains, want) {
				chosen = want
				why = fmt.Sprintf("cmd/%s is preferred among the main packages under cmd/ (%s): named like the module, or server, api, web, app", chosen, strings.Join(mains, ", "))
				break
			}
		}
	}
	f, l := goMainIn(t, "cmd/"+chosen)
	return shellWord("./cmd/" + chosen), f, l, why, nil
}

// goMainIn returns a non-test .go file of dir that declares package main,
// and the line of the clause.
func goMainIn(t *tree, dir string) (string, int) {
	entries, err := fs.ReadDir(t.fsys, dir)
	if err != nil {
		return "", 0
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f := path.Join(dir, n)
		b, err := fs.ReadFile(t.fsys, f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for l := 1; sc.Scan(); l++ {
			if goPackageMain.Match(bytes.TrimSpace(sc.Bytes())) {
				return f, l
			}
		}
	}
	return "", 0
}

package plan

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
)

// pythonProvider plans Python apps: FastAPI, Flask, Django or a plain
// script, installed with uv, poetry or pip.
type pythonProvider struct{}

var pythonMarkers = []string{"pyproject.toml", "requirements.txt", "uv.lock", "poetry.lock",
	"setup.py", "manage.py", ".python-version", "runtime.txt"}

// Python lines plans may pick from a constraint, oldest first, and the
// default: Debian bookworm's python3 is 3.11, so the offline stand-in for
// the default image is a Debian python.
var (
	pythonLines   = [][]int{{3, 9}, {3, 10}, {3, 11}, {3, 12}, {3, 13}, {3, 14}}
	pythonDefault = []int{3, 11}
)

// PythonImage is the official image plans use for Python version v
// ("3.11"): the slim variant, pinned to Debian bookworm.
func PythonImage(v string) string { return "python:" + v + "-slim-bookworm" }

// The caches of the Python package managers. pip and poetry do not lock
// their caches against concurrent writers; uv does.
var (
	cachePip    = Cache{ID: "slipway-pip", Target: "/root/.cache/pip", Sharing: "locked"}
	cacheUV     = Cache{ID: "slipway-uv", Target: "/root/.cache/uv"}
	cachePoetry = Cache{ID: "slipway-poetry", Target: "/root/.cache/pypoetry", Sharing: "locked"}
)

// venv is where uv installs a project's environment: outside /app, so that
// copying the tree cannot overwrite it with a local .venv.
const venv = "/opt/venv"

func (pythonProvider) lookedFor() string {
	return "a Python project (" + strings.Join(pythonMarkers, ", ") + ")"
}

func (pythonProvider) detect(t *tree) (bool, error) {
	_, ok := t.anyFile(pythonMarkers...)
	return ok, nil
}

// pyScan is the state of planning one Python project.
type pyScan struct {
	t    *tree
	p    *Plan
	pp   *pyproject // nil without a pyproject.toml
	deps map[string]pyDep
	// server lists servers (gunicorn, uvicorn) the start command needs that
	// the dependencies lack; a step installs them.
	server []string
}

func (pythonProvider) plan(t *tree, p *Plan) error {
	s := &pyScan{t: t, p: p, deps: map[string]pyDep{}}
	if b, ok, err := t.readIf("pyproject.toml"); err != nil {
		return err
	} else if ok {
		if s.pp, err = parsePyproject(b); err != nil {
			return withFile(err, t.rel("pyproject.toml"))
		}
	}
	marker, _ := t.anyFile(pythonMarkers...)
	p.Provider = ProviderPython
	p.WorkDir = WorkDir
	p.Facts.Language = &Fact{Value: "python", File: marker, Reason: marker + " is present"}

	ver, err := s.version()
	if err != nil {
		return err
	}
	p.Facts.LanguageVersion = ver
	p.BaseImages = BaseImages{Build: PythonImage(ver.Value), Runtime: PythonImage(ver.Value)}
	p.BuildEnv = map[string]string{
		"PIP_DISABLE_PIP_VERSION_CHECK": "1",
		"PIP_ROOT_USER_ACTION":          "ignore",
	}
	p.Env = map[string]string{"PORT": Port, "PYTHONUNBUFFERED": "1"}

	install, manager, err := s.packageManager()
	if err != nil {
		return err
	}
	if err := s.entryPoint(); err != nil {
		return err
	}

	p.Steps = append(p.Steps, install...)
	if len(s.server) > 0 {
		cmd, cache := "pip install "+strings.Join(s.server, " "), cachePip
		if manager == "uv" {
			cmd, cache = "uv pip install --python "+venv+"/bin/python "+strings.Join(s.server, " "), cacheUV
		}
		p.Steps = append(p.Steps, Step{Name: "install server", Commands: []string{cmd}, Caches: []Cache{cache}})
	}
	app := Step{Name: "copy app", Inputs: []string{"."}}
	switch manager {
	case "uv":
		// Installs the project itself when it is a package; exact=false
		// keeps the server installed above.
		app.Commands = []string{"uv sync --locked --no-dev --inexact"}
		app.Caches = []Cache{cacheUV}
	case "pip-project":
		app.Commands = []string{"pip install ."}
		app.Caches = []Cache{cachePip}
	}
	p.Steps = append(p.Steps, app)
	return nil
}

// version picks the Python version: .python-version, then pyproject.toml's
// requires-python (or Poetry's python dependency), then runtime.txt, else
// the default.
func (s *pyScan) version() (*Fact, error) {
	t := s.t
	def := joinParts(pythonDefault)
	if b, ok, err := t.readIf(".python-version"); err != nil {
		return nil, err
	} else if ok {
		line, n := firstLine(b)
		if parts, _ := parseParts(line); len(parts) >= 2 && parts[0] == 3 && isDigits(strings.SplitN(line, ".", 3)[0]) {
			v := joinParts(parts[:2])
			return &Fact{Value: v, File: ".python-version", Line: n, Reason: fmt.Sprintf(".python-version asks for %s", line)}, nil
		} else if line != "" {
			s.warnf(".python-version asks for %q, which is not a CPython 3.x version; ignored", line)
		}
	}
	if s.pp != nil {
		for _, c := range []struct{ key, spec string }{
			{"requires-python", s.pp.Project.RequiresPython},
			{"python", s.pp.poetryPython()},
		} {
			if strings.TrimSpace(c.spec) == "" {
				continue
			}
			f := &Fact{File: "pyproject.toml", Line: quotedLine(s.pp.data, c.spec)}
			line, ok := pickLine(c.spec, stylePython, pythonLines, pythonDefault)
			switch {
			case !ok:
				s.warnf("pyproject.toml: %s %q admits none of the Python versions plans support (%s); using %s", c.key, c.spec, lineList(pythonLines), def)
				f.Value, f.Reason = def, fmt.Sprintf("%s %q admits no supported version; the default", c.key, c.spec)
			case slices.Equal(line, pythonDefault):
				f.Value, f.Reason = def, fmt.Sprintf("%s %q admits %s, the default", c.key, c.spec, def)
			default:
				f.Value = joinParts(line)
				f.Reason = fmt.Sprintf("%s %q excludes the default %s; %s is the newest version it admits", c.key, c.spec, def, f.Value)
			}
			return f, nil
		}
	}
	if b, ok, err := t.readIf("runtime.txt"); err != nil {
		return nil, err
	} else if ok {
		line, n := firstLine(b)
		if v, found := strings.CutPrefix(line, "python-"); found {
			if parts, _ := parseParts(v); len(parts) >= 2 {
				return &Fact{Value: joinParts(parts[:2]), File: "runtime.txt", Line: n, Reason: fmt.Sprintf("runtime.txt asks for %s", line)}, nil
			}
		}
		s.warnf("runtime.txt: %q is not of the form python-3.X; ignored", line)
	}
	return &Fact{Value: def, Reason: "no .python-version, requires-python or runtime.txt; the default"}, nil
}

// packageManager chooses the package manager and returns the steps that
// install the dependencies (before the tree is copied). manager is "uv",
// "poetry", "pip", "pip-project" (pip install . after the copy) or "".
func (s *pyScan) packageManager() (steps []Step, manager string, err error) {
	t, p := s.t, s.p
	hasPoetry := s.pp != nil && s.pp.Tool.Poetry != nil
	switch {
	case t.isFile("uv.lock"):
		manager = "uv"
		p.Facts.PackageManager = &Fact{Value: "uv", File: "uv.lock", Reason: "uv.lock is present"}
	case t.isFile("poetry.lock"):
		manager = "poetry"
		p.Facts.PackageManager = &Fact{Value: "poetry", File: "poetry.lock", Reason: "poetry.lock is present"}
	case hasPoetry:
		manager = "poetry"
		p.Facts.PackageManager = &Fact{Value: "poetry", File: "pyproject.toml", Line: lineOf(s.pp.data, "[tool.poetry"),
			Reason: "pyproject.toml has a [tool.poetry] section (no poetry.lock: dependencies are resolved at build time)"}
		p.Warnings = append(p.Warnings, "no poetry.lock: commit one so that builds install the versions you tested")
	case t.isFile("requirements.txt"):
		manager = "pip"
		p.Facts.PackageManager = &Fact{Value: "pip", File: "requirements.txt", Reason: "requirements.txt is present"}
	case s.pp != nil && s.pp.Project.Name != "", t.isFile("setup.py"):
		manager = "pip-project"
		f, _ := t.anyFile("pyproject.toml", "setup.py")
		p.Facts.PackageManager = &Fact{Value: "pip", File: f, Reason: f + " describes an installable project and there is no lock file: pip installs it"}
	}

	if s.pp != nil {
		s.addDeps(pyprojectDeps(s.pp, "pyproject.toml"))
	}
	switch manager {
	case "uv":
		if s.pp == nil {
			return nil, "", t.errorf("uv.lock", 0, 0, "uv.lock without a pyproject.toml: uv cannot install it")
		}
		p.BuildEnv["UV_COMPILE_BYTECODE"] = "1"
		p.BuildEnv["UV_LINK_MODE"] = "copy"
		p.BuildEnv["UV_PROJECT_ENVIRONMENT"] = venv
		p.BuildEnv["UV_PYTHON"] = "python3"
		p.BuildEnv["UV_PYTHON_DOWNLOADS"] = "never"
		p.Env["PATH"] = venv + "/bin:$PATH"
		p.Env["VIRTUAL_ENV"] = venv
		inputs := []string{"pyproject.toml", "uv.lock"}
		if s.pp.Tool.UV.Workspace != nil {
			inputs = []string{"."} // the members' manifests are needed too
		}
		steps = append(steps, Step{
			Name:     "install dependencies",
			Inputs:   inputs,
			Commands: []string{"pip install uv", "uv sync --locked --no-dev --no-install-project"},
			Caches:   []Cache{cachePip, cacheUV},
		})
	case "poetry":
		p.BuildEnv["POETRY_VIRTUALENVS_CREATE"] = "false"
		p.BuildEnv["POETRY_NO_INTERACTION"] = "1"
		p.BuildEnv["POETRY_CACHE_DIR"] = cachePoetry.Target
		inputs := []string{"pyproject.toml"}
		if t.isFile("poetry.lock") {
			inputs = append(inputs, "poetry.lock")
		}
		if t.isFile("poetry.toml") {
			inputs = append(inputs, "poetry.toml")
		}
		steps = append(steps, Step{
			Name:     "install dependencies",
			Inputs:   inputs,
			Commands: []string{"pip install poetry", "poetry install --no-root --only main"},
			Caches:   []Cache{cachePip, cachePoetry},
		})
	case "pip":
		b, err := t.read("requirements.txt")
		if err != nil {
			return nil, "", err
		}
		rq, err := parseRequirements(b, "requirements.txt", func(name string) ([]byte, bool, error) { return t.readIf(name) }, 4)
		if err != nil {
			return nil, "", withFile(err, "requirements.txt")
		}
		s.addDeps(rq.deps)
		inputs := rq.files
		if rq.local {
			inputs = []string{"."} // a requirement is a path in the tree
		}
		steps = append(steps, Step{
			Name:     "install dependencies",
			Inputs:   inputs,
			Commands: []string{"pip install -r requirements.txt"},
			Caches:   []Cache{cachePip},
		})
	}
	return steps, manager, nil
}

func (s *pyScan) addDeps(deps []pyDep) {
	for _, d := range deps {
		if _, ok := s.deps[d.name]; !ok {
			s.deps[d.name] = d
		}
	}
}

// has reports whether distribution name is a dependency, directly or as
// what an extra of another brings in (fastapi[standard] brings uvicorn).
func (s *pyScan) has(name string) bool {
	if _, ok := s.deps[name]; ok {
		return true
	}
	if name == "uvicorn" {
		if d, ok := s.deps["fastapi"]; ok && (slices.Contains(d.extra, "standard") || slices.Contains(d.extra, "all")) {
			return true
		}
	}
	return false
}

func (s *pyScan) depFact(name, why string) *Fact {
	d := s.deps[name]
	return &Fact{Value: name, File: d.file, Line: d.line, Reason: fmt.Sprintf("%s is a dependency in %s%s", name, d.file, why)}
}

// needServer makes sure the start command's server is installed.
func (s *pyScan) needServer(name string) {
	if s.has(name) {
		return
	}
	s.server = append(s.server, name)
	s.warnf("%s is not among the dependencies; the plan installs it to start the app (add it to pin its version)", name)
}

func (s *pyScan) warnf(format string, a ...any) {
	s.p.Warnings = append(s.p.Warnings, fmt.Sprintf(format, a...))
}

// entryPoint detects the framework and the entry point, and sets the
// start command.
func (s *pyScan) entryPoint() error {
	t, p := s.t, s.p
	switch {
	case s.has("django"):
		p.Facts.Framework = s.depFact("django", "")
		return s.django()
	case s.has("fastapi"):
		p.Facts.Framework = s.depFact("fastapi", "")
		return s.asgiApp("fastapi")
	case s.has("flask"):
		p.Facts.Framework = s.depFact("flask", "")
		return s.asgiApp("flask")
	}
	if m, _, _ := s.findManage(); m != "" {
		p.Facts.Framework = &Fact{Value: "django", File: m, Reason: m + " sets DJANGO_SETTINGS_MODULE"}
		s.warnf("django is not among the dependencies")
		return s.django()
	}
	if f, ok := t.anyFile("main.py", "app.py", "server.py"); ok {
		p.Facts.EntryPoint = &Fact{Value: f, File: f, Reason: "no web framework among the dependencies; " + f + " is the script at the project root"}
		p.DetectedStartCommand = "python " + f
		return nil
	}
	return t.noEntryPoint(p, t.errorf("", 0, 0,
		"no entry point: no FastAPI, Flask or Django among the dependencies, and no main.py, app.py or server.py at the project root; set a start command"))
}

// pyApp is a module-level app object (or app factory) found in the code.
type pyApp struct {
	file    string
	line    int
	name    string // the variable, or the factory function
	factory bool
}

// asgiApp finds the FastAPI or Flask app and starts it with uvicorn or
// gunicorn.
func (s *pyScan) asgiApp(fw string) error {
	t, p := s.t, s.p
	apps, err := findPyApps(t, fw)
	if err != nil {
		return err
	}
	ctor := map[string]string{"fastapi": "FastAPI()", "flask": "Flask(__name__)"}[fw]
	if len(apps) == 0 {
		return t.noEntryPoint(p, t.errorf("", 0, 0,
			"no entry point: %s is a dependency, but no Python file assigns %s (or calls a create_app() factory) at module level; set a start command", fw, ctor))
	}
	a := apps[0]
	dir, mod := pyModule(a.file)
	target := mod + ":" + a.name
	reason := fmt.Sprintf("%s creates the app at module level (%s)", a.file, ctor)
	if a.factory {
		reason = fmt.Sprintf("%s defines the app factory %s()", a.file, a.name)
	}
	if len(apps) > 1 {
		reason += fmt.Sprintf("; chosen over %d other candidate(s): module-level apps first, then the shallowest file, main.py, app.py, wsgi.py first", len(apps)-1)
	}
	switch fw {
	case "fastapi":
		s.needServer("uvicorn")
		cmd := "uvicorn " + target
		if a.factory {
			cmd += " --factory"
		}
		cmd += " --host 0.0.0.0 --port $PORT"
		if dir != "" {
			cmd += " --app-dir " + shellWord(dir)
		}
		p.DetectedStartCommand = cmd
		if a.factory {
			target += "()"
		}
	case "flask":
		s.needServer("gunicorn")
		cmd := "gunicorn --bind 0.0.0.0:$PORT"
		if dir != "" {
			cmd += " --chdir " + shellWord(dir)
		}
		if a.factory {
			target += "()"
			cmd += " '" + target + "'"
		} else {
			cmd += " " + target
		}
		p.DetectedStartCommand = cmd
	}
	p.Facts.EntryPoint = &Fact{Value: target, File: a.file, Line: a.line, Reason: reason}
	return nil
}

var (
	pyAppRe = map[string]*regexp.Regexp{
		"fastapi": regexp.MustCompile(`^([A-Za-z_]\w*)\s*(?::\s*[\w.\[\], ]+)?=\s*(?:fastapi\.)?FastAPI\s*\(`),
		"flask":   regexp.MustCompile(`^([A-Za-z_]\w*)\s*(?::\s*[\w.\[\], ]+)?=\s*(?:flask\.)?Flask\s*\(`),
	}
	pyCtorRe = map[string]*regexp.Regexp{
		"fastapi": regexp.MustCompile(`\bFastAPI\s*\(`),
		"flask":   regexp.MustCompile(`\bFlask\s*\(`),
	}
	pyFactoryDef  = regexp.MustCompile(`^(?:async\s+)?def\s+(create_app|make_app|build_app|get_app|app_factory)\s*\(`)
	pyFactoryCall = regexp.MustCompile(`^([A-Za-z_]\w*)\s*=\s*(?:[A-Za-z_]\w*\.)?(create_app|make_app|build_app|get_app|app_factory)\s*\(`)
)

// Limits of the scan for entry points.
const (
	pyMaxDepth    = 4         // directories below the project root
	pyMaxFiles    = 2000      // .py files read
	pyMaxFileSize = 512 << 10 // larger files are skipped
)

// pySkipDirs are directories the scan does not enter (besides hidden ones).
var pySkipDirs = map[string]bool{"node_modules": true, "venv": true, "env": true, "site-packages": true,
	"__pycache__": true, "tests": true, "test": true, "docs": true, "migrations": true, "build": true, "dist": true}

// findPyApps scans the project's Python files for module-level app objects
// and app factories of framework fw, best candidate first.
func findPyApps(t *tree, fw string) ([]pyApp, error) {
	var apps []pyApp
	files := 0
	err := fs.WalkDir(t.fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			if name == "." {
				return err
			}
			return nil // unreadable: skip
		}
		if d.IsDir() {
			if name != "." && (strings.HasPrefix(d.Name(), ".") || pySkipDirs[d.Name()] || strings.Count(name, "/") >= pyMaxDepth) {
				return fs.SkipDir
			}
			return nil
		}
		base := d.Name()
		if !strings.HasSuffix(base, ".py") || !d.Type().IsRegular() || strings.HasPrefix(base, "test_") ||
			strings.HasSuffix(base, "_test.py") || base == "conftest.py" || base == "setup.py" || base == "manage.py" {
			return nil
		}
		if files >= pyMaxFiles {
			return fs.SkipAll
		}
		if info, err := d.Info(); err != nil || info.Size() > pyMaxFileSize {
			return nil
		}
		files++
		b, err := fs.ReadFile(t.fsys, name)
		if err != nil {
			return nil
		}
		if _, mod := pyModule(name); mod == "" {
			return nil // not importable
		}
		apps = append(apps, scanPyFile(name, b, fw)...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanning for the entry point: %w", err)
	}
	slices.SortStableFunc(apps, func(a, b pyApp) int {
		return comparePyApps(a, b)
	})
	return apps, nil
}

// scanPyFile finds the app objects and factories of framework fw in one
// file. A factory counts only in a file that constructs the framework's app.
func scanPyFile(name string, b []byte, fw string) []pyApp {
	var apps []pyApp
	ctorInFile := pyCtorRe[fw].Match(b)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), pyMaxFileSize)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := pyAppRe[fw].FindStringSubmatch(line); m != nil {
			apps = append(apps, pyApp{file: name, line: n, name: m[1]})
		} else if m := pyFactoryCall.FindStringSubmatch(line); m != nil {
			apps = append(apps, pyApp{file: name, line: n, name: m[1]})
		} else if m := pyFactoryDef.FindStringSubmatch(line); m != nil && ctorInFile {
			apps = append(apps, pyApp{file: name, line: n, name: m[1], factory: true})
		}
	}
	return apps
}

func comparePyApps(a, b pyApp) int {
	key := func(x pyApp) []int {
		f := 0
		if x.factory {
			f = 1
		}
		pref := map[string]int{"main.py": 0, "app.py": 1, "wsgi.py": 2, "asgi.py": 2, "server.py": 3, "api.py": 3, "__init__.py": 4}
		p, ok := pref[path.Base(x.file)]
		if !ok {
			p = 5
		}
		depth := strings.Count(strings.TrimPrefix(x.file, "src/"), "/")
		return []int{f, depth, p}
	}
	if c := slices.Compare(key(a), key(b)); c != 0 {
		return c
	}
	if c := strings.Compare(a.file, b.file); c != 0 {
		return c
	}
	return a.line - b.line
}

var pyIdent = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// pyModule turns a file into the directory to import from and the module
// name: "src/app/main.py" → ("src", "app.main"); "myapp/__init__.py" →
// ("", "myapp"). mod is empty when the file is not importable by name.
func pyModule(file string) (dir, mod string) {
	comps := strings.Split(strings.TrimSuffix(file, ".py"), "/")
	if comps[len(comps)-1] == "__init__" {
		comps = comps[:len(comps)-1]
	}
	start := 0
	if len(comps) > 1 && comps[0] == "src" {
		start = 1
	}
	for i := len(comps) - 1; i >= start; i-- {
		if !pyIdent.MatchString(comps[i]) {
			start = i + 1
			break
		}
	}
	if start >= len(comps) {
		return "", ""
	}
	return strings.Join(comps[:start], "/"), strings.Join(comps[start:], ".")
}

var (
	djangoSettingsRe = regexp.MustCompile(`DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']`)
	djangoWSGIRe     = regexp.MustCompile(`(?m)^WSGI_APPLICATION\s*=\s*["']([\w.]+)["']`)
	djangoASGIRe     = regexp.MustCompile(`(?m)^ASGI_APPLICATION\s*=\s*["']([\w.]+)["']`)
)

// findManage finds manage.py at the project root or one directory down
// and the settings module it sets.
func (s *pyScan) findManage() (file, settings string, line int) {
	cands := []string{"manage.py"}
	if entries, err := fs.ReadDir(s.t.fsys, "."); err == nil {
		for _, e := range entries {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && !pySkipDirs[e.Name()] {
				cands = append(cands, e.Name()+"/manage.py")
			}
		}
	}
	for _, c := range cands {
		b, ok, err := s.t.readIf(c)
		if err != nil || !ok {
			continue
		}
		if m := djangoSettingsRe.FindSubmatch(b); m != nil {
			return c, string(m[1]), lineOf(b, string(m[0]))
		}
	}
	return "", "", 0
}

// django finds the Django project's WSGI or ASGI application and starts
// it with gunicorn, uvicorn or daphne.
func (s *pyScan) django() error {
	t, p := s.t, s.p
	manage, settings, line := s.findManage()
	if manage == "" {
		return t.noEntryPoint(p, t.errorf("", 0, 0,
			"no entry point: django is a dependency, but no manage.py (at the project root or one directory down) sets DJANGO_SETTINGS_MODULE; set a start command"))
	}
	base := path.Dir(manage) // where manage.py is: the import root
	rel := func(f string) string { return path.Join(base, f) }
	pkg, _, _ := strings.Cut(settings, ".")

	// WSGI_APPLICATION / ASGI_APPLICATION from the settings module.
	var wsgiApp, asgiApp, settingsFile string
	var wsgiLine, asgiLine int
	modPath := strings.ReplaceAll(settings, ".", "/")
	for _, f := range []string{modPath + ".py", modPath + "/__init__.py", modPath + "/base.py"} {
		if b, ok, err := t.readIf(rel(f)); err == nil && ok {
			settingsFile = rel(f)
			if m := djangoWSGIRe.FindSubmatch(b); m != nil {
				wsgiApp, wsgiLine = string(m[1]), lineOf(b, string(m[0]))
			}
			if m := djangoASGIRe.FindSubmatch(b); m != nil {
				asgiApp, asgiLine = string(m[1]), lineOf(b, string(m[0]))
			}
			break
		}
	}
	wsgiFile, asgiFile := pkg+"/wsgi.py", pkg+"/asgi.py"
	hasWSGI, hasASGI := t.isFile(rel(wsgiFile)), t.isFile(rel(asgiFile))

	useASGI, why := false, ""
	switch {
	case s.has("channels"):
		useASGI, why = true, "channels is a dependency"
	case asgiApp != "":
		useASGI, why = true, fmt.Sprintf("%s sets ASGI_APPLICATION", settingsFile)
	case hasASGI && !hasWSGI:
		useASGI, why = true, fmt.Sprintf("%s exists and %s does not", rel(asgiFile), rel(wsgiFile))
	}

	var target, file string
	var fline int
	if useASGI {
		switch {
		case asgiApp != "":
			target, file, fline = djangoTarget(asgiApp), settingsFile, asgiLine
		case hasASGI:
			target, file = pkg+".asgi:application", rel(asgiFile)
		default:
			return t.noEntryPoint(p, t.errorf(manage, 0, 0, "no entry point: the project is ASGI (%s) but %s does not exist", why, rel(asgiFile)))
		}
		why = "ASGI application, because " + why
	} else {
		switch {
		case wsgiApp != "":
			target, file, fline = djangoTarget(wsgiApp), settingsFile, wsgiLine
			why = fmt.Sprintf("WSGI application set by WSGI_APPLICATION in %s", settingsFile)
		case hasWSGI:
			target, file = pkg+".wsgi:application", rel(wsgiFile)
			why = fmt.Sprintf("WSGI application of the project %s (settings %s from %s)", pkg, settings, manage)
		default:
			return t.noEntryPoint(p, t.errorf(manage, line, 0, "no entry point: settings module %s, but neither %s nor %s exists", settings, rel(wsgiFile), rel(asgiFile)))
		}
	}
	p.Facts.EntryPoint = &Fact{Value: target, File: file, Line: fline, Reason: why}

	chdir := ""
	if base != "." {
		chdir = shellWord(base)
	}
	switch {
	case !useASGI:
		s.needServer("gunicorn")
		cmd := "gunicorn --bind 0.0.0.0:$PORT"
		if chdir != "" {
			cmd += " --chdir " + chdir
		}
		p.DetectedStartCommand = cmd + " " + target
	case s.has("daphne") && !s.has("uvicorn"):
		cmd := "daphne --bind 0.0.0.0 --port $PORT " + target
		if chdir != "" {
			cmd = "cd " + chdir + " && " + cmd
		}
		p.DetectedStartCommand = cmd
	default:
		s.needServer("uvicorn")
		cmd := "uvicorn " + target + " --host 0.0.0.0 --port $PORT"
		if chdir != "" {
			cmd += " --app-dir " + chdir
		}
		p.DetectedStartCommand = cmd
	}
	return nil
}

// djangoTarget turns "mysite.wsgi.application" into "mysite.wsgi:application".
func djangoTarget(dotted string) string {
	i := strings.LastIndex(dotted, ".")
	if i < 0 {
		return dotted
	}
	return dotted[:i] + ":" + dotted[i+1:]
}

// firstLine is the first line of b that is not empty or a comment, and its
// number.
func firstLine(b []byte) (string, int) {
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			return l, i + 1
		}
	}
	return "", 0
}

func lineList(lines [][]int) string {
	var s []string
	for _, l := range lines {
		s = append(s, joinParts(l))
	}
	return strings.Join(s, ", ")
}

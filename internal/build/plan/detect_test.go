package plan

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for name, data := range files {
		m[name] = &fstest.MapFile{Data: []byte(data)}
	}
	return m
}

// TestDetectErrors covers bad input: every failure is a user error that
// names the file and, where there is one, the line and column.
func TestDetectErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
		opts  Options
		want  string // the whole message
	}{
		{
			name:  "pyproject syntax",
			files: map[string]string{"pyproject.toml": "[project]\nname = \"x\"\ndependencies = [\"fastapi\"\n"},
			want:  "pyproject.toml:3:26: invalid TOML: expected a comma (',') or array terminator (']'), but got end of file",
		},
		{
			name:  "pyproject type",
			files: map[string]string{"pyproject.toml": "[project]\nname = \"x\"\ndependencies = \"fastapi\"\n"},
			want:  "pyproject.toml:3: unexpected value: incompatible types: TOML value has type string; destination has type slice",
		},
		{
			name:  "pyproject in a monorepo",
			files: map[string]string{"svc/pyproject.toml": "[project\n"},
			opts:  Options{Root: "svc"},
			want:  "svc/pyproject.toml:1:9: invalid TOML: expected '.' or ']' to end table name, but got '\\n' instead",
		},
		{
			name:  "package.json syntax",
			files: map[string]string{"package.json": "{\n  \"name\": \"x\",\n  \"scripts\": {\"start\": \"node .\"},,\n}\n"},
			want:  "package.json:3:34: invalid JSON: invalid character ',' looking for beginning of object key string",
		},
		{
			name:  "package.json type",
			files: map[string]string{"package.json": "{\n  \"scripts\": [\"start\"]\n}\n"},
			want:  "package.json:2:14: scripts must be a object, not a array",
		},
		{
			name:  "package.json empty",
			files: map[string]string{"package.json": ""},
			want:  "package.json:1:1: invalid JSON: unexpected end of JSON input",
		},
		{
			name:  "go.mod",
			files: map[string]string{"go.mod": "module example.com/x\n\ngo 1.23\n\nrequire (\n\texample.com/y\n)\n"},
			want:  "go.mod:6:2: usage: require module/path v1.2.3",
		},
		{
			name:  "go.mod version",
			files: map[string]string{"go.mod": "module example.com/x\n\ngo one\n"},
			want:  "go.mod:3:1: invalid go version 'one': must match format 1.23.0",
		},
		{
			name:  "Dockerfile",
			files: map[string]string{"Dockerfile": "FROM debian\nRUN <<EOF\necho\n"},
			want:  "Dockerfile:2: invalid Dockerfile: unterminated heredoc",
		},
		{
			name:  "Dockerfile without FROM",
			files: map[string]string{"Dockerfile": "# nothing\nRUN true\n"},
			want:  "Dockerfile:1: invalid Dockerfile: no FROM instruction",
		},
		{
			name:  "dockerfile path missing",
			files: map[string]string{"index.html": "x"},
			opts:  Options{DockerfilePath: "docker/Dockerfile.prod"},
			want:  "docker/Dockerfile.prod: the Dockerfile set for the project does not exist",
		},
		{
			name:  "dockerfile path escapes",
			files: map[string]string{"index.html": "x"},
			opts:  Options{DockerfilePath: "../Dockerfile"},
			want:  `dockerfile path "../Dockerfile" is not a file inside the project root`,
		},
		{
			name:  "root escapes",
			files: map[string]string{"index.html": "x"},
			opts:  Options{Root: "apps/../../etc"},
			want:  `project root "apps/../../etc" leaves the source tree`,
		},
		{
			name:  "root missing",
			files: map[string]string{"index.html": "x"},
			opts:  Options{Root: "apps/api"},
			want:  `project root "apps/api" is not a directory of the source tree`,
		},
		{
			name:  "nothing",
			files: map[string]string{"README.md": "hi", "node_modules/x/index.html": "x", ".github/package.json": "{}", "a/b/c/d/go.mod": "module x\n"},
			want: "nothing to build in the source tree: looked for a Dockerfile; a Python project (pyproject.toml, requirements.txt, uv.lock, poetry.lock, setup.py, manage.py, .python-version, runtime.txt); " +
				"a Node project (package.json); a Go module (go.mod); a static site (index.html in ., dist, build, public); add a Dockerfile, or set the project root to the directory that holds the app",
		},
		{
			name:  "flask without an app",
			files: map[string]string{"requirements.txt": "flask\n", "views.py": "def index(): pass\n"},
			want:  "no entry point: flask is a dependency, but no Python file assigns Flask(__name__) (or calls a create_app() factory) at module level; set a start command",
		},
		{
			name:  "django without wsgi",
			files: map[string]string{"requirements.txt": "django\n", "manage.py": "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site.settings')\n"},
			want:  "manage.py:1: no entry point: settings module site.settings, but neither site/wsgi.py nor site/asgi.py exists",
		},
		{
			name:  "node without a start",
			files: map[string]string{"package.json": `{"name": "x"}`},
			want:  "package.json: no entry point: no start script, no framework with a default server, no main field and no server.js, index.js, app.js or main.js; add a start script or set a start command",
		},
		{
			name:  "go without main",
			files: map[string]string{"go.mod": "module x\n\ngo 1.23\n", "lib.go": "package x\n"},
			want:  "go.mod: no entry point: no package main at the module root or in cmd/<name>/",
		},
		{
			name:  "uv.lock without pyproject",
			files: map[string]string{"uv.lock": "version = 1\n"},
			want:  "uv.lock: uv.lock without a pyproject.toml: uv cannot install it",
		},
		{
			name:  "missing requirement include",
			files: map[string]string{"requirements.txt": "flask\n-r base.txt\n"},
			want:  "requirements.txt:2: included file base.txt does not exist",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := DetectFS(mapFS(c.files), c.opts)
			if err == nil {
				t.Fatalf("no error; plan %+v", p)
			}
			if !IsUserError(err) {
				t.Errorf("%v (%T) is not a user error", err, err)
			}
			if err.Error() != c.want {
				t.Errorf("error\n got %s\nwant %s", err, c.want)
			}
		})
	}
}

// TestStartCommandStandsInForEntryPoint: with a custom start command a
// missing entry point is a warning, and the command is the plan's.
func TestStartCommandStandsInForEntryPoint(t *testing.T) {
	p, err := DetectFS(mapFS(map[string]string{"package.json": `{"name": "x"}`}), Options{StartCommand: "node dist/app.js"})
	if err != nil {
		t.Fatal(err)
	}
	if p.StartCommand != "node dist/app.js" || p.DetectedStartCommand != "" {
		t.Errorf("start %q, detected %q", p.StartCommand, p.DetectedStartCommand)
	}
	if len(p.Warnings) != 2 || !strings.Contains(p.Warnings[1], "no entry point") {
		t.Errorf("warnings %q", p.Warnings)
	}
	if _, err := p.Dockerfile(); err != nil {
		t.Error(err)
	}
}

// TestDetectStaysInTree: a symbolic link out of the tree is not followed.
func TestDetectStaysInTree(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "package.json"), []byte(`{"scripts": {"start": "node x"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "package.json"), filepath.Join(dir, "package.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "app")); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []Options{{}, {Root: "app"}} {
		_, err := Detect(dir, opts)
		var nd *NotDetectedError
		var e *Error
		if !errors.As(err, &nd) && !errors.As(err, &e) {
			t.Errorf("root %q: %v, want a user error (the link leads out of the tree)", opts.Root, err)
		}
	}
}

func TestPickLine(t *testing.T) {
	for _, c := range []struct {
		spec  string
		style rangeStyle
		want  string // "" when none
	}{
		{">=3.8", stylePython, "3.11"},
		{">=3.12", stylePython, "3.14"},
		{">=3.12,<3.13", stylePython, "3.12"},
		{"~=3.10", stylePython, "3.11"},
		{"~=3.12.1", stylePython, "3.12"},
		{"==3.10.*", stylePython, "3.10"},
		{"!=3.11.*, >=3.10, <3.13", stylePython, "3.12"},
		{">3.11", stylePython, "3.11"},
		{"<=3.10", stylePython, "3.10"},
		{"^3.12", stylePython, "3.14"},
		{"~3.12", stylePython, "3.12"},
		{">=3.9 <3.11", stylePython, "3.10"},
		{"^3.9 || ^3.13", stylePython, "3.11"},
		{"<3.0", stylePython, ""},
		{">=18", styleNode, "24"},
		{"^22.11", styleNode, "22"},
		{"18.x || 20.x", styleNode, "20"},
		{">=18 <20", styleNode, "18"},
		{"~18.17.0", styleNode, "18"},
		{"16 - 18", styleNode, "18"},
		{"21 - 23", styleNode, "22"},
		{">20", styleNode, "24"},
		{"<=20", styleNode, "20"},
		{"*", styleNode, "24"},
		{"^14", styleNode, ""},
	} {
		lines, def := pythonLines, pythonDefault
		if c.style == styleNode {
			lines, def = nodeLines, nodeDefault
		}
		got, ok := pickLine(c.spec, c.style, lines, def)
		if s := joinParts(got); (ok && s != c.want) || (!ok && c.want != "") {
			t.Errorf("pickLine(%q) = %s, %v; want %q", c.spec, s, ok, c.want)
		}
	}
}

func TestPyModule(t *testing.T) {
	for _, c := range []struct{ file, dir, mod string }{
		{"main.py", "", "main"},
		{"src/app/main.py", "src", "app.main"},
		{"myapp/__init__.py", "", "myapp"},
		{"my-service/api/app.py", "my-service", "api.app"},
		{"src/__init__.py", "", "src"},
		{"my-app/__init__.py", "", ""},
	} {
		dir, mod := pyModule(c.file)
		if dir != c.dir || mod != c.mod {
			t.Errorf("pyModule(%q) = %q, %q; want %q, %q", c.file, dir, mod, c.dir, c.mod)
		}
	}
}

func TestRequirements(t *testing.T) {
	files := map[string]string{
		"requirements.txt": "# app\n-r base.txt\n--constraint=constraints.txt\nuvicorn[standard]>=0.30 ; python_version>'3.8'  # server\n" +
			"git+https://example.com/x.git#egg=My_Lib\n-e .\nrequests \\\n  >=2\n--index-url https://example.com/simple\n",
		"base.txt":        "Django==4.2\n",
		"constraints.txt": "django<5\n",
	}
	read := func(name string) ([]byte, bool, error) {
		s, ok := files[name]
		return []byte(s), ok, nil
	}
	rq, err := parseRequirements([]byte(files["requirements.txt"]), "requirements.txt", read, 4)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range rq.deps {
		got = append(got, d.name+"@"+d.file+":"+string(rune('0'+d.line)))
	}
	want := "django@base.txt:1 django@constraints.txt:1 uvicorn@requirements.txt:4 my-lib@requirements.txt:5 requests@requirements.txt:7"
	if strings.Join(got, " ") != want {
		t.Errorf("deps %s\nwant %s", strings.Join(got, " "), want)
	}
	if !rq.local || strings.Join(rq.files, ",") != "requirements.txt,base.txt,constraints.txt" {
		t.Errorf("local %v files %v", rq.local, rq.files)
	}
}

func TestDockerfileRejectsBadPlans(t *testing.T) {
	base := func() *Plan {
		return &Plan{Provider: ProviderNode, BaseImages: BaseImages{Build: "node:20-bookworm-slim"}, StartCommand: "npm start"}
	}
	for name, mutate := range map[string]func(p *Plan){
		"no start":      func(p *Plan) { p.StartCommand = " " },
		"bad image":     func(p *Plan) { p.BaseImages.Build = "node 20" },
		"env name":      func(p *Plan) { p.Env = map[string]string{"A-B": "1"} },
		"env newline":   func(p *Plan) { p.Env = map[string]string{"A": "1\nRUN x"} },
		"command break": func(p *Plan) { p.Steps = []Step{{Name: "x", Commands: []string{"a\nb"}}} },
		"cache target": func(p *Plan) {
			p.Steps = []Step{{Name: "x", Commands: []string{"a"}, Caches: []Cache{{ID: "c", Target: "/a,b"}}}}
		},
		"cache sharing": func(p *Plan) {
			p.Steps = []Step{{Name: "x", Commands: []string{"a"}, Caches: []Cache{{ID: "c", Target: "/a", Sharing: "all"}}}}
		},
		"input escapes":  func(p *Plan) { p.Steps = []Step{{Name: "x", Inputs: []string{"../secret"}}} },
		"artifact":       func(p *Plan) { p.Artifacts = []string{"relative"} },
		"step name":      func(p *Plan) { p.Steps = []Step{{Name: "x\nRUN rm -rf /"}} },
		"workdir quotes": func(p *Plan) { p.WorkDir = `/a"b` },
	} {
		p := base()
		mutate(p)
		if _, err := p.Dockerfile(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := base().Dockerfile(); err != nil {
		t.Errorf("valid plan: %v", err)
	}
	if _, err := (&Plan{Provider: ProviderDockerfile}).Dockerfile(); !errors.Is(err, ErrUsesDockerfile) {
		t.Errorf("dockerfile plan: %v", err)
	}
}

func TestExecPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"npm start":                   "exec npm start",
		"cd web && node server.js":    "cd web && node server.js",
		"FOO=1 node x":                "FOO=1 node x",
		"exec node x":                 "exec node x",
		"gunicorn 'pkg:create_app()'": "exec gunicorn 'pkg:create_app()'",
	} {
		if got := execPrefix(in); got != want {
			t.Errorf("execPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

package plan

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Fuzz targets for the parsers that read user input. Seed corpora live in
// testdata/fuzz/<target>; run one with e.g.
//
//	go test ./internal/build/plan -run '^$' -fuzz FuzzPyproject -fuzztime 30s

// checkParseError requires err to be nil or an *Error whose position lies
// within data.
func checkParseError(t *testing.T, data []byte, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%v (%T) is not an *Error", err, err)
	}
	lines := bytes.Count(data, []byte("\n")) + 1
	if e.Line < 0 || e.Line > lines+1 || e.Column < 0 || e.Message == "" {
		t.Fatalf("error %q: line %d column %d outside a %d-line file", e, e.Line, e.Column, lines)
	}
}

func FuzzPyproject(f *testing.F) {
	f.Add([]byte("[project]\nname = \"x\"\nrequires-python = \">=3.11\"\ndependencies = [\"fastapi[standard]>=0.115\"]\n"))
	f.Add([]byte("[tool.poetry.dependencies]\npython = \"^3.11\"\ndjango = { version = \"^4.2\", extras = [\"argon2\"] }\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pp, err := parsePyproject(data)
		checkParseError(t, data, err)
		if err == nil {
			pyprojectDeps(pp, "pyproject.toml")
			pp.poetryPython()
		}
	})
}

func FuzzPackageJSON(f *testing.F) {
	f.Add([]byte(`{"name":"x","scripts":{"start":"node ."},"engines":{"node":">=18"},"packageManager":"pnpm@9.1.0"}`))
	f.Add([]byte("\xef\xbb\xbf{\n  \"workspaces\": [\"a\"],\n  \"main\": 1\n}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pj, err := parsePackageJSON(data)
		checkParseError(t, data, err)
		if err == nil {
			nodeFramework(pj)
		}
	})
}

func FuzzGoMod(f *testing.F) {
	f.Add([]byte("module example.com/x\n\ngo 1.23\n\nrequire github.com/mattn/go-sqlite3 v1.14.0\n\nreplace example.com/y => ./y\n"))
	f.Add([]byte("module x\ngo 1.22.5\ntoolchain go1.23.4\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := parseGoMod(data)
		checkParseError(t, data, err)
	})
}

func FuzzRequirements(f *testing.F) {
	f.Add([]byte("-r base.txt\nflask==2.2.2 \\\n  --hash=sha256:abc\n-e .\ngit+https://x/y.git#egg=z\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		read := func(name string) ([]byte, bool, error) { return data, true, nil }
		rq, err := parseRequirements(data, "requirements.txt", read, 2)
		checkParseError(t, data, err)
		if err == nil {
			for _, d := range rq.deps {
				if d.name == "" || d.name != pyNormalize(d.name) {
					t.Fatalf("dependency name %q is not normalised", d.name)
				}
			}
		}
	})
}

func FuzzDockerfile(f *testing.F) {
	f.Add([]byte("FROM golang:1.23 AS build\nRUN go build\nFROM scratch\nCOPY --from=build /a /a\nENTRYPOINT [\"/a\"]\nCMD [\"-v\"]\n"))
	f.Add([]byte("# syntax=docker/dockerfile:1\nFROM debian\nRUN <<EOF\necho\nEOF\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := parseDockerfile(data)
		checkParseError(t, data, err)
	})
}

func FuzzConstraint(f *testing.F) {
	for _, s := range []string{">=3.8,<4", "^3.11 || ~3.9", "18.x || >=20 <21", "1.2.3 - 2", "==3.11.*", "~=3.10", "*"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, spec string, node bool) {
		style, lines, def := stylePython, pythonLines, pythonDefault
		if node {
			style, lines, def = styleNode, nodeLines, nodeDefault
		}
		if line, ok := pickLine(spec, style, lines, def); ok && len(line) != len(def) {
			t.Fatalf("pickLine(%q) = %v", spec, line)
		}
	})
}

// FuzzDetect feeds fuzzed manifests to detection: whatever is detected must
// render into a Dockerfile that BuildKit's parser accepts.
func FuzzDetect(f *testing.F) {
	f.Add("[project]\ndependencies=[\"flask\"]\n", "app = Flask(__name__)\n", "", "", "")
	f.Add("", "", `{"scripts":{"build":"x"},"main":"my server.js","packageManager":"pnpm@9;rm"}`, "my server.js", "")
	f.Add("", "", "", "", "module m\ngo 1.23\n")
	f.Fuzz(func(t *testing.T, pyproject, appPy, packageJSON, mainName, goMod string) {
		files := map[string]string{}
		if pyproject != "" {
			files["pyproject.toml"] = pyproject
			files["uv.lock"] = ""
			files["pkg/app.py"] = appPy
		}
		if packageJSON != "" {
			files["package.json"] = packageJSON
		}
		if mainName != "" && !strings.ContainsAny(mainName, "\x00") {
			files["x/"+strings.Trim(mainName, "/")] = "package main\n"
		}
		if goMod != "" {
			files["go.mod"] = goMod
			files["cmd/api/main.go"] = "package main\n"
		}
		m := mapFS(files)
		for name := range m {
			if !validFSPath(name) {
				delete(m, name)
			}
		}
		p, err := DetectFS(m, Options{})
		if err != nil {
			if !IsUserError(err) {
				t.Fatalf("%v is not a user error", err)
			}
			return
		}
		df, err := p.Dockerfile()
		if errors.Is(err, ErrUsesDockerfile) {
			return
		}
		if err != nil {
			t.Fatalf("detected plan does not render: %v", err)
		}
		if _, err := parser.Parse(strings.NewReader(df)); err != nil {
			t.Fatalf("rendered Dockerfile does not parse: %v\n%s", err, df)
		}
	})
}

func validFSPath(name string) bool {
	return name != "" && !strings.Contains(name, "//") && !strings.HasSuffix(name, "/") &&
		!strings.Contains("/"+name+"/", "/../") && !strings.Contains("/"+name+"/", "/./")
}

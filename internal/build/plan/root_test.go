package plan

import (
	"errors"
	"strings"
	"testing"
)

const nodeApp = `{"scripts": {"start": "node server.js"}}`

// TestDetectProjectRoot: with no project root set, a tree whose root holds
// no app is searched below for the one directory that does.
func TestDetectProjectRoot(t *testing.T) {
	for _, c := range []struct {
		name     string
		files    map[string]string
		opts     Options
		root     string   // the plan's root; "" when an error is wanted
		reason   []string // in the project root's reason
		notFound bool     // a *NotDetectedError is wanted
	}{
		{
			name:   "one app in a subdirectory",
			files:  map[string]string{"README.md": "hi", "service/package.json": nodeApp},
			root:   "service",
			reason: []string{"detected", "service (node) is the only directory below it", "rootDirectory"},
		},
		{
			name:   "deep enough",
			files:  map[string]string{"LICENSE": "x", "services/api/app/go.mod": "module x\n\ngo 1.23\n", "services/api/app/main.go": "package main\n\nfunc main() {}\n"},
			root:   "services/api/app",
			reason: []string{"services/api/app (go)", "3 levels deep"},
		},
		{
			name:     "too deep",
			files:    map[string]string{"a/b/c/d/package.json": nodeApp},
			notFound: true,
		},
		{
			name:   "an app beside its docs",
			files:  map[string]string{"web/package.json": nodeApp, "docs/index.html": "<h1>docs</h1>"},
			root:   "web",
			reason: []string{"web (node)", "besides static sites (docs)"},
		},
		{
			name:   "a candidate's subdirectories are its own",
			files:  map[string]string{"web/package.json": nodeApp, "web/admin/package.json": nodeApp, "web/public/index.html": "x"},
			root:   "web",
			reason: []string{"web (node) is the only directory"},
		},
		{
			name:  "an app at the root wins",
			files: map[string]string{"package.json": nodeApp, "api/go.mod": "module x\n"},
			root:  ".",
		},
		{
			name:     "dependencies, tests and hidden directories are skipped",
			files:    map[string]string{"node_modules/left-pad/package.json": nodeApp, "vendor/x/go.mod": "module x\n", "tests/app/package.json": nodeApp, ".devcontainer/Dockerfile": "FROM debian\n"},
			notFound: true,
		},
		{
			name:     "a root that is set is not searched",
			files:    map[string]string{"apps/README.md": "x", "apps/web/package.json": nodeApp},
			opts:     Options{Root: "apps"},
			notFound: true,
		},
		{
			name:   "a Dockerfile in the subdirectory",
			files:  map[string]string{"deploy/README": "x", "app/Dockerfile": "FROM debian\nCMD [\"true\"]\n"},
			opts:   Options{DockerfilePath: ""},
			root:   "app",
			reason: []string{"app (dockerfile)"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := DetectFS(mapFS(c.files), c.opts)
			if c.notFound {
				var nd *NotDetectedError
				if !errors.As(err, &nd) {
					t.Fatalf("got %v, plan %+v; want nothing detected", err, p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Root != c.root || p.Facts.ProjectRoot.Value != c.root {
				t.Errorf("root %q (fact %q), want %q", p.Root, p.Facts.ProjectRoot.Value, c.root)
			}
			for _, r := range c.reason {
				if !strings.Contains(p.Facts.ProjectRoot.Reason, r) {
					t.Errorf("reason %q lacks %q", p.Facts.ProjectRoot.Reason, r)
				}
			}
		})
	}
}

// TestDetectProjectRootAmbiguous: several apps below an empty root are an
// error listing them and saying how to choose.
func TestDetectProjectRootAmbiguous(t *testing.T) {
	_, err := DetectFS(mapFS(map[string]string{
		"README.md":                 "x",
		"apps/web/package.json":     nodeApp,
		"apps/api/requirements.txt": "flask\n",
		"apps/api/app.py":           "from flask import Flask\napp = Flask(__name__)\n",
		"docs/index.html":           "x",
	}), Options{})
	var ae *AmbiguousRootError
	if !errors.As(err, &ae) {
		t.Fatalf("got %v, want an *AmbiguousRootError", err)
	}
	if !IsUserError(err) {
		t.Error("not a user error")
	}
	want := "the root of the source tree holds no app, and 2 directories do: apps/api (python), apps/web (node); " +
		"choose one as the project root with the project's rootDirectory setting (slipway deploy --root DIR, or the dashboard's settings; slipway plan --root DIR to try)"
	if err.Error() != want {
		t.Errorf("message\n got %s\nwant %s", err, want)
	}
	// Choosing one settles it.
	p, err := DetectFS(mapFS(map[string]string{"apps/web/package.json": nodeApp, "apps/api/go.mod": "module x\n"}), Options{Root: "apps/web"})
	if err != nil || p.Root != "apps/web" || !strings.Contains(p.Facts.ProjectRoot.Reason, "setting") {
		t.Errorf("with the root set: %v, %+v", err, p)
	}
}

// TestDetectedRootFailureSaysWhere: a failure inside a detected project
// root names it, and is still the user's to fix.
func TestDetectedRootFailureSaysWhere(t *testing.T) {
	_, err := DetectFS(mapFS(map[string]string{"README.md": "x", "svc/package.json": `{"name": "x"}`}), Options{})
	if !IsUserError(err) {
		t.Fatalf("%v is not a user error", err)
	}
	want := "in svc (node), detected as the project root (the only app below the root of the source tree; set the project's rootDirectory to choose another): " +
		"svc/package.json: no entry point: no start script, no framework with a default server, no main field and no server.js, index.js, app.js or main.js; add a start script or set a start command"
	if err.Error() != want {
		t.Errorf("error\n got %s\nwant %s", err, want)
	}
}

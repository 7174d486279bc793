package cli

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/api"
)

// gitTree writes files (names may hold directories) into a new git
// repository with one commit. It fails the test without git.
func gitTree(t *testing.T, files map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is needed: ", err)
	}
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"}, {"add", "."},
		{"-c", "user.name=Ada", "-c", "user.email=ada@example.com", "commit", "-q", "-m", "the app"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

func deployment(t *testing.T, id string) api.Deployment {
	t.Helper()
	out, _, err := run(t, "deployments", id, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var d api.Deployment
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return d
}

func lastDeployment(t *testing.T, project string) api.Deployment {
	t.Helper()
	out, _, err := run(t, "deployments", "-p", project, "--json", "--limit", "1")
	if err != nil {
		t.Fatal(err)
	}
	var ds []api.Deployment
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 1 {
		t.Fatalf("%v: %s", err, out)
	}
	return ds[0]
}

const expressApp = `{"name": "svc", "dependencies": {"express": "^4.19.0"}, "engines": {"node": "22.x"}, "scripts": {"start": "node server.js"}}`

// TestDeployDetectsProjectRoot: a repository whose root holds no app but
// one directory does deploys that directory, and the deployment document
// (API, `slipway deployments ID`) says which, why, and what was detected.
func TestDeployDetectsProjectRoot(t *testing.T) {
	startAPI(t)
	dir := gitTree(t, map[string]string{
		"README.md": "# monorepo\n", "services/api/package.json": expressApp, "services/api/package-lock.json": "{}",
		"services/api/server.js": "require('express')\n", "docs/index.html": "<h1>docs</h1>",
	})
	if out, stderr, err := run(t, "deploy", dir, "-p", "web"); err != nil {
		t.Fatalf("deploy: %v\n%s\n%s", err, out, stderr)
	}
	d := lastDeployment(t, "web")
	det := d.Detected
	if d.Status != "RUNNING" || d.Summary != "successful" || det == nil {
		t.Fatalf("deployment %+v", d)
	}
	if det.Root != "services/api" || det.ProjectRoot == nil || !strings.Contains(det.ProjectRoot.Reason, "detected") ||
		!strings.Contains(det.ProjectRoot.Reason, "docs") {
		t.Errorf("project root %q: %+v", det.Root, det.ProjectRoot)
	}
	if det.Provider != "node" || det.Framework == nil || det.Framework.Value != "express" || det.PackageManager == nil || det.PackageManager.Value != "npm" ||
		det.LanguageVersion == nil || det.LanguageVersion.Value != "22" || det.EntryPoint == nil || det.StartCommand != d.DetectedStartCommand ||
		d.StartCommand != d.DetectedStartCommand || d.StartCommand == "" {
		b, _ := json.MarshalIndent(d, "", "  ")
		t.Errorf("detected facts:\n%s", b)
	}
	out, _, err := run(t, "deployments", d.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"RUNNING (successful)", "project root", "services/api: detected", "framework", "express", "package manager", "npm", "version", "22"} {
		if !strings.Contains(out, want) {
			t.Errorf("deployments ID lacks %q:\n%s", want, out)
		}
	}
}

// TestDeployAmbiguousRootThenChoose: two apps below an empty root fail the
// deployment with the candidates and how to choose; --root chooses, and is
// saved as the project's setting.
func TestDeployAmbiguousRootThenChoose(t *testing.T) {
	startAPI(t)
	dir := gitTree(t, map[string]string{
		"apps/web/package.json": expressApp, "apps/web/server.js": "x",
		"apps/api/Dockerfile": "FROM scratch\n",
	})
	_, stderr, err := run(t, "deploy", dir, "-p", "mono")
	var code exitCode
	if !errors.As(err, &code) || code != 1 {
		t.Fatalf("err %v, want exit code 1", err)
	}
	for _, want := range []string{"FAILED", "apps/api (dockerfile), apps/web (node)", "rootDirectory", "slipway deploy --root DIR"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, stderr)
		}
	}
	if d := lastDeployment(t, "mono"); d.Summary != "failed" {
		t.Errorf("summary %q", d.Summary)
	}

	out, stderr, err := run(t, "deploy", dir, "-p", "mono", "--root", "apps/api")
	if err != nil {
		t.Fatalf("deploy --root: %v\n%s\n%s", err, out, stderr)
	}
	if !strings.Contains(out, "Project root of mono set to apps/api") {
		t.Errorf("output: %s", out)
	}
	d := lastDeployment(t, "mono")
	if d.Detected == nil || d.Detected.Root != "apps/api" || d.Detected.Provider != "dockerfile" ||
		!strings.Contains(d.Detected.ProjectRoot.Reason, "setting") {
		t.Errorf("detected %+v", d.Detected)
	}
	var settings map[string]any
	if err := newClient().call(t.Context(), "GET", projectPath("mono")+"/settings", nil, &settings); err != nil || settings["rootDirectory"] != "apps/api" {
		t.Errorf("settings %v, %v", settings, err)
	}
	// --root "" clears the setting again.
	if _, _, err := run(t, "deploy", dir, "-p", "mono", "--root", "", "--detach"); err != nil {
		t.Fatal(err)
	}
	settings = nil
	if err := newClient().call(t.Context(), "GET", projectPath("mono")+"/settings", nil, &settings); err != nil || settings["rootDirectory"] != nil {
		t.Errorf("settings after --root \"\": %v, %v", settings, err)
	}
}

// TestDeployDirtyTree: uncommitted changes are deployed with a warning and
// the deployment is marked dirty; a clean tree is not.
func TestDeployDirtyTree(t *testing.T) {
	startAPI(t)
	dir := gitTree(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	_, stderr, err := run(t, "deploy", dir, "-p", "web")
	if err != nil || strings.Contains(stderr, "uncommitted") {
		t.Fatalf("clean deploy: %v %s", err, stderr)
	}
	if d := lastDeployment(t, "web"); d.Dirty {
		t.Error("a clean tree's deployment is dirty")
	}
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nENV X=1\n"), 0o644)
	_, stderr, err = run(t, "deploy", dir, "-p", "web")
	if err != nil || !strings.Contains(stderr, "warning: ") || !strings.Contains(stderr, "uncommitted changes") {
		t.Fatalf("dirty deploy: %v %q", err, stderr)
	}
	d := lastDeployment(t, "web")
	if !d.Dirty {
		t.Error("the dirty tree's deployment is not dirty")
	}
	if out, _, _ := run(t, "deployments", d.ID); !strings.Contains(out, "uncommitted changes") {
		t.Errorf("deployments ID does not say dirty:\n%s", out)
	}
	// A redeploy of the same source is just as dirty.
	var rd api.Deployment
	if err := newClient().call(t.Context(), "POST", deploymentPath(d.ID)+"/redeploy", nil, &rd); err != nil || !rd.Dirty {
		t.Errorf("redeploy: dirty %v, %v", rd.Dirty, err)
	}
}

// TestLogsBuildPrintsTheEnd: without --follow, logs --build prints the
// last lines of the build log, oldest first.
func TestLogsBuildPrintsTheEnd(t *testing.T) {
	startAPI(t)
	dir := gitTree(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	if _, _, err := run(t, "deploy", dir, "-p", "web"); err != nil {
		t.Fatal(err)
	}
	id := lastDeployment(t, "web").ID
	out, _, err := run(t, "logs", "--build", id, "--lines", "2")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[1], "DEPLOYING → RUNNING") || strings.Contains(out, "queued") {
		t.Errorf("logs --build --lines 2:\n%s", out)
	}
	all, _, _ := run(t, "logs", "--build", id)
	if !strings.Contains(all, "queued") || !strings.HasSuffix(strings.TrimSpace(all), "DEPLOYING → RUNNING") {
		t.Errorf("logs --build:\n%s", all)
	}
}

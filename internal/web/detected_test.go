package web

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/source"
)

// TestDeploymentPageShowsDetectedFacts: the deployment page shows the
// summary beside the status, the dirty flag, and what detection found
// (the detected project root with why); the settings page edits the
// project root and shows the detected one.
func TestDeploymentPageShowsDetectedFacts(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	e.project("mono")
	dir := t.TempDir()
	for name, data := range map[string]string{
		"README.md":          "x",
		"svc/package.json":   `{"dependencies": {"express": "^4"}, "scripts": {"start": "node server.js"}}`,
		"svc/pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(data), 0o644)
	}
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	d, err := e.ctl.Create(context.Background(), deploy.CreateRequest{Project: "mono", Trigger: "upload", Promote: true,
		CommitSHA: "0123456789abcdef0123456789abcdef01234567", Dirty: true, Source: &buf})
	if err != nil {
		t.Fatal(err)
	}
	e.waitStatus(d.ID, deploy.Running)

	c := e.client()
	c.signIn()
	p := c.get("/deployments/" + d.ID)
	mustContain(t, "deployment page", p.body, `id="dep-summary"`, ">successful<", `id="dep-dirty"`,
		`id="fact-root"><code>svc</code>`, "the only directory below it", `id="fact-framework"><code>express</code>`,
		`id="fact-pm"><code>pnpm</code>`, "pnpm-lock.yaml", `id="fact-entry"`)

	p = c.get("/projects/mono/settings")
	mustContain(t, "settings page", p.body, `name="rootDirectory"`, "svc (detected)")
	if r := c.post("/projects/mono/settings", url.Values{"rootDirectory": {"svc"}}); r.status != http.StatusSeeOther {
		t.Fatalf("save settings: %d", r.status)
	}
	if got, _ := e.st.GetProject(context.Background(), "mono"); got.Settings.RootDirectory != "svc" {
		t.Errorf("rootDirectory = %q", got.Settings.RootDirectory)
	}
	mustContain(t, "settings page", c.get("/projects/mono/settings").body, `value="svc"`)
}

// TestSettingsShowDefaultBranch: the repository section says which branch
// production follows.
func TestSettingsShowDefaultBranch(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	p := e.project("web")
	ctx := context.Background()
	c := e.client()
	c.signIn()
	if err := e.st.SetProjectRepo(ctx, p.ID, "https://github.com/acme/web", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "settings page", c.get("/projects/web/settings").body, "Default branch not known yet")
	if ok, err := e.st.SetRepoDefaultBranch(ctx, p.ID, "https://github.com/acme/web", "trunk"); !ok || err != nil {
		t.Fatalf("SetRepoDefaultBranch: %v %v", ok, err)
	}
	mustContain(t, "settings page", c.get("/projects/web/settings").body, `Default branch <span class="chip">trunk</span>`)
}

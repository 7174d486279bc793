package deploy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/source"
	"github.com/slipwayhq/slipway/internal/store"
)

// A deployment that inherits an environment's variables (a pull
// request's preview takes production's) runs with them under its own
// environment's, and only then counts changes to either; one that does
// not (a fork's preview) never sees them. Turning previews on or off is
// no change of a deployment.
func TestInheritedVariables(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rec := &starts{}
	e.ctl.Close()
	e.wrap = func(d runtime.Driver) runtime.Driver { rec.Driver = d; return rec }
	e.start()
	rules, err := project.New(project.Config{Store: e.store, Lifecycle: e.ctl, Secrets: e.box})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := e.store.GetProject(ctx, "web")
	prod, _ := e.store.GetEnvironment(ctx, p.ID, "production")
	preview, err := rules.CreateEnvironment(ctx, p, "pr-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rules.SetVar(ctx, prod, "DATABASE_URL", "postgres://prod", true))
	must(rules.SetVar(ctx, prod, "GREETING", "prod", false))
	must(rules.SetVar(ctx, preview, "GREETING", "preview", false))

	create := func(inherit string) store.Deployment {
		t.Helper()
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
		var buf bytes.Buffer
		must(source.Pack(dir, &buf))
		d, err := e.ctl.Create(ctx, CreateRequest{Project: "web", Environment: "pr-1", Trigger: "pull_request", Promote: true,
			Source: &buf, InheritVariables: inherit})
		must(err)
		d = e.waitFor(d.ID, settled)
		if d.Status != string(Running) {
			t.Fatalf("%s: %s", d.Status, d.FailureReason)
		}
		return d
	}
	same := create("production")
	sp := rec.of(same.ID)
	if len(sp) != 1 || envOf(sp[0], "DATABASE_URL") != "postgres://prod" || envOf(sp[0], "GREETING") != "preview" {
		t.Fatalf("inheriting production: env %v", sp)
	}
	if ch, err := e.ctl.Changes(ctx, same); err != nil || len(ch) != 0 {
		t.Errorf("changes right after deploying: %v %v", ch, err)
	}
	p.Settings.Previews = true
	must(rules.UpdateSettings(ctx, p, p.Settings))
	if ch, _ := e.ctl.Changes(ctx, same); len(ch) != 0 {
		t.Errorf("turning previews on changed a deployment: %v", ch)
	}
	must(rules.SetVar(ctx, prod, "DATABASE_URL", "postgres://prod2", true))
	if ch, _ := e.ctl.Changes(ctx, same); !reflect.DeepEqual(ch, []string{VariablesChanged}) {
		t.Errorf("changes after production's variable changed: %v", ch)
	}

	fork := create("")
	sp = rec.of(fork.ID)
	if len(sp) != 1 || envOf(sp[0], "DATABASE_URL") != "" || envOf(sp[0], "GREETING") != "preview" {
		t.Fatalf("not inheriting: env %v", sp)
	}
	if len(fork.Captured.Vars) != 1 || fork.Captured.Inherit != "" {
		t.Errorf("not inheriting captured %+v", fork.Captured)
	}
}

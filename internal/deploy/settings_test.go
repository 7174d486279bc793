package deploy

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/store"
)

// starts records the spec of every instance a driver starts.
type starts struct {
	runtime.Driver
	mu    sync.Mutex
	specs []runtime.Spec
}

func (s *starts) Start(ctx context.Context, spec runtime.Spec) (*runtime.Handle, error) {
	s.mu.Lock()
	s.specs = append(s.specs, spec)
	s.mu.Unlock()
	return s.Driver.Start(ctx, spec)
}

// of returns the specs started for deployment id.
func (s *starts) of(id string) []runtime.Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []runtime.Spec
	for _, sp := range s.specs {
		for _, kv := range sp.Env {
			if kv == "SLIPWAY_DEPLOYMENT_ID="+id {
				out = append(out, sp)
			}
		}
	}
	return out
}

func envOf(sp runtime.Spec, name string) string {
	for _, kv := range sp.Env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v
		}
	}
	return ""
}

// A running deployment runs as it was created: variables, start command,
// limits, health and idle settings changed afterwards reach neither a
// restart nor a wake; a redeploy applies them.
func TestRunningDeploymentKeepsWhatItWasCreatedWith(t *testing.T) {
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
	env, _ := e.store.GetEnvironment(ctx, p.ID, "production")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rules.SetVar(ctx, env, "GREETING", "one", false))
	must(rules.SetVar(ctx, env, "TOKEN", "hunter2-hunter2", true))
	created := store.ProjectSettings{MemoryBytes: 256 << 20, Pids: 100, IdleTimeout: "1s", HealthPath: "/"}
	must(rules.UpdateSettings(ctx, p, created))
	d := e.waitFor(e.deploy().ID, settled)
	if d.Status != string(Running) {
		t.Fatalf("%s: %s", d.Status, d.FailureReason)
	}
	captured := created
	captured.Sandbox = "fake" // the server's default sandbox, resolved when captured
	if d.Captured == nil || d.Captured.Settings != captured || len(d.Captured.Vars) != 2 {
		t.Fatalf("captured: %+v", d.Captured)
	}
	for _, v := range d.Captured.Vars {
		if bytes.Contains(v.Value, []byte("hunter2")) {
			t.Errorf("variable %s captured in clear", v.Name)
		}
	}
	if ch, err := e.ctl.Changes(ctx, d); err != nil || len(ch) != 0 {
		t.Fatalf("changes right after deploying: %v, %v", ch, err)
	}
	// Setting a variable to the value it has changes nothing.
	must(rules.SetVar(ctx, env, "GREETING", "one", false))
	if ch, _ := e.ctl.Changes(ctx, d); len(ch) != 0 {
		t.Errorf("the same value set again counts as a change: %v", ch)
	}

	// Everything changes.
	must(rules.SetVar(ctx, env, "GREETING", "two", false))
	must(rules.DeleteVar(ctx, env, "TOKEN"))
	p, _ = e.store.GetProject(ctx, "web")
	must(rules.UpdateSettings(ctx, p, store.ProjectSettings{MemoryBytes: 128 << 20, Pids: 50, IdleTimeout: "0", StartCommand: "exit 1", HealthPath: "/nope"}))
	ch, err := e.ctl.Changes(ctx, d)
	want := []string{"healthPath", "idleTimeout", "memoryBytes", "pids", "startCommand", VariablesChanged}
	if err != nil || !reflect.DeepEqual(ch, want) {
		t.Errorf("changes: %v, %v; want %v", ch, err, want)
	}

	// A restart (the app crashed) runs it as it was created.
	insts, _ := e.store.ListInstances(ctx, d.ID)
	must(e.driver.Crash(insts[0].ID, 2))
	waitUntil(t, "restarted", func() bool {
		insts, _ = e.store.ListInstances(ctx, d.ID)
		return len(insts) == 2 && (insts[1].Status == "running" || insts[1].Status == "idle")
	})
	// It still scales to zero after 1 s (the project now says never) and a
	// request wakes it.
	waitUntil(t, "scaled to zero", func() bool {
		insts, _ = e.store.ListInstances(ctx, d.ID)
		return insts[len(insts)-1].Status == "idle"
	})
	rr := httptest.NewRecorder()
	(&router.Router{Table: e.table}).ServeHTTP(rr, httptest.NewRequest("GET", "http://web.slipway.localhost/env?name=GREETING", nil))
	if rr.Code != http.StatusOK || rr.Body.String() != "one" {
		t.Errorf("woken app sees GREETING = %d %q, want \"one\"", rr.Code, rr.Body.String())
	}
	specs := rec.of(d.ID)
	if len(specs) != 3 {
		t.Fatalf("%d instance starts for the deployment, want 3 (deploy, restart, wake)", len(specs))
	}
	for i, sp := range specs {
		if g, tok := envOf(sp, "GREETING"), envOf(sp, "TOKEN"); g != "one" || tok != "hunter2-hunter2" {
			t.Errorf("start %d: GREETING=%q TOKEN=%q, want what the deployment was created with", i, g, tok)
		}
		if sp.Limits.MemoryBytes != 256<<20 || sp.Limits.Pids != 100 {
			t.Errorf("start %d: limits %+v, want those the deployment was created with", i, sp.Limits)
		}
		if sp.Command != nil {
			t.Errorf("start %d: command %q, want the image's own", i, sp.Command)
		}
	}

	// A redeploy applies the changes.
	again, err := e.ctl.Redeploy(ctx, d.ID, false)
	must(err)
	e.waitFor(again.ID, settled)
	specs = rec.of(again.ID)
	if len(specs) == 0 {
		t.Fatal("the redeploy started no instance")
	}
	sp := specs[0]
	if envOf(sp, "GREETING") != "two" || envOf(sp, "TOKEN") != "" || sp.Limits.MemoryBytes != 128<<20 ||
		strings.Join(sp.Command, " ") != "/bin/sh -c exit 1" {
		t.Errorf("redeployed: GREETING=%q TOKEN=%q limits %+v command %q", envOf(sp, "GREETING"), envOf(sp, "TOKEN"), sp.Limits, sp.Command)
	}
}

// A deployment created before deployments captured anything follows its
// project's current settings and variables.
func TestDeploymentWithoutCaptureFollowsProject(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	rules, _ := project.New(project.Config{Store: e.store, Lifecycle: e.ctl, Secrets: e.box})
	p, _ := e.store.GetProject(ctx, "web")
	env, _ := e.store.GetEnvironment(ctx, p.ID, "production")
	d := store.Deployment{ProjectID: p.ID, EnvironmentID: env.ID}
	rules.SetVar(ctx, env, "GREETING", "now", false)
	rules.UpdateSettings(ctx, p, store.ProjectSettings{MemoryBytes: 64 << 20})
	st, err := e.ctl.settingsOf(ctx, d)
	if err != nil || st.MemoryBytes != 64<<20 {
		t.Errorf("settings of an old deployment: %+v, %v", st, err)
	}
	vars, err := e.ctl.varsOf(ctx, d)
	if err != nil || len(vars) != 1 || vars[0].Value != "now" {
		t.Errorf("variables of an old deployment: %+v, %v", vars, err)
	}
	if ch, err := e.ctl.Changes(ctx, d); err != nil || len(ch) != 0 {
		t.Errorf("changes of an old deployment: %v, %v", ch, err)
	}
}

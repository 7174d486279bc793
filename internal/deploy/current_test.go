package deploy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/store"
)

// serves returns the id of the deployment that answers on host.
func (e *env) serves(host string) string {
	rec := httptest.NewRecorder()
	(&router.Router{Table: e.table}).ServeHTTP(rec, httptest.NewRequest("GET", "http://"+host+"/env?name=SLIPWAY_DEPLOYMENT_ID", nil))
	if rec.Code != http.StatusOK {
		return ""
	}
	return rec.Body.String()
}

func (e *env) current() string {
	ctx := context.Background()
	p, _ := e.store.GetProject(ctx, "web")
	env, _ := e.store.GetEnvironment(ctx, p.ID, "production")
	return env.CurrentDeploymentID
}

func (e *env) logHas(id, kind, text string) bool {
	lines, _ := e.store.ListLogs(context.Background(), store.LogQuery{DeploymentID: id, Kind: kind})
	for _, l := range lines {
		if strings.Contains(l.Text, text) {
			return true
		}
	}
	return false
}

// Two builds at once: the older push finishes after the newer one and must
// not take the environment back.
func TestOlderDeploymentFinishingLaterIsNotPromoted(t *testing.T) {
	e := newEnv(t)
	e.ctl.Close()
	e.perProject = 2 // one project's builds run side by side
	e.start()
	older := e.deploy("BLOCK")
	e.waitFor(older.ID, func(s Status) bool { return s == Building })
	newer := e.waitFor(e.deploy().ID, settled)
	if newer.Status != string(Running) || e.current() != newer.ID {
		t.Fatalf("newer deployment: %s, current %s", newer.Status, e.current())
	}
	e.builder.Release()
	older = e.waitFor(older.ID, settled)
	if older.Status != string(Running) {
		t.Fatalf("older deployment: %s %s", older.Status, older.FailureReason)
	}
	if cur := e.current(); cur != newer.ID {
		t.Errorf("the older deployment, finishing later, became current (%s); want %s", cur, newer.ID)
	}
	if got := e.serves("web.slipway.localhost"); got != newer.ID {
		t.Errorf("default hostname serves %q, want the newer deployment %s", got, newer.ID)
	}
	if got := e.serves(older.ID + ".slipway.localhost"); got != older.ID {
		t.Errorf("older deployment's preview serves %q", got)
	}
	if !e.logHas(older.ID, store.LogBuild, "not promoted: deployment "+newer.ID+", created after this one, is current on production") {
		t.Error("the older deployment's log does not say why it was not promoted")
	}
	// Only an explicit promotion goes back.
	if _, err := e.ctl.Promote(context.Background(), older.ID); err != nil {
		t.Fatal(err)
	}
	if got := e.serves("web.slipway.localhost"); got != older.ID || e.current() != older.ID {
		t.Errorf("after an explicit promote the default hostname serves %q (current %s), want %s", got, e.current(), older.ID)
	}
}

func TestStoppingCurrentFallsBackToNewestRunning(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first := e.waitFor(e.deploy().ID, settled)
	failed := e.waitFor(e.deploy("FAIL").ID, settled)
	second := e.waitFor(e.deploy().ID, settled)
	if failed.Status != string(Failed) || e.current() != second.ID {
		t.Fatalf("setup: failed %s, current %s", failed.Status, e.current())
	}
	if _, err := e.ctl.Stop(ctx, second.ID); err != nil {
		t.Fatal(err)
	}
	if cur := e.current(); cur != first.ID {
		t.Fatalf("after stopping the current deployment, current is %q; want %s", cur, first.ID)
	}
	for _, host := range []string{"web.slipway.localhost", "web-production.slipway.localhost"} {
		if got := e.serves(host); got != first.ID {
			t.Errorf("%s serves %q after the current deployment was stopped; want %s", host, got, first.ID)
		}
	}
	if code, _ := e.get(second.ID + ".slipway.localhost"); code != http.StatusGone {
		t.Errorf("stopped deployment's preview: %d", code)
	}
	if !e.logHas(first.ID, store.LogRuntime, "now current on production: the current deployment "+second.ID+" was stopped") {
		t.Error("the deployment fallen back to does not say so in its log")
	}

	// Nothing left to fall back to: the hostname says the app was stopped.
	e.ctl.Stop(ctx, first.ID)
	if code, _ := e.get("web.slipway.localhost"); code != http.StatusGone || e.current() != first.ID {
		t.Errorf("with no RUNNING deployment left: %d, current %s", code, e.current())
	}
}

// A server that went down between stopping the current deployment and
// falling back falls back when it starts.
func TestRestartFallsBackFromStoppedCurrent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first := e.waitFor(e.deploy().ID, settled)
	second := e.waitFor(e.deploy().ID, settled)
	e.ctl.Close()
	st := string(Stopped)
	if _, err := e.store.UpdateDeployment(ctx, second.ID, string(Running), store.DeploymentPatch{Status: &st}); err != nil {
		t.Fatal(err)
	}
	e.start()
	if cur := e.current(); cur != first.ID {
		t.Fatalf("after a restart, current is %q; want %s", cur, first.ID)
	}
	if got := e.serves("web.slipway.localhost"); got != first.ID {
		t.Errorf("default hostname serves %q, want %s", got, first.ID)
	}
}

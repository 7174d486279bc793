package deploy

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/source"
	"github.com/slipwayhq/slipway/internal/store"
)

// TestBuildQueueTakesProjectsInTurn: first come, first served within a
// project, projects in turn, and no more builds of a project at once than
// allowed.
func TestBuildQueueTakesProjectsInTurn(t *testing.T) {
	q := newBuildQueue(1, 100)
	for _, b := range [][2]string{{"a1", "A"}, {"a2", "A"}, {"a3", "A"}, {"b1", "B"}, {"c1", "C"}, {"b2", "B"}} {
		if err := q.push(b[0], b[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.push("a2", "A"); err != nil || q.len() != 6 {
		t.Fatalf("pushing a waiting deployment again: %v, %d waiting", err, q.len())
	}
	next := func(want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		id, _, ok := q.next(ctx)
		if !ok || id != want {
			t.Fatalf("next: %q %v, want %q", id, ok, want)
		}
	}
	none := func() {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // nothing may start now: next gives up at once
		if id, _, ok := q.next(ctx); ok {
			t.Fatalf("next: %q, want nothing while every waiting project builds", id)
		}
	}
	next("a1")
	next("b1")
	next("c1")
	none() // A and B are building; C has nothing more
	q.done("b1", "B")
	next("b2")
	none()
	q.done("a1", "A")
	next("a2")
	q.done("a2", "A")
	next("a3")
	if q.len() != 0 {
		t.Errorf("%d still waiting", q.len())
	}

	full := newBuildQueue(2, 1)
	if err := full.push("x", "X"); err != nil {
		t.Fatal(err)
	}
	if err := full.push("y", "X"); err != errQueueFull {
		t.Errorf("pushing beyond capacity: %v", err)
	}
}

// deployTo uploads a source to project (created if need be) with the
// buildtest builder's steering files.
func (e *env) deployTo(project string, files ...string) store.Deployment {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.store.GetProject(ctx, project); err != nil {
		if _, err := e.store.CreateProject(ctx, store.Project{Name: project}); err != nil {
			e.t.Fatal(err)
		}
	}
	dir := e.t.TempDir()
	for _, f := range append([]string{"Dockerfile"}, files...) {
		os.WriteFile(filepath.Join(dir, f), []byte("FROM scratch\n"), 0o644)
	}
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		e.t.Fatal(err)
	}
	d, err := e.ctl.Create(ctx, CreateRequest{Project: project, Trigger: "upload", Promote: true, Source: &buf})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// TestOneProjectCantHoldEveryBuilder: a project whose builds never end
// holds one worker at most; another project's build starts and deploys
// meanwhile.
func TestOneProjectCantHoldEveryBuilder(t *testing.T) {
	e := newEnv(t)
	defer e.builder.Release()
	var blocked []store.Deployment
	for range 3 {
		blocked = append(blocked, e.deployTo("hog", "BLOCK"))
	}
	e.waitFor(blocked[0].ID, func(s Status) bool { return s == Building })
	other := e.waitFor(e.deployTo("other").ID, settled)
	if other.Status != string(Running) {
		t.Fatalf("the other project's deployment is %s (%s)", other.Status, other.FailureReason)
	}
	for _, d := range blocked[1:] {
		if d, _ := e.store.GetDeployment(context.Background(), d.ID); d.Status != string(Pending) {
			t.Errorf("hog's later deployment %s is %s while its first builds; want PENDING", d.ID, d.Status)
		}
	}
	// Once the first ends, the next of the same project builds.
	if _, err := e.ctl.Stop(context.Background(), blocked[0].ID); err != nil {
		t.Fatal(err)
	}
	e.waitFor(blocked[1].ID, func(s Status) bool { return s == Building })
}

// TestBuildDeadline: a build that outlives its project's build timeout is
// cancelled and FAILED saying so; the current deployment keeps serving.
func TestBuildDeadline(t *testing.T) {
	e := newEnv(t)
	defer e.builder.Release()
	good := e.waitFor(e.deploy().ID, settled)
	ctx := context.Background()
	p, _ := e.store.GetProject(ctx, "web")
	p.Settings.BuildTimeout = "300ms"
	if err := e.store.UpdateProjectSettings(ctx, p.ID, p.Settings); err != nil {
		t.Fatal(err)
	}
	slow := e.waitFor(e.deploy("BLOCK").ID, settled)
	if slow.Status != string(Failed) || slow.FailureReason != "build exceeded 300ms deadline" {
		t.Fatalf("endless build: %s %q", slow.Status, slow.FailureReason)
	}
	if code, _ := e.get("web.slipway.localhost"); code != http.StatusOK {
		t.Errorf("default hostname after a build timed out: %d", code)
	}
	env, _ := e.store.GetEnvironment(ctx, good.ProjectID, "production")
	if env.CurrentDeploymentID != good.ID {
		t.Errorf("current deployment moved to %q", env.CurrentDeploymentID)
	}
	// The worker is free again: the next build runs.
	if d := e.waitFor(e.deploy("v2").ID, settled); d.Status != string(Running) {
		t.Errorf("next deployment: %s %q", d.Status, d.FailureReason)
	}
}

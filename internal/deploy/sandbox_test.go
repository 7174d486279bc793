package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/store"
)

// newSandboxEnv returns an env whose controller runs two sandbox kinds:
// "runc" (the default, e.driver on e.machine) and "gvisor" (e.gvisorDriver
// on a machine of its own), so an instance started in the wrong one is
// not found by the other.
func newSandboxEnv(t *testing.T) *env {
	e := newEnv(t)
	e.ctl.Close()
	e.gvisor = fake.NewMachine()
	e.start()
	return e
}

func (e *env) setSettings(st store.ProjectSettings) {
	e.t.Helper()
	ctx := context.Background()
	p, _ := e.store.GetProject(ctx, "web")
	if err := e.store.UpdateProjectSettings(ctx, p.ID, st); err != nil {
		e.t.Fatal(err)
	}
}

// instanceDrivers returns, for each instance of deployment id recorded
// running, which of the two fake drivers runs it.
func (e *env) instanceDrivers(id string) []string {
	e.t.Helper()
	insts, err := e.store.ListInstances(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, in := range insts {
		if in.Status != "running" {
			continue
		}
		var h runtime.Handle
		if err := json.Unmarshal(in.State, &h); err != nil {
			e.t.Fatal(err)
		}
		where := "nowhere"
		for _, d := range []*fake.Driver{e.driver, e.gvisorDriver} {
			if st, err := d.Inspect(context.Background(), &h); err == nil && st.Running {
				where = d.Name()
			} else if err != nil && !errors.Is(err, runtime.ErrNotFound) {
				e.t.Fatal(err)
			}
		}
		if in.Driver != where {
			e.t.Errorf("instance %s is recorded as run by %q, but runs %s", in.ID, in.Driver, where)
		}
		out = append(out, where)
	}
	return out
}

func TestDeploymentRunsInItsProjectsSandbox(t *testing.T) {
	e := newSandboxEnv(t)
	ctx := context.Background()

	// The default kind, when the project sets none.
	d := e.waitFor(e.deploy().ID, settled)
	if d.Status != string(Running) {
		t.Fatalf("default sandbox: %s %s", d.Status, d.FailureReason)
	}
	if got := e.instanceDrivers(d.ID); !slices.Equal(got, []string{"fake"}) {
		t.Errorf("default sandbox: instances run in %v, want [fake]", got)
	}
	if got := e.ctl.SandboxOf(ctx, d); got != "runc" {
		t.Errorf("SandboxOf = %q, want runc", got)
	}

	// The project's choice: started, served and re-attached after a
	// restart, all in the gvisor kind's driver...
	e.setSettings(store.ProjectSettings{Sandbox: "gvisor", IdleTimeout: "0"})
	g := e.waitFor(e.deploy().ID, settled)
	if g.Status != string(Running) {
		t.Fatalf("gvisor sandbox: %s %s", g.Status, g.FailureReason)
	}
	if got := e.instanceDrivers(g.ID); !slices.Equal(got, []string{"fake-gvisor"}) {
		t.Errorf("gvisor sandbox: instances run in %v, want [fake-gvisor]", got)
	}
	if got := e.ctl.SandboxOf(ctx, g); got != "gvisor" {
		t.Errorf("SandboxOf = %q, want gvisor", got)
	}
	if code, body := e.get(g.ID + ".slipway.localhost"); code != http.StatusOK {
		t.Errorf("GET through the router: %d %q", code, body)
	}
	e.ctl.Close()
	e.start()
	if code, _ := e.get(g.ID + ".slipway.localhost"); code != http.StatusOK {
		t.Errorf("after a restart: %d", code)
	}
	if insts, _ := e.store.ListInstances(ctx, g.ID); len(insts) != 1 {
		t.Errorf("a restart started a new instance instead of re-attaching: %d instances", len(insts))
	}
	if got := e.instanceDrivers(g.ID); !slices.Equal(got, []string{"fake-gvisor"}) {
		t.Errorf("after a restart: instances run in %v, want [fake-gvisor]", got)
	}

	// ...and scaled to zero and woken there.
	e.setSettings(store.ProjectSettings{Sandbox: "gvisor", IdleTimeout: "1s"})
	w := e.waitFor(e.deploy().ID, settled)
	asleep := func() bool {
		insts, _ := e.store.ListInstances(ctx, w.ID)
		insts = slices.DeleteFunc(insts, func(in store.Instance) bool { return preparedStatus(in.Status) })
		return len(insts) > 0 && insts[len(insts)-1].Status == "idle"
	}
	waitUntil(t, "scaled to zero", asleep)
	if code, _ := e.get(w.ID + ".slipway.localhost"); code != http.StatusOK {
		t.Errorf("wake: %d", code)
	}
	if insts, _ := e.store.ListInstances(ctx, w.ID); len(insts) != 2 || insts[1].Driver != "fake-gvisor" {
		t.Errorf("after a wake: instances %+v, want a second one run by fake-gvisor", insts)
	}

	// Going back to the default is a change of what g runs with, applied
	// by a redeploy; g itself keeps its sandbox.
	e.setSettings(store.ProjectSettings{})
	g, _ = e.store.GetDeployment(ctx, g.ID)
	if changes, _ := e.ctl.Changes(ctx, g); !slices.Contains(changes, "sandbox") {
		t.Errorf("Changes after the project left gvisor = %v, want sandbox among them", changes)
	}
	if changes, _ := e.ctl.Changes(ctx, d); slices.Contains(changes, "sandbox") {
		t.Errorf("Changes of a deployment on the default = %v, want no sandbox", changes)
	}
	if got := e.ctl.SandboxOf(ctx, g); got != "gvisor" {
		t.Errorf("SandboxOf after the project changed = %q, want gvisor (captured)", got)
	}

	// A kind this server does not run fails the deployment, saying so.
	e.setSettings(store.ProjectSettings{Sandbox: "microvm"})
	m := e.waitFor(e.deploy().ID, settled)
	if m.Status != string(Failed) || !strings.Contains(m.FailureReason, "microvm sandbox is not available on this server") {
		t.Errorf("microvm without its driver: %s %q", m.Status, m.FailureReason)
	}
}

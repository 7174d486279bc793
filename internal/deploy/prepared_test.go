package deploy

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/store"
)

// preparedOf returns the deployment's instances recorded "prepared".
func (e *env) preparedOf(id string) []store.Instance {
	insts, err := e.store.ListInstances(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.Instance
	for _, in := range insts {
		if preparedStatus(in.Status) {
			out = append(out, in)
		}
	}
	return out
}

// onePrepared waits until the deployment has exactly one sandbox prepared
// ahead, on the machine and in the store, and no other, and returns its
// instance ID.
func (e *env) onePrepared(id string) string {
	e.t.Helper()
	var got string
	waitUntil(e.t, "one sandbox prepared ahead", func() bool {
		recs, onMachine := e.preparedOf(id), e.machine.Prepared()
		if len(recs) != 1 || len(onMachine) != 1 || recs[0].ID != onMachine[0] || recs[0].Status != statusPrepared || len(recs[0].State) == 0 {
			return false
		}
		got = recs[0].ID
		return true
	})
	return got
}

func TestWakeStartsThePreparedSandbox(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d, asleep := e.deployIdling("1s")
	waitUntil(t, "scaled to zero", asleep)
	ahead := e.onePrepared(d.ID)

	if code, body := e.get("web.slipway.localhost"); code != http.StatusOK {
		t.Fatalf("wake: %d %q", code, body)
	}
	var wakes []store.Wake
	waitUntil(t, "wake recorded", func() bool {
		wakes, _ = e.ctl.Wakes(ctx, d.ID, 10)
		return len(wakes) > 0
	})
	if len(wakes) != 1 || !wakes[0].OK || !wakes[0].Prepared {
		t.Errorf("wakes: %+v, want one that started the sandbox prepared ahead", wakes)
	}
	// The prepared instance is the one that runs: no other was made.
	waitUntil(t, "the prepared instance recorded running", func() bool {
		insts, _ := e.store.ListInstances(ctx, d.ID)
		return len(insts) == 2 && insts[1].ID == ahead && insts[1].Status == "running" && insts[1].Health.State == HealthHealthy
	})
	if p := e.machine.Prepared(); len(p) != 0 {
		t.Errorf("prepared on the machine after the wake: %v", p)
	}

	// Asleep again: another is prepared. A restart discards it (record and
	// sandbox) and prepares a new one.
	waitUntil(t, "scaled to zero again", asleep)
	old := e.onePrepared(d.ID)
	e.ctl.Close()
	e.start()
	waitUntil(t, "the previous server's prepared sandbox replaced", func() bool {
		recs := e.preparedOf(d.ID)
		return len(recs) == 1 && recs[0].ID != old
	})
	e.onePrepared(d.ID)
	if _, err := e.driver.Inspect(ctx, &runtime.Handle{ID: old, Driver: fake.Name}); err == nil {
		t.Errorf("the previous server's prepared sandbox %s still exists", old)
	}
	if code, _ := e.get(d.ID + ".slipway.localhost"); code != http.StatusOK {
		t.Errorf("wake after restart: %d", code)
	}
	waitUntil(t, "second wake recorded", func() bool {
		wakes, _ = e.ctl.Wakes(ctx, d.ID, 10)
		return len(wakes) == 2
	})
	if !wakes[0].Prepared {
		t.Errorf("the wake after a restart did not start a prepared sandbox: %+v", wakes[0])
	}

	// Stopping the deployment discards its prepared sandbox.
	waitUntil(t, "scaled to zero a third time", asleep)
	e.onePrepared(d.ID)
	if _, err := e.ctl.Stop(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if p := e.machine.Prepared(); len(p) != 0 {
		t.Errorf("prepared on the machine after Stop: %v", p)
	}
	if recs := e.preparedOf(d.ID); len(recs) != 0 {
		t.Errorf("prepared records after Stop: %+v", recs)
	}
}

func TestPreparedSandboxesAreBounded(t *testing.T) {
	e := newEnv(t)
	e.ctl.Close()
	e.prepared = 2
	e.start()
	var ids []string
	for range 3 {
		d, asleep := e.deployIdling("1s")
		waitUntil(t, "scaled to zero", asleep)
		ids = append(ids, d.ID)
	}
	// They fell asleep in the order deployed: the first lost its sandbox.
	waitUntil(t, "two sandboxes prepared, for the last two to fall asleep", func() bool {
		var with []string
		for _, id := range ids {
			if len(e.preparedOf(id)) == 1 {
				with = append(with, id)
			}
		}
		return slices.Equal(with, ids[1:]) && len(e.machine.Prepared()) == 2
	})
	// Its wake starts a new instance.
	if code, _ := e.get(ids[0] + ".slipway.localhost"); code != http.StatusOK {
		t.Fatalf("wake of the first: %d", code)
	}
	waitUntil(t, "wake recorded", func() bool {
		w, _ := e.ctl.Wakes(context.Background(), ids[0], 10)
		return len(w) == 1 && w[0].OK && !w[0].Prepared
	})
}

func TestNoPreparedSandboxesWhenOff(t *testing.T) {
	e := newEnv(t)
	e.ctl.Close()
	e.prepared = -1
	e.start()
	d, asleep := e.deployIdling("1s")
	waitUntil(t, "scaled to zero", asleep)
	if code, _ := e.get("web.slipway.localhost"); code != http.StatusOK {
		t.Fatalf("wake: %d", code)
	}
	if recs := e.preparedOf(d.ID); len(recs) != 0 || len(e.machine.Prepared()) != 0 {
		t.Errorf("prepared with PreparedSandboxes < 0: %+v", recs)
	}
}

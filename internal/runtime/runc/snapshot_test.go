package runc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/netns/nettest"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
)

// testSnapshot (run by TestGVisor) saves a running instance and resumes
// others from the save, on a real instance network (each instance in a
// namespace of its own, with its own address): the resumed app answers
// with the memory of the saved one (a counter that only lives in memory
// goes on from where it was at the save, not from 1, so no cold start
// hides behind the answer) and its files (one written at run time), with
// Prepare then StartPrepared as a wake does and with Start alike, several
// times from one save. A snapshot of another spec (environment) fails
// Prepare with ErrSnapshot and leaves nothing; a damaged one fails
// StartPrepared with it. An instance a dead server left paused in the
// middle of a save runs again once a new driver attaches to it.
func testSnapshot(t *testing.T) {
	requireSandbox(t)
	nettest.Require(t)
	_, ref := app(t)
	rn := openNetwork(t, "swsnp", nettest.Suffix(t), "10.123.16.0/28")
	root := t.TempDir()
	cfg := Config{Root: root, Network: rn}
	d := newDriver(t, cfg)
	logs := t.TempDir()
	spec := func(id string) runtime.Spec {
		return runtime.Spec{ID: id, Image: ref, Env: []string{"APP_ID=snap"},
			StdoutPath: filepath.Join(logs, id+".out"), StderrPath: filepath.Join(logs, id+".err")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	saved := drivertest.NewID(t)
	h := startApp(t, d, spec(saved))
	for range 3 {
		get(t, d, h, "/count")
	}
	if code, body := get(t, d, h, "/write?path=/data/note&data=written+before+the+save"); code != 200 {
		t.Fatalf("write: %d %s", code, body)
	}
	dir := filepath.Join(t.TempDir(), "snapshot")
	t0 := time.Now()
	if err := d.Snapshot(ctx, h, dir); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	t.Logf("saved in %v", time.Since(t0).Round(time.Millisecond))
	// The saved instance runs on, from where it was.
	if _, body := get(t, d, h, "/count"); strings.TrimSpace(body) != "4" {
		t.Errorf("the saved instance's /count after the save = %q, want 4", body)
	}
	if err := d.Stop(ctx, h); err != nil {
		t.Fatal(err)
	}

	resumed := func(how string, h *runtime.Handle) {
		t.Helper()
		drivertest.WaitHTTP(t, d, h, 3000)
		if _, body := get(t, d, h, "/count"); strings.TrimSpace(body) != "4" {
			t.Errorf("%s: /count = %q, want 4 (3 asked before the save, and this one): not the saved app", how, body)
		}
		if code, body := get(t, d, h, "/read?path=/data/note"); code != 200 || body != "written before the save" {
			t.Errorf("%s: the file written before the save: %d %q", how, code, body)
		}
		if code, body := get(t, d, h, "/"); code != 200 || !strings.Contains(body, "hello from snap") {
			t.Errorf("%s: GET / = %d %q", how, code, body)
		}
	}
	for i := range 2 {
		s := spec(drivertest.NewID(t))
		s.Snapshot = dir
		t0 := time.Now()
		p, err := d.Prepare(ctx, s)
		if err != nil {
			t.Fatalf("Prepare from the snapshot: %v", err)
		}
		t1 := time.Now()
		if p, err = d.StartPrepared(ctx, p); err != nil {
			t.Fatalf("StartPrepared from the snapshot: %v", err)
		}
		resumed("prepared", p)
		t.Logf("resume %d: prepared in %v, restored and answering in %v", i, t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
		if err := d.Stop(ctx, p); err != nil {
			t.Fatal(err)
		}
		checkFreed(t, root, s.ID)
	}
	// Restored ahead: Prepare restores the app and pauses it, a new
	// driver (a restarted server) leaves it so, StartPrepared resumes it.
	// One stopped while it waits leaves nothing.
	for i, start := range []bool{true, false} {
		s := spec(drivertest.NewID(t))
		s.Snapshot, s.RestoreAhead = dir, true
		t0 := time.Now()
		p, err := d.Prepare(ctx, s)
		if err != nil {
			t.Fatalf("Prepare restoring ahead: %v", err)
		}
		t1 := time.Now()
		if rs, err := d.runcStateOf(ctx, p.ID); err != nil || rs.Status != "paused" {
			t.Fatalf("an instance restored ahead: runsc state %+v, %v; want paused", rs, err)
		}
		if !start {
			if err := d.Stop(ctx, p); err != nil {
				t.Fatalf("Stop of an instance restored ahead: %v", err)
			}
			checkFreed(t, root, s.ID)
			continue
		}
		d2 := newDriver(t, Config{Root: root, Network: cfg.Network})
		if err := d2.Recover(ctx, p); err != nil {
			t.Fatalf("Recover of an instance restored ahead: %v", err)
		}
		if in, err := d2.attach(ctx, p); err != nil || !in.Prepared() {
			t.Errorf("an instance restored ahead, after Recover: attached %v (%v); want it prepared", in, err)
		}
		if rs, err := d.runcStateOf(ctx, p.ID); err != nil || rs.Status != "paused" {
			t.Errorf("an instance restored ahead, after Recover: runsc state %+v, %v; want paused", rs, err)
		}
		d2.Close()
		t2 := time.Now()
		if p, err = d.StartPrepared(ctx, p); err != nil {
			t.Fatalf("StartPrepared of an instance restored ahead: %v", err)
		}
		resumed("restored ahead", p)
		t.Logf("restored ahead %d: prepared and restored in %v, resumed and answering in %v", i, t1.Sub(t0).Round(time.Millisecond), time.Since(t2).Round(time.Millisecond))
		if err := d.Stop(ctx, p); err != nil {
			t.Fatal(err)
		}
		checkFreed(t, root, s.ID)
	}

	s := spec(drivertest.NewID(t))
	s.Snapshot = dir
	started, err := d.Start(ctx, s)
	if err != nil {
		t.Fatalf("Start from the snapshot: %v", err)
	}
	t.Cleanup(func() { d.Stop(context.Background(), started) })
	resumed("started", started)

	// Left paused by a server that died while saving it: a new driver
	// on the same root resumes it when it attaches.
	if out, err := exec.Command(d.runcPath, append(append([]string{"--root", d.runcRoot()}, d.args...), "pause", started.ID)...).CombinedOutput(); err != nil {
		t.Fatalf("runsc pause: %v: %s", err, out)
	}
	d2 := newDriver(t, Config{Root: root, Network: cfg.Network})
	if err := d2.Recover(ctx, started); err != nil {
		t.Fatalf("Recover of a paused instance: %v", err)
	}
	if code, _, err := drivertest.Get(ctx, d2, started, 3000, "/count"); err != nil || code != 200 {
		t.Errorf("a paused instance after Recover: %d %v", code, err)
	}
	d2.Close()
	if err := d.Stop(ctx, started); err != nil {
		t.Fatal(err)
	}

	// Another environment: the saved app would keep the old one.
	stale := spec(drivertest.NewID(t))
	stale.Snapshot, stale.Env = dir, []string{"APP_ID=other"}
	if p, err := d.Prepare(ctx, stale); !errors.Is(err, runtime.ErrSnapshot) {
		if err == nil {
			d.Stop(ctx, p)
		}
		t.Errorf("Prepare from a snapshot of another spec: %v, want ErrSnapshot", err)
	}
	checkFreed(t, root, stale.ID)

	// A damaged save: the checkpoint's state file cut short.
	state := filepath.Join(dir, "image", "checkpoint.img")
	if err := os.Truncate(state, 100); err != nil {
		t.Fatal(err)
	}
	damaged := spec(drivertest.NewID(t))
	damaged.Snapshot = dir
	p, err := d.Prepare(ctx, damaged)
	if err != nil {
		t.Fatalf("Prepare from a damaged snapshot (its key is intact): %v", err)
	}
	if _, err := d.StartPrepared(ctx, p); !errors.Is(err, runtime.ErrSnapshot) {
		t.Errorf("StartPrepared from a damaged snapshot: %v, want ErrSnapshot", err)
	}
	if err := d.Stop(ctx, p); err != nil {
		t.Fatal(err)
	}
	checkFreed(t, root, damaged.ID)
}

// TestSnapshotNeedsGVisor: runc cannot save an instance, says so with
// errors.ErrUnsupported, and makes no snapshot directory.
func TestSnapshotNeedsGVisor(t *testing.T) {
	if runtimeUnderTest == GVisor {
		t.Skip("runc only")
	}
	requireSandbox(t)
	_, ref := app(t)
	d := newDriver(t, Config{})
	h := startApp(t, d, runtime.Spec{Image: ref})
	dir := filepath.Join(t.TempDir(), "snapshot")
	if err := d.Snapshot(context.Background(), h, dir); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Snapshot with runc: %v, want errors.ErrUnsupported", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Snapshot with runc made %s (%v)", dir, err)
	}
}

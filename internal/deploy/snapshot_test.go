package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/store"
)

// snapDriver is the fake driver as a runtime.Snapshotter: Snapshot writes
// a marker into its directory (and memory, a file of that many bytes);
// the specs of starts and preparations are recorded; stale makes those
// with a snapshot fail with ErrSnapshot, and mute makes the instances
// resumed from one never answer.
type snapDriver struct {
	*fake.Driver
	mu        sync.Mutex
	saved     int
	snapshots []string        // Spec.Snapshot of each Start and Prepare
	ahead     map[string]bool // Spec.RestoreAhead of the last Prepare, by Spec.Snapshot
	memory    int
	stale     bool
	mute      bool
}

func (s *snapDriver) Snapshot(ctx context.Context, h *runtime.Handle, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saved++
	if err := os.WriteFile(filepath.Join(dir, "memory"), make([]byte, s.memory), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "saved"), []byte(h.ID), 0o600)
}

func (s *snapDriver) start(spec runtime.Spec, start func(runtime.Spec) (*runtime.Handle, error)) (*runtime.Handle, error) {
	s.mu.Lock()
	s.snapshots = append(s.snapshots, spec.Snapshot)
	stale, mute := s.stale, s.mute
	s.mu.Unlock()
	if spec.Snapshot != "" && stale {
		return nil, fmt.Errorf("%w: saved by another runtime", runtime.ErrSnapshot)
	}
	h, err := start(spec)
	if err == nil && spec.Snapshot != "" && mute {
		s.Driver.SetNeverAnswer(spec.ID, true)
	}
	return h, err
}

func (s *snapDriver) Start(ctx context.Context, spec runtime.Spec) (*runtime.Handle, error) {
	return s.start(spec, func(sp runtime.Spec) (*runtime.Handle, error) { return s.Driver.Start(ctx, sp) })
}

func (s *snapDriver) Prepare(ctx context.Context, spec runtime.Spec) (*runtime.Handle, error) {
	if spec.Snapshot != "" {
		s.mu.Lock()
		if s.ahead == nil {
			s.ahead = map[string]bool{}
		}
		s.ahead[spec.Snapshot] = spec.RestoreAhead
		s.mu.Unlock()
	}
	return s.start(spec, func(sp runtime.Spec) (*runtime.Handle, error) { return s.Driver.Prepare(ctx, sp) })
}

func (s *snapDriver) counts() (saved int, last string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.snapshots); n > 0 {
		last = s.snapshots[n-1]
	}
	return s.saved, last
}

func (s *snapDriver) set(stale, mute bool) {
	s.mu.Lock()
	s.stale, s.mute = stale, mute
	s.mu.Unlock()
}

// newSnapEnv is newEnv with its controller restarted on a driver that
// can save instances (snapDriver).
func newSnapEnv(t *testing.T) (*env, *snapDriver) {
	e := newEnv(t)
	var sd *snapDriver
	e.ctl.Close()
	e.wrap = func(d runtime.Driver) runtime.Driver {
		sd = &snapDriver{Driver: d.(*fake.Driver)}
		return sd
	}
	e.start()
	return e, sd
}

// asleep reports whether deployment id is scaled to zero: its newest
// instance, sandboxes prepared ahead aside, is idle.
func (e *env) asleep(id string) bool {
	insts, _ := e.store.ListInstances(context.Background(), id)
	for i := len(insts) - 1; i >= 0; i-- {
		if !preparedStatus(insts[i].Status) {
			return insts[i].Status == "idle"
		}
	}
	return false
}

// TestSnapshotWakes: with a driver that can save instances, the
// deployment's first healthy instance is saved once, under the data
// directory, and the sandbox prepared for each wake is made from that
// snapshot, which the runtime log says. A snapshot the driver finds stale
// is discarded, saying so, the next instance starts the app, and is
// saved anew; so is one whose resumed app does not pass its health
// check, and that wake still succeeds with the app started instead.
// Stopping the deployment removes its snapshots.
func TestSnapshotWakes(t *testing.T) {
	e, sd := newSnapEnv(t)
	ctx := context.Background()
	p, _ := e.store.GetProject(ctx, "web")
	e.store.UpdateProjectSettings(ctx, p.ID, store.ProjectSettings{IdleTimeout: "1s", DeployWindow: "3s"})
	d := e.waitFor(e.deploy().ID, settled)
	asleep := func() bool { return e.asleep(d.ID) }
	dir := filepath.Join(e.data, "snapshots", d.ID, fake.Name)
	saves := func(n int) {
		t.Helper()
		waitUntil(t, fmt.Sprintf("%d snapshots saved", n), func() bool {
			saved, _ := sd.counts()
			_, err := os.Stat(filepath.Join(dir, "saved"))
			return saved == n && err == nil
		})
	}
	log := func() string {
		lines, _ := e.store.ListLogs(ctx, store.LogQuery{DeploymentID: d.ID, Kind: store.LogRuntime})
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(l.Text + "\n")
		}
		return b.String()
	}
	logs := func(what string, texts ...string) {
		t.Helper()
		for _, text := range texts {
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log(), text); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Errorf("the runtime log does not say %s (%q):\n%s", what, text, log())
					break
				}
			}
		}
	}
	wake := func(what string) {
		t.Helper()
		waitUntil(t, "scaled to zero before "+what, asleep)
		e.onePrepared(d.ID)
		if code, body := e.get("web.slipway.localhost"); code != http.StatusOK {
			t.Fatalf("%s: %d %q\nruntime log:\n%s", what, code, body, log())
		}
	}
	saves(1)
	if _, last := sd.counts(); last != "" {
		t.Errorf("the first instance started from snapshot %q", last)
	}

	wake("a wake from the snapshot")
	if _, last := sd.counts(); last != dir {
		t.Errorf("the woken instance's Spec.Snapshot = %q, want %q", last, dir)
	}
	logs("the wake resumed the snapshot, restored ahead", "restored from the deployment's snapshot ahead", "(a sandbox prepared ahead, resumed from a snapshot)")
	if saved, _ := sd.counts(); saved != 1 {
		t.Errorf("saved %d times, want once: a resumed instance is not saved again", saved)
	}

	// Stale: the sandbox prepared at the next sleep finds it so.
	sd.set(true, false)
	wake("a wake after the snapshot went stale")
	logs("the stale snapshot was discarded", "snapshot discarded (snapshot unusable: saved by another runtime)")
	sd.set(false, false)
	saves(2)

	// Resumed, but not answering: the wake starts the app instead.
	sd.set(false, true)
	wake("a wake whose resumed app does not answer")
	logs("the resumed app failed its check", "snapshot discarded (the resumed app did not pass its health check")
	sd.set(false, false)
	saves(3)
	var wakes []store.Wake
	waitUntil(t, "three wakes recorded", func() bool {
		wakes, _ = e.ctl.Wakes(ctx, d.ID, 10)
		return len(wakes) == 3
	})
	for _, w := range wakes {
		if !w.OK {
			t.Errorf("a wake failed: %+v", w)
		}
	}
	// Newest first: started after a failed resume, started after a stale
	// snapshot, resumed.
	if wakes[0].Restored || wakes[1].Restored || !wakes[2].Restored {
		t.Errorf("wakes' restored flags (newest first) = %v %v %v, want false false true", wakes[0].Restored, wakes[1].Restored, wakes[2].Restored)
	}

	if _, err := e.ctl.Stop(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.data, "snapshots", d.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the deployment's snapshots outlive its stop (%v)", err)
	}
}

// TestSnapshotsOffForAProject: a project whose setting noSnapshots is on
// has its deployments never saved, and every wake starts the app; like
// every setting it is taken by a deployment when it is created, so the
// deployment made after it is turned off again is saved.
func TestSnapshotsOffForAProject(t *testing.T) {
	e, sd := newSnapEnv(t)
	ctx := context.Background()
	p, _ := e.store.GetProject(ctx, "web")
	e.store.UpdateProjectSettings(ctx, p.ID, store.ProjectSettings{IdleTimeout: "1s", NoSnapshots: true})
	d := e.waitFor(e.deploy().ID, settled)
	var wakes []store.Wake
	for i := range 2 {
		waitUntil(t, "asleep", func() bool { return e.asleep(d.ID) })
		e.onePrepared(d.ID)
		if code, body := e.get("web.slipway.localhost"); code != http.StatusOK {
			t.Fatalf("wake %d: %d %q", i, code, body)
		}
		waitUntil(t, "the wake recorded", func() bool {
			wakes, _ = e.ctl.Wakes(ctx, d.ID, 10)
			return len(wakes) == i+1
		})
	}
	if saved, _ := sd.counts(); saved != 0 {
		t.Errorf("saved %d times with noSnapshots on", saved)
	}
	sd.mu.Lock()
	for _, s := range sd.snapshots {
		if s != "" {
			t.Errorf("an instance was started from snapshot %q", s)
		}
	}
	sd.mu.Unlock()
	for _, w := range wakes {
		if !w.OK || w.Restored {
			t.Errorf("wake %+v, want ok and not restored", w)
		}
	}

	e.store.UpdateProjectSettings(ctx, p.ID, store.ProjectSettings{IdleTimeout: "1s"})
	e.waitFor(e.deploy().ID, settled)
	waitUntil(t, "the new deployment saved", func() bool {
		saved, _ := sd.counts()
		return saved == 1
	})
}

// TestRestoreAheadWithinItsBound: the sandbox prepared for a deployment
// with a snapshot restores it ahead only while the snapshots restored
// ahead fit in Config.RestoreAheadMemory: of two deployments asleep, with
// room for one, one is prepared restored (its wake only resumes it) and
// the other prepared to restore at its wake; each wake says which.
func TestRestoreAheadWithinItsBound(t *testing.T) {
	const memory = 1 << 20
	e := newEnv(t)
	e.ctl.Close()
	e.ahead = memory * 3 / 2 // one snapshot, not two
	var sd *snapDriver
	e.wrap = func(d runtime.Driver) runtime.Driver {
		sd = &snapDriver{Driver: d.(*fake.Driver), memory: memory}
		return sd
	}
	e.start()
	ctx := context.Background()
	if _, err := e.store.CreateProject(ctx, store.Project{Name: "api"}); err != nil {
		t.Fatal(err)
	}
	var deps []store.Deployment
	for _, name := range []string{"web", "api"} {
		p, _ := e.store.GetProject(ctx, name)
		e.store.UpdateProjectSettings(ctx, p.ID, store.ProjectSettings{IdleTimeout: "1s"})
		deps = append(deps, e.waitFor(e.deployTo(name).ID, settled))
	}
	dirOf := func(d store.Deployment) string { return filepath.Join(e.data, "snapshots", d.ID, fake.Name) }
	waitUntil(t, "both deployments saved, asleep, and a sandbox prepared ahead for each", func() bool {
		sd.mu.Lock()
		defer sd.mu.Unlock()
		for _, d := range deps {
			if _, ok := sd.ahead[dirOf(d)]; !ok || !e.asleep(d.ID) || len(e.preparedOf(d.ID)) != 1 || e.preparedOf(d.ID)[0].Status != statusPrepared {
				return false
			}
		}
		return true
	})
	sd.mu.Lock()
	aheadOf := map[string]bool{}
	for _, d := range deps {
		aheadOf[d.ID] = sd.ahead[dirOf(d)]
	}
	sd.mu.Unlock()
	if aheadOf[deps[0].ID] == aheadOf[deps[1].ID] {
		t.Fatalf("restored ahead: %v, want one of the two (room for one snapshot)", aheadOf)
	}
	for i, d := range deps {
		host := []string{"web", "api"}[i] + ".slipway.localhost"
		if code, body := e.get(host); code != http.StatusOK {
			t.Fatalf("waking %s: %d %q", host, code, body)
		}
		want := "started from the deployment's snapshot (prepared ahead)"
		if aheadOf[d.ID] {
			want = "restored from the deployment's snapshot ahead"
		}
		waitUntil(t, host+"'s runtime log saying "+want, func() bool {
			lines, _ := e.store.ListLogs(ctx, store.LogQuery{DeploymentID: d.ID, Kind: store.LogRuntime})
			for _, l := range lines {
				if strings.Contains(l.Text, want) {
					return true
				}
			}
			return false
		})
	}
}

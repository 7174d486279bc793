package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/store"
)

// Snapshot wakes. With a driver that can (runtime.Snapshotter: gVisor's),
// an instance that passes its first health check is saved in the
// background — its memory and its files — unless its deployment has a
// snapshot already, in DataDir/snapshots/<deployment>/<driver>. Every
// later instance of the deployment on that driver (a wake, a restart,
// the sandbox prepared ahead for the next wake) resumes from the
// snapshot instead of starting the app, so a wake costs a restore, not
// the app's own start. The snapshot lives as long as the deployment
// (Stop, retention and deletion remove it) and, being on disk, outlives
// the server. One that cannot serve any more — saved by another runsc,
// for another spec, or failing to restore — is discarded, with a line in
// the runtime log, and that instance starts the app; once healthy it is
// saved anew. A save that fails is not tried again for the deployment
// until the server restarts.

// snapshotState tracks the saves in progress and those that failed.
type snapshotState struct {
	mu     sync.Mutex
	busy   map[string]bool // deployment → a save is under way
	failed map[string]bool // deployment → a save failed
}

// snapshotDir is where deployment dep's snapshot for driver lives.
func (c *Controller) snapshotDir(dep, driver string) string {
	return filepath.Join(c.cfg.DataDir, "snapshots", dep, driver)
}

// snapshotsOn reports whether instances of a deployment with settings st
// are saved and resumed: the server's --snapshots and the project's
// noSnapshots, as the deployment captured it.
func (c *Controller) snapshotsOn(st store.ProjectSettings) bool {
	return !c.cfg.NoSnapshots && !st.NoSnapshots
}

// snapshotFor returns the snapshot a new instance of deployment dep, with
// settings st, on drv resumes from, or "" if it starts the app.
func (c *Controller) snapshotFor(dep string, st store.ProjectSettings, drv runtime.Driver) string {
	if !c.snapshotsOn(st) {
		return ""
	}
	if _, ok := drv.(runtime.Snapshotter); !ok {
		return ""
	}
	dir := c.snapshotDir(dep, drv.Name())
	if _, err := os.Stat(dir); err != nil {
		return ""
	}
	return dir
}

// dropSnapshot discards deployment dep's snapshot dir, which could not
// serve (err wraps runtime.ErrSnapshot), and says so.
func (c *Controller) dropSnapshot(dep, dir string, err error) {
	if rerr := os.RemoveAll(dir); rerr != nil {
		c.log.Warn("removing a snapshot", "deployment", dep, "err", rerr)
	}
	c.event(dep, store.LogRuntime, "snapshot discarded (%v): this instance starts the app, and is saved anew once healthy", err)
}

// removeSnapshots removes every snapshot of deployment dep.
func (c *Controller) removeSnapshots(dep string) {
	if err := os.RemoveAll(filepath.Join(c.cfg.DataDir, "snapshots", dep)); err != nil {
		c.log.Warn("removing a deployment's snapshots", "deployment", dep, "err", err)
	}
}

// saveSnapshot saves l's current instance in the background, if its
// driver can and its deployment has no snapshot (or save under way) yet.
// It is called once the instance has passed its first health check.
func (c *Controller) saveSnapshot(l *liveDeployment) {
	if c.cfg.NoSnapshots {
		return // without reading the settings
	}
	if st, err := c.settingsOf(c.ctx, l.d); err != nil || !c.snapshotsOn(st) {
		return
	}
	l.mu.Lock()
	h, inst := l.handle, l.inst
	l.mu.Unlock()
	if h == nil {
		return
	}
	drv := c.driverOf(h)
	s, ok := drv.(runtime.Snapshotter)
	if !ok {
		return
	}
	dep := l.d.ID
	dir := c.snapshotDir(dep, drv.Name())
	if _, err := os.Stat(dir); err == nil {
		return
	}
	c.snaps.mu.Lock()
	if c.snaps.busy == nil {
		c.snaps.busy, c.snaps.failed = map[string]bool{}, map[string]bool{}
	}
	if c.snaps.busy[dep] || c.snaps.failed[dep] {
		c.snaps.mu.Unlock()
		return
	}
	c.snaps.busy[dep] = true
	c.snaps.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		start := time.Now()
		err := s.Snapshot(c.ctx, h, dir)
		c.snaps.mu.Lock()
		delete(c.snaps.busy, dep)
		if err != nil && !errors.Is(err, errors.ErrUnsupported) {
			c.snaps.failed[dep] = true
		}
		c.snaps.mu.Unlock()
		switch {
		case errors.Is(err, errors.ErrUnsupported):
		case err != nil:
			l.mu.Lock()
			current := l.handle != nil && l.handle.ID == h.ID
			l.mu.Unlock()
			if current && c.ctx.Err() == nil { // not stopped meanwhile
				c.event(dep, store.LogRuntime, "saving a snapshot of instance %s failed: %v; wakes start the app", inst.ID, err)
			}
		default:
			c.event(dep, store.LogRuntime, "snapshot of instance %s saved in %s (%s): wakes resume it instead of starting the app",
				inst.ID, time.Since(start).Round(time.Millisecond), FormatBytes(dirSize(dir)))
		}
	}()
}

// dirSize is the size of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// startFrom runs start (a driver's Start or Prepare) with spec, and, if
// it fails because spec's snapshot cannot serve, discards the snapshot
// and runs it again without, clearing spec.Snapshot.
func (c *Controller) startFrom(ctx context.Context, dep string, spec *runtime.Spec, start func(runtime.Spec) (*runtime.Handle, error)) (*runtime.Handle, error) {
	h, err := start(*spec)
	if err != nil && spec.Snapshot != "" && errors.Is(err, runtime.ErrSnapshot) && ctx.Err() == nil {
		c.dropSnapshot(dep, spec.Snapshot, err)
		spec.Snapshot = ""
		h, err = start(*spec)
	}
	return h, err
}

// resumeWindow bounds how long an instance resumed from a snapshot may
// take to pass its first health check (within the deployment's window):
// a resumed app answers at once, so one that does not is not waited for
// as long as an app's start.
const resumeWindow = 20 * time.Second

// waitStarted waits for the first passed health check of l's instance,
// just started (see waitHealthy; later as there). An instance resumed
// from a snapshot that does not pass one within resumeWindow is stopped,
// its snapshot discarded, and the app started instead, with the
// deployment's window.
func (c *Controller) waitStarted(ctx context.Context, l *liveDeployment, later *[]func()) error {
	l.mu.Lock()
	restored, driver := l.restored, l.inst.Driver
	l.mu.Unlock()
	if !restored {
		return c.waitHealthy(ctx, l, time.Now().Add(l.health.Window), later)
	}
	err := c.waitHealthy(ctx, l, time.Now().Add(min(l.health.Window, resumeWindow)), later)
	if err == nil || ctx.Err() != nil {
		return err
	}
	if later != nil { // the start, before the stop
		for _, f := range *later {
			f()
		}
		*later = nil
	}
	c.stopInstanceOf(l)
	c.dropSnapshot(l.d.ID, c.snapshotDir(l.d.ID, driver), fmt.Errorf("the resumed app did not pass its health check: %v", err))
	sctx, cancel := context.WithTimeout(ctx, l.health.Window)
	err = c.startInstance(sctx, l)
	cancel()
	if err != nil {
		return err
	}
	return c.waitHealthy(ctx, l, time.Now().Add(l.health.Window), later)
}

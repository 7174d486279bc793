package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/store"
)

// Sandboxes prepared ahead. With a driver that can (runtime.Preparer),
// a deployment that scales to zero gets the instance of its next wake
// prepared at once: filesystem mounted, network claimed, cgroup made, the
// sandbox's process waiting to exec the app. The wake then only starts the
// app in it (and records that it did). At start, the server prepares them
// for the deployments that sleep, the most recently asleep first.
//
// At most Config.PreparedSandboxes are kept: to make room, the one whose
// deployment fell asleep longest ago is discarded. A prepared instance is
// recorded, with status "preparing", before the driver makes it, and
// "prepared" once made; stopping
// its deployment discards it (record included: it never ran), and a
// restarted server discards those the previous one left and prepares
// anew. A wake persists nothing before starting it — the record exists —
// and records the start and the first health check once the held requests
// are on their way: a server that dies in between finds a "prepared"
// record and discards its sandbox, app and all, so the deployment sleeps
// again.

// Statuses of an instance prepared ahead: recorded before the driver
// prepares it, and once it has.
const (
	statusPreparing = "preparing"
	statusPrepared  = "prepared"
)

// preparedStatus reports whether status is one of those.
func preparedStatus(status string) bool { return status == statusPreparing || status == statusPrepared }

// preparedSet holds the sandboxes prepared ahead, by deployment.
type preparedSet struct {
	mu    sync.Mutex
	byDep map[string]*preparedSandbox
}

type preparedSandbox struct {
	dep     string
	driver  runtime.Driver // a runtime.Preparer
	sleptAt time.Time
	ready   chan struct{} // closed once inst and h are set (h nil: it failed)
	inst    store.Instance
	h       *runtime.Handle
	// snapshot is the snapshot its app resumes from (Spec.Snapshot), if
	// any.
	snapshot string
	// ahead, under preparedSet.mu, is what it counts against
	// Config.RestoreAheadMemory: non-zero once it is chosen to restore
	// its snapshot ahead (see reserveAhead).
	ahead int64
}

// preparerFor returns the driver of d's sandbox kind, if the controller
// keeps prepared sandboxes and that driver can prepare them.
func (c *Controller) preparerFor(d store.Deployment) runtime.Driver {
	if c.cfg.PreparedSandboxes <= 0 {
		return nil
	}
	drv, err := c.driverFor(c.SandboxOf(c.ctx, d))
	if err != nil {
		return nil
	}
	if _, ok := drv.(runtime.Preparer); !ok {
		return nil
	}
	return drv
}

// prepareAhead prepares the next instance of l's deployment in the
// background, which fell asleep at sleptAt, unless one is kept or being
// made already, or the set is full of deployments that fell asleep later.
// A deployment that captured nothing when it was created follows its
// project's current settings and variables, so it is not prepared ahead.
// It returns the sandbox, or nil.
func (c *Controller) prepareAhead(l *liveDeployment, sleptAt time.Time) *preparedSandbox {
	if l.d.Captured == nil || c.ctx.Err() != nil {
		return nil
	}
	drv := c.preparerFor(l.d)
	if drv == nil {
		return nil
	}
	s := &c.prepared
	s.mu.Lock()
	if s.byDep == nil {
		s.byDep = map[string]*preparedSandbox{}
	}
	// Stopping a deployment removes it from live before it invalidates
	// (under s.mu), so a sandbox is never added after that; nor for one
	// that a request is waking or has woken meanwhile.
	l.mu.Lock()
	sleeping := l.asleep && l.waking == nil
	l.mu.Unlock()
	if _, ok := s.byDep[l.d.ID]; ok || !sleeping || c.liveByID(l.d.ID) != l {
		s.mu.Unlock()
		return nil
	}
	var evict *preparedSandbox
	if len(s.byDep) >= c.cfg.PreparedSandboxes {
		for _, e := range s.byDep {
			if evict == nil || e.sleptAt.Before(evict.sleptAt) {
				evict = e
			}
		}
		if !evict.sleptAt.Before(sleptAt) {
			s.mu.Unlock()
			return nil
		}
		delete(s.byDep, evict.dep)
	}
	e := &preparedSandbox{dep: l.d.ID, driver: drv, sleptAt: sleptAt, ready: make(chan struct{})}
	s.byDep[l.d.ID] = e
	s.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if evict != nil {
			c.discardPrepared(evict)
		}
		c.runPrepare(l.d, e)
	}()
	return e
}

// runPrepare records e's instance and has the driver prepare it.
func (c *Controller) runPrepare(d store.Deployment, e *preparedSandbox) {
	defer close(e.ready)
	inst, spec, drv, err := c.newInstance(c.ctx, d, statusPreparing)
	if err == nil && drv != e.driver {
		err = fmt.Errorf("its sandbox kind is now %s", drv.Name())
		c.forgetInstance(inst)
	}
	if err != nil {
		c.log.Warn("preparing a sandbox ahead", "deployment", d.ID, "err", err)
		return
	}
	if spec.Snapshot != "" {
		spec.RestoreAhead = c.reserveAhead(e, spec.Snapshot)
	}
	h, err := c.startFrom(c.ctx, d.ID, &spec, func(s runtime.Spec) (*runtime.Handle, error) {
		return e.driver.(runtime.Preparer).Prepare(c.ctx, s)
	})
	if err != nil || spec.Snapshot == "" { // failed, or prepared without the snapshot
		c.prepared.mu.Lock()
		e.ahead = 0
		c.prepared.mu.Unlock()
	}
	if err == nil {
		inst.State, _ = json.Marshal(h)
		if err = c.store.UpdateInstance(c.ctx, inst.ID, inst.State, statusPrepared); err != nil {
			e.driver.Stop(context.Background(), h)
		}
	}
	if err != nil {
		if c.ctx.Err() == nil {
			c.log.Warn("preparing a sandbox ahead", "deployment", d.ID, "err", err)
		}
		c.forgetInstance(inst)
		return
	}
	e.inst, e.h, e.snapshot = inst, h, spec.Snapshot
}

// reserveAhead decides whether e, whose app resumes from the snapshot in
// dir, restores it ahead (Spec.RestoreAhead): if the snapshot's size —
// about the memory its app will hold — fits within
// Config.RestoreAheadMemory beside what the sandboxes restored ahead
// already hold. If so it counts that size against the bound until e is
// taken or discarded.
func (c *Controller) reserveAhead(e *preparedSandbox, dir string) bool {
	if c.cfg.RestoreAheadMemory <= 0 {
		return false
	}
	size := dirSize(dir)
	if size == 0 {
		return false
	}
	s := &c.prepared
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byDep[e.dep] != e { // taken or evicted meanwhile
		return false
	}
	var used int64
	for _, o := range s.byDep {
		if o != e {
			used += aheadMemory(o)
		}
	}
	if used+size > c.cfg.RestoreAheadMemory {
		return false
	}
	e.ahead = size
	return true
}

// aheadMemory is what prepared sandbox e counts against
// Config.RestoreAheadMemory (the caller holds preparedSet.mu): the size
// reserved for it, or what it uses if that is more (its Sentry's own
// memory, read from its cgroup once it is made). Zero if it was not
// restored ahead.
func aheadMemory(e *preparedSandbox) int64 {
	if e.ahead == 0 {
		return 0
	}
	select {
	case <-e.ready:
	default:
		return e.ahead
	}
	if ur, ok := e.driver.(runtime.UsageReader); ok && e.h != nil {
		if u, err := ur.Usage(context.Background(), e.h); err == nil && u.MemoryBytes > e.ahead {
			return u.MemoryBytes
		}
	}
	return e.ahead
}

// takePrepared removes the deployment's prepared sandbox from the set and
// returns it once ready, or nil if there is none (or it failed).
func (c *Controller) takePrepared(dep string) *preparedSandbox {
	s := &c.prepared
	s.mu.Lock()
	e := s.byDep[dep]
	delete(s.byDep, dep)
	s.mu.Unlock()
	if e == nil {
		return nil
	}
	<-e.ready
	if e.h == nil {
		return nil
	}
	return e
}

// invalidatePrepared discards the deployment's prepared sandbox, if any
// (its deployment is stopped).
func (c *Controller) invalidatePrepared(dep string) {
	s := &c.prepared
	s.mu.Lock()
	e := s.byDep[dep]
	delete(s.byDep, dep)
	s.mu.Unlock()
	if e != nil {
		c.discardPrepared(e)
	}
}

// discardPrepared stops a prepared sandbox (once ready) and forgets its
// instance.
func (c *Controller) discardPrepared(e *preparedSandbox) {
	<-e.ready
	if e.h == nil {
		return
	}
	if err := e.driver.Stop(context.Background(), e.h); err != nil {
		c.log.Warn("discarding a sandbox prepared ahead", "instance", e.inst.ID, "err", err)
		c.store.UpdateInstance(context.Background(), e.inst.ID, e.inst.State, "stopped")
		return
	}
	c.forgetInstance(e.inst)
}

// forgetInstance removes the record and log files of an instance that
// never ran.
func (c *Controller) forgetInstance(inst store.Instance) {
	if err := c.store.DeleteInstance(context.Background(), inst.ID); err != nil {
		c.log.Warn("removing the record of a sandbox prepared ahead", "instance", inst.ID, "err", err)
	}
	os.Remove(inst.StdoutPath)
	os.Remove(inst.StderrPath)
}

// startPrepared makes e's instance l's and starts its app. What a wake
// records of it (the instance running, an event) is appended to later.
func (c *Controller) startPrepared(l *liveDeployment, e *preparedSandbox, later *[]func()) error {
	inst := e.inst
	l.tailFrom(inst)
	h, err := e.driver.(runtime.Preparer).StartPrepared(c.ctx, e.h)
	if err != nil {
		l.stopTail()
		c.discardPrepared(e)
		if e.snapshot != "" && errors.Is(err, runtime.ErrSnapshot) {
			c.dropSnapshot(l.d.ID, e.snapshot, err)
		}
		return err
	}
	inst.State, _ = json.Marshal(h)
	inst.Status = "running"
	l.mu.Lock()
	l.handle, l.inst, l.restored = h, inst, e.snapshot != ""
	l.mu.Unlock()
	c.register(l)
	*later = append(*later, func() {
		if err := c.store.UpdateInstance(context.Background(), inst.ID, inst.State, inst.Status); err != nil {
			c.log.Error("recording a woken instance", "instance", inst.ID, "err", err)
		}
		if e.ahead > 0 {
			c.event(l.d.ID, store.LogRuntime, "instance %s resumed: its app was restored from the deployment's snapshot ahead, paused", inst.ID)
		} else if e.snapshot != "" {
			c.event(l.d.ID, store.LogRuntime, "instance %s started from the deployment's snapshot (prepared ahead)", inst.ID)
		} else {
			c.event(l.d.ID, store.LogRuntime, "instance %s started (prepared ahead)", inst.ID)
		}
	})
	return nil
}

// sleeper is a deployment found asleep at start, and when it fell asleep.
type sleeper struct {
	l       *liveDeployment
	sleptAt time.Time
}

// prepareAtStart discards the sandboxes a previous server prepared
// (recorded "preparing" or "prepared") and prepares anew for the sleeping deployments
// that fell asleep last, one at a time, in the background.
func (c *Controller) prepareAtStart(ctx context.Context, sleeping []sleeper) {
	var left []store.Instance
	for _, st := range []string{statusPreparing, statusPrepared} {
		insts, err := c.store.ListInstancesWithStatus(ctx, st)
		if err != nil {
			c.log.Error("listing sandboxes prepared ahead", "err", err)
		}
		left = append(left, insts...)
	}
	if len(left) == 0 && (c.cfg.PreparedSandboxes <= 0 || len(sleeping) == 0) {
		return
	}
	slices.SortFunc(sleeping, func(a, b sleeper) int { return b.sleptAt.Compare(a.sleptAt) })
	sleeping = sleeping[:min(len(sleeping), max(c.cfg.PreparedSandboxes, 0))]
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for _, in := range left {
			var h runtime.Handle
			if json.Unmarshal(in.State, &h) != nil || h.ID == "" {
				h = runtime.Handle{ID: in.ID, Driver: in.Driver}
			}
			if drv := c.driverOf(&h); drv != nil {
				if err := drv.Stop(context.Background(), &h); err != nil {
					c.log.Warn("discarding a sandbox prepared by the previous server", "instance", in.ID, "err", err)
					c.store.UpdateInstance(context.Background(), in.ID, in.State, "stopped")
					continue
				}
			}
			c.forgetInstance(in)
		}
		for _, s := range sleeping {
			if c.ctx.Err() != nil {
				return
			}
			s.l.mu.Lock()
			asleep := s.l.asleep && s.l.waking == nil
			s.l.mu.Unlock()
			if !asleep {
				continue
			}
			if e := c.prepareAhead(s.l, s.sleptAt); e != nil {
				<-e.ready
			}
		}
	}()
}

// closePrepared lets go of the set without discarding the sandboxes: like
// running instances they outlive the server, and the next start discards
// them (prepareAtStart).
func (c *Controller) closePrepared() {
	s := &c.prepared
	s.mu.Lock()
	s.byDep = nil
	s.mu.Unlock()
}

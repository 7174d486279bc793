package deploy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// Scale to zero. A RUNNING deployment whose instance has had no request
// for its idle timeout is put to sleep: supervision ends, the instance is
// stopped and its memory freed, the deployment stays RUNNING and routed.
// The next dial through the router wakes it: one instance is started (however
// many requests arrive meanwhile), and the dials are held until it passes
// its first health check, within the deployment window. Each wake's latency
// is recorded. The state survives a restart: an instance stopped for
// idleness is stored as "idle", and a restarted server leaves the
// deployment asleep. A deployment put to sleep gets the sandbox of its
// next wake prepared ahead (prepared.go), so that the wake only starts the
// app.

func (l *liveDeployment) touch() { l.lastUsed.Store(time.Now().UnixNano()) }

// Touch records the start of a request for a deployment (the router's
// OnRequest hook).
func (c *Controller) Touch(deployment string) {
	if l := c.liveByID(deployment); l != nil {
		l.inflight.Add(1)
		l.touch()
	}
}

// RequestDone records the end of a request Touch recorded (the router's
// OnRequestDone hook): a deployment with a request in flight, such as an
// open WebSocket or a long stream, is not idle, and its idle time counts
// from the end of its last request.
func (c *Controller) RequestDone(deployment string) {
	if l := c.liveByID(deployment); l != nil {
		l.touch()
		l.inflight.Add(-1)
	}
}

// liveByID returns the live deployment with the id, without taking c.mu:
// it runs twice per proxied request.
func (c *Controller) liveByID(deployment string) *liveDeployment {
	if l, ok := c.live.Load(deployment); ok {
		return l.(*liveDeployment)
	}
	return nil
}

// liveDeployments returns the live deployments that keep reports true of.
func (c *Controller) liveDeployments(keep func(*liveDeployment) bool) []*liveDeployment {
	var out []*liveDeployment
	c.live.Range(func(_, v any) bool {
		if l := v.(*liveDeployment); keep(l) {
			out = append(out, l)
		}
		return true
	})
	return out
}

// idle reports whether l has had no request in flight for its idle
// timeout.
func (l *liveDeployment) idle() bool {
	return l.health.Idle > 0 && l.inflight.Load() <= 0 && time.Since(time.Unix(0, l.lastUsed.Load())) >= l.health.Idle
}

// reaper puts idle deployments to sleep.
func (c *Controller) reaper() {
	defer c.wg.Done()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		for _, l := range c.liveDeployments((*liveDeployment).idle) {
			c.sleep(l)
		}
	}
}

// sleep stops an idle deployment's instance.
func (c *Controller) sleep(l *liveDeployment) {
	l.mu.Lock()
	if l.asleep || l.waking != nil || l.handle == nil || !l.ready || Status(l.d.Status) != Running || !l.idle() {
		l.mu.Unlock()
		return
	}
	l.asleep = true
	cancel := l.cancel
	l.cancel = nil
	h, inst := l.handle, l.inst
	l.handle = nil
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if d := c.driverOf(h); d == nil {
		c.log.Error("scaling to zero", "instance", inst.ID, "err", errNoDriver(h))
	} else if err := d.Stop(context.Background(), h); err != nil {
		c.log.Error("scaling to zero", "instance", inst.ID, "err", err)
	}
	l.stopTail()
	c.store.UpdateInstance(context.Background(), inst.ID, inst.State, "idle")
	c.instanceStopped(l.d.ID)
	c.event(l.d.ID, store.LogRuntime, "scaled to zero after %s without requests", l.health.Idle)
	if o := c.cfg.Observer; o != nil {
		o.Slept(l.d)
	}
	c.prepareAhead(l, time.Now())
}

// wake starts an instance for a sleeping deployment, or joins the wake in
// progress, and waits for it (or ctx).
func (l *liveDeployment) wake(ctx context.Context) error {
	l.mu.Lock()
	if !l.asleep {
		l.mu.Unlock()
		return nil
	}
	if l.waking == nil {
		l.waking = make(chan struct{})
		go l.c.doWake(l, l.waking)
	}
	ch := l.waking
	l.held++
	l.mu.Unlock()
	select {
	case <-ch:
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.wakeErr
	case <-ctx.Done():
		return fmt.Errorf("waiting for deployment %s to wake: %w", l.d.ID, ctx.Err())
	}
}

func (c *Controller) doWake(l *liveDeployment, done chan struct{}) {
	start := time.Now()
	prepared, later, err := c.wakeInstance(l)
	dur := time.Since(start)
	l.mu.Lock()
	l.wakeErr = err
	if err == nil {
		l.asleep = false
	}
	l.waking = nil
	held := l.held
	l.held = 0
	restored := err == nil && l.restored
	l.mu.Unlock()
	close(done)
	for _, f := range later {
		f()
	}
	c.store.RecordWake(context.Background(), store.Wake{DeploymentID: l.d.ID, StartedAt: start, Duration: dur, OK: err == nil,
		Prepared: prepared, Restored: restored})
	if o := c.cfg.Observer; o != nil {
		o.Woke(l.d, dur, held, err)
	}
	if err != nil {
		c.event(l.d.ID, store.LogRuntime, "wake failed after %s: %v", dur.Round(time.Millisecond), err)
		return
	}
	var how []string
	if prepared {
		how = append(how, "a sandbox prepared ahead")
	}
	if restored {
		how = append(how, "resumed from a snapshot")
	}
	line := "woke in " + dur.Round(time.Millisecond).String()
	if len(how) > 0 {
		line += " (" + strings.Join(how, ", ") + ")"
	}
	c.event(l.d.ID, store.LogRuntime, "%s", line)
	c.supervise(l)
	c.saveSnapshot(l)
}

// wakeInstance starts l's instance — the one prepared ahead, if there is
// one and it starts, else a new one — and waits for its first passed
// health check. It reports whether the prepared one served, and what to
// record once the held requests are released.
func (c *Controller) wakeInstance(l *liveDeployment) (prepared bool, later []func(), err error) {
	if e := c.takePrepared(l.d.ID); e != nil {
		if err := c.startPrepared(l, e, &later); err != nil {
			c.event(l.d.ID, store.LogRuntime, "the sandbox prepared ahead did not start (%v); starting a new one", err)
		} else {
			prepared = true
		}
	}
	if !prepared {
		// A sandbox that does not start within the window (a VM whose
		// boot stalls) fails the wake rather than holding its requests
		// for ever.
		ctx, cancel := context.WithTimeout(c.ctx, l.health.Window)
		err := c.startInstance(ctx, l)
		cancel()
		if err != nil {
			return false, nil, err
		}
	}
	if err := c.waitStarted(c.ctx, l, &later); err != nil {
		for _, f := range later { // the start, before the stop
			f()
		}
		c.stopInstanceOf(l)
		return prepared, nil, err
	}
	return prepared, later, nil
}

// Wakes returns the deployment's most recent wake latencies.
func (c *Controller) Wakes(ctx context.Context, id string, limit int) ([]store.Wake, error) {
	return c.store.ListWakes(ctx, id, limit)
}

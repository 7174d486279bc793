package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/store"
)

// liveDeployment is a deployment with an instance that the controller
// supervises. Its backend is what the router dials.
type liveDeployment struct {
	c      *Controller
	d      store.Deployment
	health project.Health

	mu     sync.Mutex
	handle *runtime.Handle
	inst   store.Instance
	tail   *tailer
	ready  bool               // passed its first health check
	cancel context.CancelFunc // ends supervision
	// restored: the current instance resumed from the deployment's
	// snapshot rather than starting the app.
	restored bool

	// Scale to zero: lastUsed is the time of the last request's start or
	// end (Unix ns), inflight how many are under way;
	// asleep means the instance was stopped for idleness and the next
	// request wakes it; waking is closed when a wake in progress ends.
	lastUsed atomic.Int64
	inflight atomic.Int64 // requests the router has not finished
	asleep   bool
	waking   chan struct{}
	wakeErr  error
	held     int // dials waiting on the wake in progress
}

// DialContext implements router.Backend.
// It counts as activity, and wakes a deployment scaled to zero: the dial
// is held until the new instance passes its first health check.
func (l *liveDeployment) DialContext(ctx context.Context) (net.Conn, error) {
	l.touch()
	l.mu.Lock()
	asleep := l.asleep
	l.mu.Unlock()
	if asleep {
		if err := l.wake(ctx); err != nil {
			return nil, err
		}
	}
	return l.dialInstance(ctx)
}

// dialInstance connects to the current instance, whatever its state.
func (l *liveDeployment) dialInstance(ctx context.Context) (net.Conn, error) {
	l.mu.Lock()
	h := l.handle
	l.mu.Unlock()
	if h == nil {
		return nil, errors.New("no instance running")
	}
	d := l.c.driverOf(h)
	if d == nil {
		return nil, errNoDriver(h)
	}
	return d.Dial(ctx, h, l.health.Port)
}

// probe sends one health check.
func (l *liveDeployment) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.health.Timeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return l.dialInstance(ctx) },
		DisableKeepAlives: true,
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://instance"+l.health.Path, nil)
	req.Header.Set("User-Agent", "slipway-health-check")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("GET %s did not answer within %s", l.health.Path, l.health.Timeout)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("GET %s: %w", l.health.Path, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("GET %s answered %d", l.health.Path, resp.StatusCode)
	}
	return nil
}

// deploy runs the DEPLOYING phase: start an instance (or re-attach to the
// one a previous server started), probe it until healthy within the
// deployment window, then make it RUNNING and route to it.
func (c *Controller) deploy(d store.Deployment) {
	ctx, done := c.track(d.ID)
	defer done()
	settings, err := c.settingsOf(ctx, d)
	if err != nil {
		c.fail(ctx, &d, "internal error: "+err.Error())
		return
	}
	l := &liveDeployment{c: c, d: d, health: c.healthOf(settings)}
	if !c.attach(ctx, l) {
		if err := c.startInstance(ctx, l); err != nil {
			if ctx.Err() == nil {
				c.fail(ctx, &d, "could not start the app: "+err.Error())
			}
			return
		}
	}
	// The window opens once the sandbox runs: pulling and unpacking a large
	// image does not count against the app.
	deadline := time.Now().Add(l.health.Window)
	if err := c.waitHealthy(ctx, l, deadline, nil); err != nil {
		if ctx.Err() != nil {
			return
		}
		c.stopLive(context.Background(), l)
		c.fail(context.Background(), &d, err.Error())
		return
	}
	// Healthy: persist the promotion, route to the instance, then announce
	// RUNNING, so whoever sees RUNNING can reach the app at once.
	if d.Promote {
		c.autoPromote(ctx, d)
	}
	l.mu.Lock()
	l.ready = true
	l.mu.Unlock()
	c.routeDeployment(ctx, d)
	if err := c.transition(ctx, &d, Running, store.DeploymentPatch{}); err != nil {
		c.stopLive(context.Background(), l)
		c.routeDeployment(context.Background(), d)
		return
	}
	l.d = d
	c.supervise(l)
	c.saveSnapshot(l)
	c.retire(ctx, d.EnvironmentID)
}

// waitHealthy probes at once, then after 1 ms, each wait half as long
// again as the one before up to 1 s, until the first success, the
// instance's exit, or the deadline. The passed check is recorded at once,
// or, with later, appended to it (a wake records it once the held
// requests are on their way).
func (c *Controller) waitHealthy(ctx context.Context, l *liveDeployment, deadline time.Time, later *[]func()) error {
	l.mu.Lock()
	h := l.handle
	l.mu.Unlock()
	exited := make(chan runtime.Status, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d := c.driverOf(h); d != nil {
		go func() {
			st, err := d.Wait(wctx, h)
			if err == nil {
				exited <- st
			}
		}()
	}
	start := time.Now()
	delay := time.Millisecond
	var last error
	for attempt := 1; ; attempt++ {
		pctx, pcancel := context.WithDeadline(ctx, deadline)
		err := l.probe(pctx)
		pcancel()
		if err == nil {
			took := time.Since(start)
			record := func() {
				c.recordProbe(l, 0, nil)
				kind := store.LogRuntime
				if Status(l.d.Status) == Deploying {
					kind = store.LogBuild
				}
				c.event(l.d.ID, kind, "health check passed: GET %s on port %d answered after %s (%d probes)",
					l.health.Path, l.health.Port, took.Round(time.Millisecond), attempt)
			}
			if later != nil {
				*later = append(*later, record)
			} else {
				record()
			}
			return nil
		}
		last = err
		select {
		case st := <-exited:
			c.recordExit(l, st)
			return exitedEarly(l, st)
		default:
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			c.recordProbe(l, l.health.Failures, err)
			return fmt.Errorf("the app did not answer GET %s on port %d within the deployment window (%s)%s; last error: %v",
				l.health.Path, l.health.Port, l.health.Window, c.portHint(l), last)
		}
		if wait > delay {
			wait = delay
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case st := <-exited:
			c.recordExit(l, st)
			return exitedEarly(l, st)
		case <-time.After(wait):
		}
		delay = min(delay*3/2, time.Second)
	}
}

// PortLister is implemented by drivers that can tell which ports an
// instance listens on.
type PortLister interface {
	ListeningPorts(ctx context.Context, h *runtime.Handle) ([]int, error)
}

// portHint explains a silent app: the ports it does listen on, if any.
func (c *Controller) portHint(l *liveDeployment) string {
	l.mu.Lock()
	h := l.handle
	l.mu.Unlock()
	pl, ok := c.driverOf(h).(PortLister)
	if !ok || h == nil {
		return ""
	}
	ports, err := pl.ListeningPorts(context.Background(), h)
	if err != nil {
		return ""
	}
	if len(ports) == 0 {
		return ": it listens on no TCP port"
	}
	var s []string
	for _, p := range ports {
		s = append(s, strconv.Itoa(p))
	}
	return fmt.Sprintf(": it listens on port %s instead — make it listen on $PORT (%d) on 0.0.0.0", strings.Join(s, ", "), l.health.Port)
}

// recordExit persists how l's current instance ended, for the API.
func (c *Controller) recordExit(l *liveDeployment, st runtime.Status) {
	l.mu.Lock()
	id := l.inst.ID
	l.mu.Unlock()
	if err := c.store.SetInstanceExit(context.Background(), id, st.ExitCode, st.OOMKilled, st.ExitedAt); err != nil {
		c.log.Error("recording an instance's exit", "instance", id, "err", err)
	}
}

func exitedEarly(l *liveDeployment, st runtime.Status) error {
	time.Sleep(300 * time.Millisecond) // let the log tailer catch the app's last words
	return fmt.Errorf("the app exited (%s) before answering GET %s on port %d; see its runtime logs", exitText(st), l.health.Path, l.health.Port)
}

func exitText(st runtime.Status) string {
	if st.OOMKilled {
		return fmt.Sprintf("out of memory: killed at its memory limit, exit code %d", st.ExitCode)
	}
	if st.ExitCode >= 0 {
		return fmt.Sprintf("exit code %d", st.ExitCode)
	}
	return "exit code unknown"
}

// startInstance starts a new instance of l's deployment, persisting it
// before and after the driver acts. It runs with what the deployment
// captured when it was created (see settingsOf), however the project has
// changed since.
func (c *Controller) startInstance(ctx context.Context, l *liveDeployment) error {
	inst, spec, driver, err := c.newInstance(ctx, l.d, "starting")
	if err != nil {
		return err
	}
	id := inst.ID
	l.tailFrom(inst) // logs flow from the first byte, also when the start fails
	h, err := c.startFrom(ctx, l.d.ID, &spec, func(s runtime.Spec) (*runtime.Handle, error) { return driver.Start(ctx, s) })
	if err != nil {
		c.store.UpdateInstance(context.Background(), id, nil, "stopped")
		l.stopTail()
		return err
	}
	state, _ := json.Marshal(h)
	if err := c.store.UpdateInstance(ctx, id, state, "running"); err != nil {
		driver.Stop(context.Background(), h)
		return fmt.Errorf("internal error: %v", err)
	}
	inst.State, inst.Status = state, "running"
	restored := spec.Snapshot != ""
	l.mu.Lock()
	l.handle, l.inst, l.restored = h, inst, restored
	l.mu.Unlock()
	c.register(l)
	if restored {
		c.event(l.d.ID, store.LogRuntime, "instance %s started from the deployment's snapshot", id)
	} else {
		c.event(l.d.ID, store.LogRuntime, "instance %s started", id)
	}
	return nil
}

// newInstance records a new instance of deployment d with status (persisted
// before the driver acts) and returns it with the spec to start it with and
// the driver of its sandbox kind:
// what d captured when it was created (see settingsOf), however the
// project has changed since.
func (c *Controller) newInstance(ctx context.Context, d store.Deployment, status string) (store.Instance, runtime.Spec, runtime.Driver, error) {
	settings, err := c.settingsOf(ctx, d)
	if err != nil {
		return store.Instance{}, runtime.Spec{}, nil, err
	}
	driver, err := c.driverFor(project.SandboxOf(settings, c.cfg.Sandbox))
	if err != nil {
		return store.Instance{}, runtime.Spec{}, nil, err
	}
	vars, err := c.varsOf(ctx, d)
	if err != nil {
		return store.Instance{}, runtime.Spec{}, nil, err
	}
	id := store.NewID()
	logDir := filepath.Join(c.cfg.DataDir, "logs", d.ID)
	inst, err := c.store.CreateInstance(ctx, store.Instance{
		ID: id, DeploymentID: d.ID, Driver: driver.Name(), Status: status, Health: store.InstanceHealth{State: HealthStarting},
		StdoutPath: filepath.Join(logDir, id+".stdout"), StderrPath: filepath.Join(logDir, id+".stderr"),
	})
	if err != nil {
		return store.Instance{}, runtime.Spec{}, nil, fmt.Errorf("internal error: %v", err)
	}
	if err := ensureDir(logDir); err != nil {
		return store.Instance{}, runtime.Spec{}, nil, err
	}
	env := make([]string, 0, len(vars)+5)
	for _, v := range vars {
		env = append(env, v.Name+"="+v.Value)
	}
	spec := runtime.Spec{
		ID:      id,
		Image:   d.Image,
		Group:   d.ProjectID,
		Command: startCommand(d.StartCommand),
		Env: append(env,
			"SLIPWAY_DEPLOYMENT_ID="+d.ID,
			"SLIPWAY_PROJECT="+d.ProjectName,
			"SLIPWAY_ENVIRONMENT="+d.EnvironmentName,
			"SLIPWAY_GIT_COMMIT_SHA="+d.CommitSHA,
			"SLIPWAY_GIT_BRANCH="+d.Branch,
		),
		Port: c.healthOf(settings).Port,
		Limits: runtime.Limits{MemoryBytes: settings.MemoryBytes, CPUMillis: settings.CPUMillis, Pids: settings.Pids,
			DiskBytes: settings.DiskBytes},
		StdoutPath: inst.StdoutPath,
		StderrPath: inst.StderrPath,
		Snapshot:   c.snapshotFor(d.ID, settings, driver),
	}
	return inst, spec, driver, nil
}

// attach re-attaches l to a live instance of its deployment recorded by a
// previous server, if there is one whose process still runs.
func (c *Controller) attach(ctx context.Context, l *liveDeployment) bool {
	insts, err := c.store.ListInstances(ctx, l.d.ID)
	if err != nil {
		return false
	}
	live := insts[:0]
	for _, in := range insts {
		if in.Status == "running" || in.Status == "starting" {
			live = append(live, in)
		}
	}
	line, ok := c.reattach(ctx, l, live)
	if ok {
		c.appendEvent(line)
	}
	return ok
}

// markStopped stops an instance (if h is nil, by its id alone: a server
// killed inside Driver.Start left no state, but maybe a process) and
// records it stopped.
func (c *Controller) markStopped(in store.Instance, h *runtime.Handle) {
	if h == nil {
		h = &runtime.Handle{ID: in.ID, Driver: in.Driver}
	}
	if d := c.driverOf(h); d != nil {
		if err := d.Stop(context.Background(), h); err != nil {
			c.log.Warn("stopping a stale instance", "instance", in.ID, "err", err)
		}
	}
	c.store.UpdateInstance(context.Background(), in.ID, in.State, "stopped")
	c.instanceStopped(in.DeploymentID)
}

func (c *Controller) register(l *liveDeployment) {
	l.touch()
	c.mu.Lock()
	c.live.Store(l.d.ID, l)
	c.mu.Unlock()
}

// supervise watches a RUNNING deployment's instance: an exit is noticed at
// once, failing health checks are counted, and either restarts the instance
// with a bounded backoff.
func (c *Controller) supervise(l *liveDeployment) {
	ctx, cancel := context.WithCancel(c.ctx)
	l.mu.Lock()
	l.cancel = cancel
	l.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		backoff := time.Second
		for ctx.Err() == nil {
			l.mu.Lock()
			inst := l.inst.ID
			l.mu.Unlock()
			why := c.watch(ctx, l)
			if ctx.Err() != nil {
				return
			}
			c.event(l.d.ID, store.LogRuntime, "instance %s unhealthy: %s; restarting in %s", inst, why.Reason, backoff)
			if o := c.cfg.Observer; o != nil {
				o.Restarted(l.d, why)
			}
			c.stopInstanceOf(l)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			if backoff < time.Minute {
				backoff *= 2
			}
			if err := c.startInstance(ctx, l); err != nil {
				c.event(l.d.ID, store.LogRuntime, "restart failed: %v", err)
				continue
			}
			if err := c.waitStarted(ctx, l, nil); err != nil {
				c.event(l.d.ID, store.LogRuntime, "restarted instance not healthy: %v", err)
				continue
			}
			c.event(l.d.ID, store.LogRuntime, "instance restarted and healthy")
			c.saveSnapshot(l)
			backoff = time.Second
		}
	}()
}

// watch returns why the current instance should be restarted: its process
// exited, or it failed the configured number of health checks in a row.
func (c *Controller) watch(ctx context.Context, l *liveDeployment) Restart {
	l.mu.Lock()
	h := l.handle
	l.mu.Unlock()
	if h == nil {
		return Restart{Crashed: true, Reason: "no instance is running"}
	}
	exited := make(chan runtime.Status, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d := c.driverOf(h); d != nil {
		go func() {
			if st, err := d.Wait(wctx, h); err == nil {
				exited <- st
			}
		}()
	}
	failures := 0
	tick := time.NewTicker(l.health.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return Restart{}
		case st := <-exited:
			c.recordExit(l, st)
			return Restart{Crashed: true, Reason: "the app exited (" + exitText(st) + ")"}
		case <-tick.C:
			err := l.probe(ctx)
			if ctx.Err() != nil {
				return Restart{}
			}
			if err != nil {
				failures++
				c.recordProbe(l, failures, err)
				c.event(l.d.ID, store.LogRuntime, "health check failed (%d/%d): %v", failures, l.health.Failures, err)
				if failures >= l.health.Failures {
					return Restart{Reason: fmt.Sprintf("%d consecutive health checks failed (last: %v)", failures, err)}
				}
				continue
			}
			if failures > 0 {
				c.event(l.d.ID, store.LogRuntime, "health check passed after %d failed", failures)
			}
			failures = 0
			c.recordProbe(l, 0, nil)
		}
	}
}

// stopInstanceOf stops l's current instance and records it.
func (c *Controller) stopInstanceOf(l *liveDeployment) {
	l.mu.Lock()
	h, inst := l.handle, l.inst
	l.handle = nil
	l.mu.Unlock()
	if h == nil {
		return
	}
	if d := c.driverOf(h); d == nil {
		c.log.Error("stopping instance", "instance", inst.ID, "err", errNoDriver(h))
	} else if err := d.Stop(context.Background(), h); err != nil {
		c.log.Error("stopping instance", "instance", inst.ID, "err", err)
	}
	l.stopTail()
	c.store.UpdateInstance(context.Background(), inst.ID, inst.State, "stopped")
	c.instanceStopped(l.d.ID)
}

// instanceStopped tells Config.InstanceStopped that an instance of
// deployment has stopped.
func (c *Controller) instanceStopped(deployment string) {
	if f := c.cfg.InstanceStopped; f != nil {
		f(deployment)
	}
}

// stopLive ends supervision and stops the instance.
func (c *Controller) stopLive(ctx context.Context, l *liveDeployment) {
	l.mu.Lock()
	cancel := l.cancel
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.stopInstanceOf(l)
	c.mu.Lock()
	c.live.CompareAndDelete(l.d.ID, l)
	c.mu.Unlock()
}

// stopInstances stops whatever runs for deployment id.
func (c *Controller) stopInstances(ctx context.Context, id string) {
	if l := c.liveByID(id); l != nil {
		c.stopLive(ctx, l)
	}
	c.invalidatePrepared(id)
	defer c.removeSnapshots(id) // once no instance is being saved
	insts, _ := c.store.ListInstances(ctx, id)
	for _, in := range insts {
		if in.Status == "running" || in.Status == "starting" {
			var h runtime.Handle
			if json.Unmarshal(in.State, &h) == nil && h.ID != "" {
				c.markStopped(in, &h)
			} else {
				c.markStopped(in, nil)
			}
		}
	}
}

var _ router.Backend = (*liveDeployment)(nil)

package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/store"
)

// reconcile brings the controller in line with the store after a start:
//
//   - PENDING deployments are queued again;
//   - INITIALIZING and BUILDING ones were interrupted by a crash: they are
//     retried (the build cache makes that cheap) up to MaxRetries times,
//     then failed with a reason that says so;
//   - DEPLOYING ones resume: a live instance is re-attached and probed, a
//     missing one is started again, within the original deployment window;
//   - RUNNING ones are re-attached to their instances, never restarted; one
//     scaled to zero stays asleep until a request comes; one whose instance
//     is gone gets a new instance;
//   - sandboxes prepared ahead by the previous server are discarded, and
//     the deployments asleep get theirs again, the last to fall asleep
//     first (in the background, see prepareAtStart);
//   - every deployment's hostnames are routed as its status says.
//
// It reads the store in a handful of queries whatever the number of
// deployments (see loadSnapshot), writes only where something changes, and
// installs every route in one swap of the routing table before any
// background work starts, so that work's own routing is never overwritten.
func (c *Controller) reconcile(ctx context.Context) error {
	s, err := c.loadSnapshot(ctx)
	if err != nil {
		return err
	}
	var (
		queue    []store.Deployment // to build, oldest first
		deploys  []store.Deployment // DEPLOYING: resume in the background
		restarts []*liveDeployment  // RUNNING with no instance left
		attach   []*liveDeployment  // RUNNING with an instance recorded live
		attached []*liveDeployment  // … and re-attached to it
		sleeping []sleeper          // RUNNING and scaled to zero
		lines    []store.LogLine
	)
	healths := map[string]project.Health{} // of deployments without a capture, by project
	healthFor := func(d *store.Deployment) (project.Health, bool) {
		if d.Captured != nil {
			return c.healthOf(d.Captured.Settings), true
		}
		h, ok := healths[d.ProjectID]
		if !ok {
			p, found := s.projects[d.ProjectID]
			if !found {
				return project.Health{}, false
			}
			h = c.healthOf(p.Settings)
			healths[d.ProjectID] = h
		}
		return h, true
	}
	// Oldest first, so newer deployments are routed last and queued last.
	for i := range s.deployments {
		d := &s.deployments[i]
		switch Status(d.Status) {
		case Pending:
			queue = append(queue, *d)
		case Initializing, Building:
			attempts := d.Attempts + 1
			if attempts > c.cfg.MaxRetries {
				reason := fmt.Sprintf("the server restarted %d times while this deployment was %s; giving up", attempts, d.Status)
				if err := c.transition(ctx, d, Failed, store.DeploymentPatch{FailureReason: &reason}); err != nil {
					c.log.Error("failing deployment", "deployment", d.ID, "err", err)
				}
				continue
			}
			line := eventLine(d.ID, store.LogBuild, "server restarted while %s; retrying (attempt %d of %d)", d.Status, attempts, c.cfg.MaxRetries)
			updated, err := c.store.UpdateDeployment(ctx, d.ID, d.Status, store.DeploymentPatch{Attempts: &attempts}, line)
			if err != nil {
				return err
			}
			*d = updated
			c.hub.notify(d.ID)
			queue = append(queue, *d)
		case Deploying:
			deploys = append(deploys, *d)
		case Running:
			h, ok := healthFor(d)
			if !ok {
				continue // its project is gone (it cannot be: deletes cascade); routed as having no instance
			}
			l := &liveDeployment{c: c, d: *d, health: h}
			switch {
			case len(s.live[d.ID]) > 0:
				attach = append(attach, l)
			case asleep(s.latest[d.ID]):
				// Scaled to zero: it stays asleep until a request comes.
				l.asleep, l.ready = true, true
				c.register(l)
				sleeping = append(sleeping, sleeper{l, sleptAt(s.latest[d.ID])})
			default:
				restarts = append(restarts, l)
			}
		default:
			// A terminal deployment has no business running.
			for _, in := range s.live[d.ID] {
				c.stopRecorded(in)
			}
		}
	}

	// Re-attach in parallel: a driver may need a system call or a helper
	// process per instance.
	var mu sync.Mutex
	parallel(len(attach), 8, func(i int) {
		l := attach[i]
		if line, ok := c.reattach(ctx, l, s.live[l.d.ID]); ok {
			mu.Lock()
			attached = append(attached, l)
			lines = append(lines, line)
			mu.Unlock()
			return
		}
		// The live records were stale; a newer one may say it sleeps.
		if asleep(s.latest[l.d.ID]) {
			l.asleep, l.ready = true, true
			c.register(l)
			mu.Lock()
			sleeping = append(sleeping, sleeper{l, sleptAt(s.latest[l.d.ID])})
			mu.Unlock()
			return
		}
		mu.Lock()
		restarts = append(restarts, l)
		mu.Unlock()
	})
	if len(lines) > 0 {
		if err := c.store.AppendLogs(ctx, lines); err != nil {
			c.log.Error("writing log", "err", err)
		}
		for _, l := range lines {
			c.hub.notify(l.DeploymentID)
		}
	}

	// An environment whose current deployment was stopped by a server that
	// went down before it fell back falls back now.
	c.fallBackStopped(ctx, s)

	// Every hostname in one swap, oldest deployment first as before.
	c.cfg.Routes.Update(func(m map[string]router.Route) {
		for _, d := range s.deployments {
			route := c.routeFor(d)
			for _, h := range c.hostsOf(d, s.environments[d.EnvironmentID], s.domains) {
				m[h] = route
			}
		}
	})

	// Background work, which routes as it goes.
	for _, l := range attached {
		c.supervise(l)
	}
	for _, l := range restarts {
		c.restart(l)
	}
	for _, d := range deploys {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.deploy(d)
		}()
	}
	for _, d := range queue {
		c.enqueue(d)
	}
	c.prepareAtStart(ctx, sleeping)
	return nil
}

// asleep reports whether in, the newest instance of a RUNNING deployment,
// says the deployment sleeps: stopped for idleness, or a sandbox prepared
// ahead for its next wake (the previous server's, which is discarded).
func asleep(in store.Instance) bool {
	return in.Status == "idle" || preparedStatus(in.Status)
}

// sleptAt is when the deployment whose newest instance is in (asleep)
// fell asleep, as near as the store knows.
func sleptAt(in store.Instance) time.Time {
	if !in.StoppedAt.IsZero() {
		return in.StoppedAt
	}
	return in.CreatedAt
}

// fallBackStopped makes the newest RUNNING deployment of each environment
// whose current deployment is STOPPED or FAILED its current one (see
// fallBack), in s as in the store.
func (c *Controller) fallBackStopped(ctx context.Context, s *snapshot) {
	status := make(map[string]Status, len(s.deployments))
	for _, d := range s.deployments {
		status[d.ID] = Status(d.Status)
	}
	for id, env := range s.environments {
		st := status[env.CurrentDeploymentID]
		if env.CurrentDeploymentID == "" || !st.Terminal() {
			continue
		}
		next, err := c.store.FallBack(ctx, env.ID, env.CurrentDeploymentID, string(Running))
		if err != nil {
			c.log.Error("falling back from a stopped deployment", "deployment", env.CurrentDeploymentID, "err", err)
			continue
		}
		if next == "" {
			continue
		}
		c.event(next, store.LogRuntime, "now current on %s: the current deployment %s was %s, and this is the newest RUNNING deployment left",
			env.Name, env.CurrentDeploymentID, strings.ToLower(string(st)))
		env.CurrentDeploymentID = next
		s.environments[id] = env
	}
}

// snapshot is what reconcile reads from the store, in one query each.
type snapshot struct {
	deployments  []store.Deployment           // oldest first
	projects     map[string]store.Project     // by id
	environments map[string]store.Environment // by id
	domains      map[string][]store.Domain    // by environment id
	live         map[string][]store.Instance  // instances recorded starting or running, by deployment, oldest first
	latest       map[string]store.Instance    // the newest instance of each RUNNING deployment
}

func (c *Controller) loadSnapshot(ctx context.Context) (*snapshot, error) {
	s := &snapshot{
		projects:     map[string]store.Project{},
		environments: map[string]store.Environment{},
		domains:      map[string][]store.Domain{},
		live:         map[string][]store.Instance{},
	}
	var err error
	if s.deployments, err = c.store.ListAllDeployments(ctx); err != nil {
		return nil, fmt.Errorf("listing deployments: %w", err)
	}
	projects, err := c.store.ListProjects(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing projects: %w", err)
	}
	for _, p := range projects {
		s.projects[p.ID] = p
	}
	envs, err := c.store.ListAllEnvironments(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing environments: %w", err)
	}
	for _, e := range envs {
		s.environments[e.ID] = e
	}
	domains, err := c.store.ListDomains(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("listing domains: %w", err)
	}
	for _, d := range domains {
		s.domains[d.EnvironmentID] = append(s.domains[d.EnvironmentID], d)
	}
	live, err := c.store.ListLiveInstances(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing live instances: %w", err)
	}
	for _, in := range live {
		s.live[in.DeploymentID] = append(s.live[in.DeploymentID], in)
	}
	if s.latest, err = c.store.LatestInstances(ctx, string(Running)); err != nil {
		return nil, fmt.Errorf("listing instances: %w", err)
	}
	return s, nil
}

// reattach re-attaches l to the first of insts (its instances recorded
// starting or running, oldest first) whose process still runs, and stops
// and records stopped the others. It returns the event to log on success.
func (c *Controller) reattach(ctx context.Context, l *liveDeployment, insts []store.Instance) (store.LogLine, bool) {
	var line store.LogLine
	attached := false
	for _, in := range insts {
		var h runtime.Handle
		if attached || json.Unmarshal(in.State, &h) != nil || c.driverOf(&h) == nil {
			c.markStopped(in, nil)
			continue
		}
		d := c.driverOf(&h)
		if err := d.Recover(ctx, &h); err != nil {
			c.markStopped(in, &h)
			continue
		}
		if st, err := d.Inspect(ctx, &h); err != nil || !st.Running {
			c.tailOnce(l.d, in)
			c.markStopped(in, &h)
			continue
		}
		l.mu.Lock()
		l.handle, l.inst = &h, in
		l.ready = Status(l.d.Status) == Running
		l.mu.Unlock()
		l.tailFrom(in)
		c.register(l)
		line = eventLine(l.d.ID, store.LogRuntime, "instance %s re-attached after a server restart", in.ID)
		attached = true
	}
	return line, attached
}

// stopRecorded stops an instance recorded live (by its handle if one was
// persisted, else by its id alone) and records it stopped.
func (c *Controller) stopRecorded(in store.Instance) {
	var h runtime.Handle
	if json.Unmarshal(in.State, &h) == nil && h.ID != "" {
		c.markStopped(in, &h)
	} else {
		c.markStopped(in, nil)
	}
}

// restart starts a fresh instance, in the background, for a RUNNING
// deployment whose instance died while the server was down; the
// deployment stays RUNNING.
func (c *Controller) restart(l *liveDeployment) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.event(l.d.ID, store.LogRuntime, "instance gone after a server restart; starting a new one")
		if err := c.startInstance(c.ctx, l); err != nil {
			c.event(l.d.ID, store.LogRuntime, "restart failed: %v", err)
		} else if err := c.waitHealthy(c.ctx, l, time.Now().Add(l.health.Window), nil); err != nil {
			c.event(l.d.ID, store.LogRuntime, "restarted instance not healthy: %v", err)
		}
		l.mu.Lock()
		l.ready = true
		l.mu.Unlock()
		c.supervise(l)
		c.routeDeployment(c.ctx, l.d)
	}()
}

// parallel calls fn(0) … fn(n-1) on at most width goroutines and returns
// when all calls have.
func parallel(n, width int, fn func(i int)) {
	if n < width {
		width = n
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < width; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

package deploy

import (
	"context"
	"fmt"
	"time"

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
//     whose instance is gone gets a new instance;
//   - every deployment's hostnames are routed as its status says.
func (c *Controller) reconcile(ctx context.Context) error {
	var all []store.Deployment
	var before time.Time
	for {
		page, err := c.store.ListDeployments(ctx, store.DeploymentFilter{Before: before, Limit: 500})
		if err != nil {
			return err
		}
		all = append(all, page...)
		if len(page) < 500 {
			break
		}
		before = page[len(page)-1].CreatedAt
	}
	// Oldest first, so newer deployments are routed last and queued last.
	for i := len(all) - 1; i >= 0; i-- {
		d := all[i]
		switch Status(d.Status) {
		case Pending:
			c.enqueue(d.ID)
		case Initializing, Building:
			attempts := d.Attempts + 1
			if attempts > c.cfg.MaxRetries {
				c.fail(ctx, &d, fmt.Sprintf("the server restarted %d times while this deployment was %s; giving up", attempts, d.Status))
				continue
			}
			if _, err := c.store.UpdateDeployment(ctx, d.ID, d.Status, store.DeploymentPatch{Attempts: &attempts}); err != nil {
				return err
			}
			c.event(d.ID, store.LogBuild, "server restarted while %s; retrying (attempt %d of %d)", d.Status, attempts, c.cfg.MaxRetries)
			c.enqueue(d.ID)
		case Deploying:
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.deploy(d)
			}()
		case Running:
			c.resume(ctx, d)
		default:
			c.stopInstances(ctx, d.ID) // a terminal deployment has no business running
			c.routeDeployment(ctx, d)
		}
	}
	return nil
}

// resume re-attaches a RUNNING deployment to its instance, or starts a new
// one when the instance is gone, and routes to it.
func (c *Controller) resume(ctx context.Context, d store.Deployment) {
	p, err := c.store.GetProjectByID(ctx, d.ProjectID)
	if err != nil {
		return
	}
	l := &liveDeployment{c: c, d: d, health: c.healthOf(p)}
	if c.attach(ctx, l) {
		c.supervise(l)
		c.routeDeployment(ctx, d)
		return
	}
	if insts, err := c.store.ListInstances(ctx, d.ID); err == nil && len(insts) > 0 && insts[len(insts)-1].Status == "idle" {
		// It was scaled to zero: it stays asleep until a request comes.
		l.asleep, l.ready = true, true
		c.register(l)
		c.routeDeployment(ctx, d)
		return
	}
	// The instance died while the server was down: start a fresh one in
	// the background; the deployment stays RUNNING.
	c.routeDeployment(ctx, d)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.event(d.ID, store.LogRuntime, "instance gone after a server restart; starting a new one")
		if err := c.startInstance(c.ctx, l, p); err != nil {
			c.event(d.ID, store.LogRuntime, "restart failed: %v", err)
		} else if err := c.waitHealthy(c.ctx, l, time.Now().Add(l.health.window)); err != nil {
			c.event(d.ID, store.LogRuntime, "restarted instance not healthy: %v", err)
		}
		l.mu.Lock()
		l.ready = true
		l.mu.Unlock()
		c.supervise(l)
		c.routeDeployment(c.ctx, d)
	}()
}

package deploy

import (
	"context"
	"fmt"
	"strings"

	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/store"
)

// Routes is the routing table the lifecycle writes (router.Table).
type Routes interface {
	// Update applies fn to the table's routes as one atomic swap.
	Update(fn func(map[string]router.Route))
}

// hostsOf is project.Hosts.Of with the custom domains of every
// environment (by environment id) at hand: it queries nothing.
func (c *Controller) hostsOf(d store.Deployment, env store.Environment, domains map[string][]store.Domain) []string {
	return c.hosts.Of(d, env, domains[env.ID])
}

// routeDeployment points d's hostnames at it, as its status says, in one
// atomic swap of the routing table.
func (c *Controller) routeDeployment(ctx context.Context, d store.Deployment) {
	c.routeMu.Lock()
	defer c.routeMu.Unlock()
	route := c.routeFor(d)
	hosts := c.hosts.Lookup(ctx, c.store, d)
	c.cfg.Routes.Update(func(m map[string]router.Route) {
		for _, h := range hosts {
			m[h] = route
		}
	})
}

// routeFor returns the route for d in its current status.
func (c *Controller) routeFor(d store.Deployment) router.Route {
	r := router.Route{Deployment: d.ID, Project: d.ProjectName, Environment: d.EnvironmentName}
	switch Status(d.Status) {
	case Running, Deploying:
		l := c.liveByID(d.ID)
		ready := false
		if l != nil {
			l.mu.Lock()
			ready = l.ready
			l.mu.Unlock()
		}
		switch {
		case ready:
			r.Backend = l
			// A wake starts an instance and waits for its first passed
			// check, each bounded by the deployment's window: requests
			// wait that long (a VM that boots slowly) before a 503.
			r.DialTimeout = 2 * l.health.Window
		case Status(d.Status) == Deploying:
			r.State = router.Deploying
		default:
			r.State, r.Reason = router.Failed, "This deployment has no running instance."
		}
	case Failed:
		r.State, r.Reason = router.Failed, "This deployment failed."
	case Stopped:
		r.State, r.Reason = router.Stopped, "This deployment was stopped."
	default:
		r.State = router.Deploying
	}
	return r
}

// ErrNotRunning reports an operation that needs a RUNNING deployment.
var ErrNotRunning = fmt.Errorf("deployment is not running: %w", store.ErrConflict)

// Promote makes a RUNNING deployment the current one of its environment:
// the environment's hostnames switch to it atomically, without a rebuild
// (a rollback, when it is an earlier deployment). The previous deployment
// keeps its preview URL.
func (c *Controller) Promote(ctx context.Context, id string) (store.Deployment, error) {
	d, err := c.store.GetDeployment(ctx, id)
	if err != nil {
		return d, err
	}
	if Status(d.Status) != Running {
		return d, fmt.Errorf("deployment %s is %s; only a RUNNING deployment can be promoted (redeploy it instead): %w", d.ID, d.Status, store.ErrConflict)
	}
	if err := c.store.SetCurrentDeployment(ctx, d.EnvironmentID, d.ID); err != nil {
		return d, err
	}
	c.event(d.ID, store.LogRuntime, "promoted: now current on %s", d.EnvironmentName)
	c.routeDeployment(ctx, d)
	return d, nil
}

// autoPromote makes d, healthy, the current deployment of its environment
// unless a deployment created after it already is (and serves, or is about
// to): an automatic promotion never moves an environment back to an older
// deployment; only an explicit Promote does.
func (c *Controller) autoPromote(ctx context.Context, d store.Deployment) {
	cur, err := c.store.PromoteIfNewer(ctx, d.ID, string(Deploying), string(Running))
	switch {
	case err != nil:
		c.log.Error("promoting deployment", "deployment", d.ID, "err", err)
	case cur == d.ID:
		c.event(d.ID, store.LogBuild, "promoted: now current on %s", d.EnvironmentName)
	default:
		c.event(d.ID, store.LogBuild, "not promoted: deployment %s, created after this one, is current on %s (promote this one explicitly to roll back)",
			cur, d.EnvironmentName)
	}
}

// fallBack hands the environment of d, just stopped (or failed), to its
// newest RUNNING deployment if d was its current one, and says so in both
// logs. With none left, d stays current and its hostnames say what became
// of it.
func (c *Controller) fallBack(ctx context.Context, d store.Deployment) {
	next, err := c.store.FallBack(ctx, d.EnvironmentID, d.ID, string(Running))
	if err != nil {
		c.log.Error("falling back from a stopped deployment", "deployment", d.ID, "err", err)
		return
	}
	if next == "" {
		return
	}
	what := strings.ToLower(d.Status)
	c.event(next, store.LogRuntime, "now current on %s: the current deployment %s was %s, and this is the newest RUNNING deployment left",
		d.EnvironmentName, d.ID, what)
	c.event(d.ID, store.LogRuntime, "%s while current on %s; %s, the newest RUNNING deployment left, is current now", what, d.EnvironmentName, next)
	if nd, err := c.store.GetDeployment(ctx, next); err == nil {
		c.routeDeployment(ctx, nd)
	}
}

// Reroute stops routing the hostnames gone and routes env's current
// deployment, if any, to env's hostnames as they are now: what a change of
// an environment's domains, or its deletion, asks of the router.
func (c *Controller) Reroute(ctx context.Context, env store.Environment, gone []string) {
	if len(gone) > 0 {
		c.cfg.Routes.Update(func(m map[string]router.Route) {
			for _, h := range gone {
				delete(m, h)
			}
		})
	}
	if env.CurrentDeploymentID == "" {
		return
	}
	if d, err := c.store.GetDeployment(ctx, env.CurrentDeploymentID); err == nil {
		c.routeDeployment(ctx, d)
	}
}

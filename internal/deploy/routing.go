package deploy

import (
	"context"
	"fmt"
	"time"

	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/store"
)

// Hostnames returns the hostnames that route to d: its preview hostname
// always and, while it is its environment's current deployment, the
// environment's hostnames (see envHosts).
func (c *Controller) Hostnames(ctx context.Context, d store.Deployment) []string {
	hosts := []string{c.PreviewHost(d.ID)}
	env, err := c.store.GetEnvironmentByID(ctx, d.EnvironmentID)
	if err == nil && env.CurrentDeploymentID == d.ID {
		hosts = append(hosts, c.envHosts(ctx, d.ProjectName, env)...)
	}
	return hosts
}

// hostsOf is Hostnames with d's environment and the custom domains of
// every environment (by environment id) at hand: it queries nothing.
func (c *Controller) hostsOf(d store.Deployment, env store.Environment, domains map[string][]store.Domain) []string {
	hosts := []string{c.PreviewHost(d.ID)}
	if env.ID != "" && env.CurrentDeploymentID == d.ID {
		hosts = append(hosts, c.envHostsWith(d.ProjectName, env, domains[env.ID])...)
	}
	return hosts
}

// envHosts lists the hostnames that follow an environment's current
// deployment: the project's default hostname (production only), the
// environment hostname and the environment's custom domains.
func (c *Controller) envHosts(ctx context.Context, project string, env store.Environment) []string {
	domains, err := c.store.ListDomains(ctx, env.ID)
	if err != nil {
		c.log.Error("listing domains", "environment", env.ID, "err", err)
	}
	return c.envHostsWith(project, env, domains)
}

// envHostsWith is envHosts given the environment's custom domains.
func (c *Controller) envHostsWith(project string, env store.Environment, domains []store.Domain) []string {
	var hosts []string
	if env.Name == store.ProductionEnvironment {
		hosts = append(hosts, c.ProjectHost(project))
	}
	hosts = append(hosts, c.EnvironmentHost(project, env.Name))
	for _, d := range domains {
		hosts = append(hosts, d.Name)
	}
	return hosts
}

// routeDeployment points d's hostnames at it, as its status says, in one
// atomic swap of the routing table.
func (c *Controller) routeDeployment(ctx context.Context, d store.Deployment) {
	route := c.routeFor(d)
	hosts := c.Hostnames(ctx, d)
	c.cfg.Routes.Update(func(m map[string]router.Route) {
		for _, h := range hosts {
			m[h] = route
		}
	})
}

// routeFor returns the route for d in its current status.
func (c *Controller) routeFor(d store.Deployment) router.Route {
	r := router.Route{Deployment: d.ID, Project: d.ProjectName}
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

// AddDomain assigns a custom domain to an environment and routes it to the
// environment's current deployment.
func (c *Controller) AddDomain(ctx context.Context, env store.Environment, name string) (store.Domain, error) {
	if h, ok := router.CanonicalHost(name); !ok || h != name {
		return store.Domain{}, fmt.Errorf("invalid domain %q: %w", name, ErrInvalid)
	}
	dom, err := c.store.AddDomain(ctx, env.ID, name)
	if err != nil {
		return dom, err
	}
	if env.CurrentDeploymentID != "" {
		if d, err := c.store.GetDeployment(ctx, env.CurrentDeploymentID); err == nil {
			c.routeDeployment(ctx, d)
		}
	}
	return dom, nil
}

// RemoveDomain unassigns a custom domain; it answers 404 from then on.
func (c *Controller) RemoveDomain(ctx context.Context, name string) error {
	if err := c.store.RemoveDomain(ctx, name); err != nil {
		return err
	}
	c.cfg.Routes.Delete(name)
	return nil
}

// ErrInvalid reports invalid input to the controller.
var ErrInvalid = fmt.Errorf("invalid input")

// DeleteEnvironment stops the environment's deployments, removes its
// hostnames from the router and deletes it with its deployments, domains
// and variables. The production environment cannot be deleted.
func (c *Controller) DeleteEnvironment(ctx context.Context, env store.Environment, project string) error {
	if env.Name == store.ProductionEnvironment {
		return fmt.Errorf("the production environment cannot be deleted: %w", ErrInvalid)
	}
	hosts := c.envHosts(ctx, project, env)
	var ids []string
	var before time.Time
	for {
		ds, err := c.store.ListDeployments(ctx, store.DeploymentFilter{EnvironmentID: env.ID, Before: before, Limit: 500})
		if err != nil {
			return err
		}
		for _, d := range ds {
			if !Status(d.Status).Terminal() {
				if _, err := c.Stop(ctx, d.ID); err != nil {
					return err
				}
			}
			ids = append(ids, d.ID)
		}
		if len(ds) < 500 {
			break
		}
		before = ds[len(ds)-1].CreatedAt
	}
	if err := c.store.DeleteEnvironment(ctx, env.ID); err != nil {
		return err
	}
	c.cfg.Routes.Update(func(m map[string]router.Route) {
		for _, h := range hosts {
			delete(m, h)
		}
		for _, id := range ids {
			delete(m, c.PreviewHost(id))
		}
	})
	return nil
}

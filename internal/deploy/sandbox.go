package deploy

import (
	"context"
	"fmt"
	"sort"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/store"
)

// Sandboxes: a deployment runs in the sandbox kind its project chose
// ("sandbox" in the settings) or, if none, the server's default. The kind
// is captured with the other settings when the deployment is created, the
// default resolved then, so every instance of a deployment — the first, a
// restart, a wake — starts in the same kind of sandbox. Each instance's
// handle records the name of the driver that started it; everything after
// Start (Dial, Wait, Stop, Recover, Inspect) goes to that driver.

// sandboxDrivers fills in cfg's Sandboxes and Sandbox defaults and returns
// its drivers by name.
func sandboxDrivers(cfg *Config) (map[string]runtime.Driver, error) {
	if cfg.Sandbox == "" {
		if cfg.Driver == nil {
			return nil, fmt.Errorf("deploy: Sandbox is required without Driver")
		}
		cfg.Sandbox = cfg.Driver.Name()
	}
	if len(cfg.Sandboxes) == 0 {
		cfg.Sandboxes = map[string]runtime.Driver{cfg.Sandbox: cfg.Driver}
	}
	if cfg.Driver == nil {
		cfg.Driver = cfg.Sandboxes[cfg.Sandbox] // may be nil: the default kind cannot run here
	}
	byName := make(map[string]runtime.Driver, len(cfg.Sandboxes))
	for kind, d := range cfg.Sandboxes {
		if d == nil {
			return nil, fmt.Errorf("deploy: sandbox %q has no driver", kind)
		}
		if other, ok := byName[d.Name()]; ok && other != d {
			return nil, fmt.Errorf("deploy: two sandboxes' drivers are named %q", d.Name())
		}
		byName[d.Name()] = d
	}
	return byName, nil
}

// DefaultSandbox is the sandbox kind of deployments whose project sets
// none.
func (c *Controller) DefaultSandbox() string { return c.cfg.Sandbox }

// Sandboxes lists the sandbox kinds this server can run, sorted.
func (c *Controller) Sandboxes() []string {
	var out []string
	for kind := range c.cfg.Sandboxes {
		out = append(out, kind)
	}
	sort.Strings(out)
	return out
}

// SandboxOf returns the sandbox kind d's instances run in.
func (c *Controller) SandboxOf(ctx context.Context, d store.Deployment) string {
	st, err := c.settingsOf(ctx, d)
	if err != nil {
		return c.cfg.Sandbox
	}
	return project.SandboxOf(st, c.cfg.Sandbox)
}

// driverFor returns the driver of a sandbox kind, or an error a user can
// act on when this server cannot run it.
func (c *Controller) driverFor(kind string) (runtime.Driver, error) {
	if d, ok := c.cfg.Sandboxes[kind]; ok {
		return d, nil
	}
	if err := c.cfg.Unavailable[kind]; err != nil {
		return nil, fmt.Errorf("the %s sandbox is not available on this server: %v", kind, err)
	}
	return nil, fmt.Errorf("the %s sandbox is not available on this server (it runs %v): choose another one in the project's settings (sandbox) and redeploy", kind, c.Sandboxes())
}

// driverOf returns the driver that started the instance h names, or nil
// if no driver of this server goes by the name h records.
func (c *Controller) driverOf(h *runtime.Handle) runtime.Driver {
	if h == nil {
		return nil
	}
	return c.drivers[h.Driver]
}

// errNoDriver reports a handle whose driver this server does not have.
func errNoDriver(h *runtime.Handle) error {
	return fmt.Errorf("instance %s was started by the %q driver, which this server does not run", h.ID, h.Driver)
}

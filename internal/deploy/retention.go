package deploy

import (
	"context"
	"errors"

	"github.com/slipwayhq/slipway/internal/store"
)

// ImageRemover is implemented by drivers that keep a local copy of each
// image (the runc driver unpacks one per digest) and can free it.
type ImageRemover interface {
	RemoveImage(digest string) error
}

// imageRemover returns an ImageRemover that frees an image in every
// sandbox's driver that keeps copies, or nil if none does.
func (c *Controller) imageRemover() ImageRemover {
	var rms removers
	for _, d := range c.drivers {
		if rm, ok := d.(ImageRemover); ok {
			rms = append(rms, rm)
		}
	}
	if len(rms) == 0 {
		return nil
	}
	return rms
}

type removers []ImageRemover

func (rms removers) RemoveImage(digest string) error {
	var errs []error
	for _, rm := range rms {
		if err := rm.RemoveImage(digest); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// retire applies the retention policy to an environment: of its RUNNING
// deployments, the newest Config.Keep stay reachable (asleep when idle) and
// the current one always does; older ones are stopped, and their unpacked
// images freed unless a RUNNING or DEPLOYING deployment still uses them.
func (c *Controller) retire(ctx context.Context, envID string) {
	env, err := c.store.GetEnvironmentByID(ctx, envID)
	if err != nil {
		return
	}
	running, err := c.store.ListDeployments(ctx, store.DeploymentFilter{EnvironmentID: envID, Statuses: []string{string(Running)}, Limit: 500})
	if err != nil {
		c.log.Error("retention", "environment", envID, "err", err)
		return
	}
	var retired []store.Deployment
	for i, d := range running { // newest first
		if i < c.cfg.Keep || d.ID == env.CurrentDeploymentID {
			continue
		}
		c.event(d.ID, store.LogRuntime, "retired: environment %s keeps its newest %d deployments", d.EnvironmentName, c.cfg.Keep)
		if _, err := c.Stop(ctx, d.ID); err != nil {
			c.log.Error("retiring deployment", "deployment", d.ID, "err", err)
			continue
		}
		retired = append(retired, d)
	}
	rm := c.imageRemover()
	if rm == nil || len(retired) == 0 {
		return
	}
	active, err := c.store.ListDeployments(ctx, store.DeploymentFilter{Statuses: []string{string(Running), string(Deploying)}, Limit: 100000})
	if err != nil {
		return
	}
	inUse := map[string]bool{}
	for _, d := range active {
		inUse[d.ImageDigest] = true
	}
	for _, d := range retired {
		if d.ImageDigest == "" || inUse[d.ImageDigest] {
			continue
		}
		inUse[d.ImageDigest] = true // once is enough
		if err := rm.RemoveImage(d.ImageDigest); err != nil {
			c.log.Warn("freeing image of a retired deployment", "deployment", d.ID, "err", err)
		}
	}
}

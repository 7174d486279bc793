package deploy

import (
	"context"
	"path/filepath"

	"github.com/slipwayhq/slipway/internal/store"
)

// Discard removes at once what retention would later remove of
// deployments that were stopped and then deleted with their environment
// (package project's DeleteEnvironment calls it): their stored sources,
// their instances' log files and their unpacked images (unless a
// deployment still kept runs the same image). Their registry images go at
// the next collection, which it starts: nothing keeps them any more. Their
// records and log lines went with the environment.
func (c *Controller) Discard(ctx context.Context, ds []store.Deployment) {
	if len(ds) == 0 {
		return
	}
	kept := map[string]bool{}
	if rm, ok := c.cfg.Driver.(ImageRemover); ok {
		all, err := c.store.ListDeployments(ctx, store.DeploymentFilter{Limit: 1 << 30})
		if err != nil {
			c.log.Warn("discarding deleted deployments: listing those kept", "err", err)
			rm = nil
		}
		for _, d := range all {
			kept[d.ImageDigest] = true
		}
		released := map[string]bool{}
		for _, d := range ds {
			if rm == nil || d.ImageDigest == "" || kept[d.ImageDigest] || released[d.ImageDigest] {
				continue
			}
			released[d.ImageDigest] = true
			if err := rm.RemoveImage(d.ImageDigest); err != nil {
				c.log.Warn("releasing the image of a deleted deployment", "deployment", d.ID, "err", err)
			}
		}
	}
	var freed int64
	for _, d := range ds {
		for _, path := range []string{c.sourcePath(d.ID), filepath.Join(c.cfg.DataDir, "logs", d.ID), filepath.Join(c.cfg.DataDir, "snapshots", d.ID)} {
			n, err := removeCounting(path)
			if err != nil {
				c.log.Warn("discarding a deleted deployment's files", "deployment", d.ID, "err", err)
			}
			freed += n
		}
	}
	c.log.Info("discarded deleted deployments", "deployments", len(ds), "freed", FormatBytes(freed))
	c.collectSoon()
}

package server

import (
	"context"

	"github.com/slipwayhq/slipway/internal/drain"
	"github.com/slipwayhq/slipway/internal/notify"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/store"
)

// startNotify starts projects' outgoing webhooks (told by the lifecycle,
// wired in newController) with the deliveries a previous run left
// pending, and their log drains (fed by the lifecycle's log tailers).
func (s *server) startNotify(ctx context.Context) error {
	hosts := project.Hosts{Base: s.cfg.BaseDomain}
	n, err := notify.New(notify.Config{Store: s.store, Secrets: s.box, Log: s.log,
		DeploymentURL: func(d store.Deployment) string { return appURL(hosts.Preview(d.ID), s.routerPort) }})
	if err != nil {
		return err
	}
	n.Start()
	s.notify = n
	s.onStop(func(context.Context) { n.Close() })
	d, err := drain.New(drain.Config{Store: s.store, Secrets: s.box, Log: s.log})
	if err != nil {
		return err
	}
	if err := d.Start(ctx); err != nil {
		return err
	}
	s.drains = d
	s.onStop(func(context.Context) { d.Close() })
	return nil
}

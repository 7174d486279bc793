package notify

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/store"
)

// The Service is a deploy.Observer: what the lifecycle announces becomes
// deliveries, stored before the lifecycle goes on.

// StatusChanged sends DeploymentSucceeded when d goes live and
// DeploymentFailed when it fails.
func (s *Service) StatusChanged(d store.Deployment, from deploy.Status) {
	switch to := deploy.Status(d.Status); {
	case to == deploy.Running && from == deploy.Deploying:
		s.event(DeploymentSucceeded, d, nil)
	case to == deploy.Failed:
		s.event(DeploymentFailed, d, nil)
	}
}

// Restarted sends AppCrashed or AppUnhealthy.
func (s *Service) Restarted(d store.Deployment, r deploy.Restart) {
	event := AppUnhealthy
	if r.Crashed {
		event = AppCrashed
	}
	s.event(event, d, func(p *Payload) {
		p.Reason = r.Reason
		p.Message = fmt.Sprintf("%s: %s; restarting it", p.Message, r.Reason)
	})
}

// Slept sends AppSlept.
func (s *Service) Slept(d store.Deployment) { s.event(AppSlept, d, nil) }

// Woke sends AppWoke.
func (s *Service) Woke(d store.Deployment, took time.Duration, _ int, err error) {
	s.event(AppWoke, d, func(p *Payload) {
		p.WakeMS = max(took.Milliseconds(), 1)
		if err != nil {
			p.Reason = err.Error()
			p.Message = fmt.Sprintf("%s: the app of deployment %s (%s) failed to wake after %s: %v",
				d.ProjectName, d.ID, d.EnvironmentName, took.Round(time.Millisecond), err)
			return
		}
		p.Message += " in " + took.Round(time.Millisecond).String()
	})
}

// event queues a delivery of event about d to each of its project's
// webhooks that subscribe to it.
func (s *Service) event(event string, d store.Deployment, edit func(*Payload)) {
	ctx := context.WithoutCancel(s.ctx)
	hooks, err := s.store.ListHooks(ctx, d.ProjectID)
	if err != nil {
		s.log.Error("listing webhooks", "project", d.ProjectName, "err", err)
		return
	}
	hooks = slices.DeleteFunc(hooks, func(h store.Hook) bool { return !slices.Contains(h.Events, event) })
	if len(hooks) == 0 {
		return
	}
	url := ""
	if s.cfg.DeploymentURL != nil {
		url = s.cfg.DeploymentURL(d)
	}
	p := payloadFor(event, d, url, time.Now())
	if edit != nil {
		edit(&p)
	}
	if _, err := s.enqueue(ctx, hooks, p); err != nil {
		s.log.Error("queueing webhook deliveries", "project", d.ProjectName, "event", event, "err", err)
	}
}

var _ deploy.Observer = (*Service)(nil)

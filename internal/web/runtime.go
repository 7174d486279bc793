package web

import (
	"context"
	"strings"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/store"
)

// runtimeView is what a deployment runs with, as its page shows it: its
// newest instances and their health checks, and what of its project
// changed since it was created (then the page offers "Redeploy to apply").
type runtimeView struct {
	Health    string           // of the instance serving a DEPLOYING or RUNNING deployment
	LastCheck *store.Instance  // that instance, when it was checked
	Instances []store.Instance // newest first, at most 5
	Changes   []string         // settings (JSON names) and "variables"
	Sandbox   string           // the kind of sandbox its instances run in
}

// ChangesText lists the changes for a sentence.
func (v runtimeView) ChangesText() string { return strings.Join(v.Changes, ", ") }

// v changes whenever what the view shows changes (live updates).
func (v runtimeView) v() string {
	s := v.Health + "." + v.ChangesText()
	if len(v.Instances) > 0 {
		s += "." + v.Instances[0].ID + "." + v.Instances[0].Status
	}
	return s
}

func (h *handler) runtimeView(ctx context.Context, d store.Deployment) runtimeView {
	v := runtimeView{Sandbox: h.dep.SandboxOf(ctx, d)}
	st := deploy.Status(d.Status)
	if changes, err := h.dep.Changes(ctx, d); err == nil && (st == deploy.Running || st == deploy.Deploying) {
		v.Changes = changes
	}
	insts, err := h.store.ListInstances(ctx, d.ID)
	if err != nil {
		return v
	}
	for i := len(insts) - 1; i >= 0 && len(v.Instances) < 5; i-- {
		in := insts[i]
		if in.Health.State == "" {
			in.Health.State = "unknown"
		}
		v.Instances = append(v.Instances, in)
	}
	if len(v.Instances) == 0 {
		return v
	}
	newest := v.Instances[0]
	if (st == deploy.Running || st == deploy.Deploying) && (newest.Status == "running" || newest.Status == "starting") {
		v.Health = newest.Health.State
		if !newest.Health.ProbedAt.IsZero() {
			v.LastCheck = &newest
		}
	}
	return v
}

// healthClass is the badge class of a health state.
func healthClass(state string) string {
	switch state {
	case deploy.HealthHealthy:
		return "st-running"
	case deploy.HealthUnhealthy:
		return "st-failed"
	case deploy.HealthFailing, deploy.HealthStarting:
		return "st-deploying"
	}
	return "st-stopped"
}

package api

import (
	"context"
	"time"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/store"
)

// Instance is one sandboxed process of a deployment and what its health
// checks found.
type Instance struct {
	ID     string `json:"id"`
	Status string `json:"status"` // starting, running, idle (scaled to zero), stopped, exited
	// Health is starting, healthy, failing, unhealthy, or unknown (an
	// instance started before Slipway recorded health).
	Health              string     `json:"health"`
	ConsecutiveFailures int        `json:"consecutiveFailures"`
	LastProbeAt         *time.Time `json:"lastProbeAt,omitempty"`
	LastProbeResult     string     `json:"lastProbeResult,omitempty"`
	CreatedAt           time.Time  `json:"createdAt"`
	StoppedAt           *time.Time `json:"stoppedAt,omitempty"`
}

// MaxInstancesShown bounds the instances a deployment document lists,
// newest first (every wake from zero starts one).
const MaxInstancesShown = 5

// addRuntime fills in what d runs with: its sandbox, whether its project's settings or
// variables changed since it was created (a redeploy applies them), its
// newest instances and their health, and the health of the one serving.
func (s *Server) addRuntime(ctx context.Context, d store.Deployment, out *Deployment) {
	out.Sandbox = s.dep.SandboxOf(ctx, d)
	if changes, err := s.dep.Changes(ctx, d); err == nil && len(changes) > 0 {
		out.SettingsChanged, out.ChangedSettings = true, changes
	}
	insts, err := s.store.ListInstances(ctx, d.ID)
	if err != nil || len(insts) == 0 {
		return
	}
	for i := len(insts) - 1; i >= 0 && len(out.Instances) < MaxInstancesShown; i-- {
		out.Instances = append(out.Instances, instanceJSON(insts[i]))
	}
	newest := out.Instances[0]
	st := deploy.Status(d.Status)
	if (st == deploy.Running || st == deploy.Deploying) && (newest.Status == "running" || newest.Status == "starting") {
		out.Health = newest.Health
	}
}

func instanceJSON(in store.Instance) Instance {
	out := Instance{
		ID: in.ID, Status: in.Status, Health: in.Health.State, ConsecutiveFailures: in.Health.Failures,
		LastProbeResult: in.Health.Result, CreatedAt: in.CreatedAt,
	}
	if out.Health == "" {
		out.Health = "unknown"
	}
	if !in.Health.ProbedAt.IsZero() {
		t := in.Health.ProbedAt
		out.LastProbeAt = &t
	}
	if !in.StoppedAt.IsZero() {
		t := in.StoppedAt
		out.StoppedAt = &t
	}
	return out
}

package deploy

import (
	"context"
	"errors"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// Health states of an instance, as the store records them and the API
// shows them (DESIGN.md, "Health checks"). While DEPLOYING (and after each
// start: a restart, a wake) an instance is probed quickly, backing off,
// until its first success; once RUNNING it is probed every interval
// (project setting healthInterval, 15 s), each probe with a timeout
// (healthTimeout, 5 s). Failures in a row below the threshold
// (healthFailures, 3) make it failing; reaching the threshold makes it
// unhealthy, and it is restarted.
const (
	HealthStarting  = "starting"  // not yet answered a check
	HealthHealthy   = "healthy"   // its last check passed
	HealthFailing   = "failing"   // its last checks failed, fewer than the threshold
	HealthUnhealthy = "unhealthy" // failed the threshold in a row, or never became healthy
)

// ProbeOK is the result of a passed check.
const ProbeOK = "ok"

// recordProbe persists the outcome of a check of l's current instance:
// its state given failures (checks failed in a row) and err.
func (c *Controller) recordProbe(l *liveDeployment, failures int, err error) {
	l.mu.Lock()
	id := l.inst.ID
	l.mu.Unlock()
	if id == "" {
		return
	}
	h := store.InstanceHealth{State: HealthHealthy, Failures: failures, ProbedAt: time.Now().UTC(), Result: ProbeOK}
	if err != nil {
		h.Result = err.Error()
		h.State = HealthFailing
		if failures >= l.health.Failures {
			h.State = HealthUnhealthy
		}
	}
	if err := c.store.SetInstanceHealth(context.Background(), id, h); err != nil && !errors.Is(err, store.ErrNotFound) {
		c.log.Error("recording health", "instance", id, "err", err)
	}
}

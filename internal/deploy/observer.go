package deploy

import (
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/store"
)

// Observer is told what the lifecycle does, for metrics (Config.Observer).
// Its methods are called synchronously from the lifecycle's goroutines,
// after the fact is persisted: they must return quickly.
type Observer interface {
	// StatusChanged: d moved from from to d.Status.
	StatusChanged(d store.Deployment, from Status)
	// Woke: a wake from zero of d ended after took, with held dials of the
	// router waiting on it; err says why it failed, if it did.
	Woke(d store.Deployment, took time.Duration, held int, err error)
	// Restarted: d's instance exited or failed its health checks, and is
	// being restarted.
	Restarted(d store.Deployment)
}

// LiveInstance is the instance a deployment runs now.
type LiveInstance struct {
	Deployment store.Deployment
	Handle     *runtime.Handle
}

// Instances returns the instances running now, one per deployment
// (deployments asleep have none).
func (c *Controller) Instances() []LiveInstance {
	var out []LiveInstance
	for _, l := range c.liveDeployments(func(*liveDeployment) bool { return true }) {
		l.mu.Lock()
		if h := l.handle; h != nil {
			out = append(out, LiveInstance{Deployment: l.d, Handle: h})
		}
		l.mu.Unlock()
	}
	return out
}

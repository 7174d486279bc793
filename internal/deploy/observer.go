package deploy

import (
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/store"
)

// Observer is told what the lifecycle does, for metrics, notifications
// and commit statuses (Config.Observer; Observers tells several). Its
// methods are called synchronously from the lifecycle's goroutines, after
// the fact is persisted: they must return quickly.
type Observer interface {
	// StatusChanged: d moved from from to d.Status.
	StatusChanged(d store.Deployment, from Status)
	// Woke: a wake from zero of d ended after took, with held dials of the
	// router waiting on it; err says why it failed, if it did.
	Woke(d store.Deployment, took time.Duration, held int, err error)
	// Slept: d's instance was stopped for idleness (scaled to zero).
	Slept(d store.Deployment)
	// Restarted: d's instance exited or failed its health checks (r says
	// which), and is being restarted.
	Restarted(d store.Deployment, r Restart)
}

// Restart says why an instance is restarted.
type Restart struct {
	// Crashed: its process exited. Otherwise it failed its health checks
	// the configured number of times in a row.
	Crashed bool
	// Reason says what happened, for people: "the app exited (exit code
	// 1)", "3 consecutive health checks failed (last: …)".
	Reason string
}

// Observers tells each of its observers, in order.
type Observers []Observer

func (all Observers) StatusChanged(d store.Deployment, from Status) {
	for _, o := range all {
		o.StatusChanged(d, from)
	}
}

func (all Observers) Woke(d store.Deployment, took time.Duration, held int, err error) {
	for _, o := range all {
		o.Woke(d, took, held, err)
	}
}

func (all Observers) Slept(d store.Deployment) {
	for _, o := range all {
		o.Slept(d)
	}
}

func (all Observers) Restarted(d store.Deployment, r Restart) {
	for _, o := range all {
		o.Restarted(d, r)
	}
}

// LogTap is given the runtime log lines of d's instances (app output,
// and the lines reporting output dropped over the rate limits), in order,
// after they are stored (Config.LogTap). It is called from the instance's
// log tailer, a few times a second: it must not block, nor keep the
// tailer from its next pass. It may keep lines (they are not reused).
type LogTap interface {
	RuntimeLines(d store.Deployment, lines []store.LogLine)
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

var _ Observer = Observers(nil)

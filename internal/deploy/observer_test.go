package deploy

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// recorder is an Observer that writes down what it is told.
type recorder struct {
	mu       sync.Mutex
	events   []string
	restarts []Restart
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) StatusChanged(d store.Deployment, from Status) {
	r.add(string(from) + "→" + d.Status)
}
func (r *recorder) Woke(store.Deployment, time.Duration, int, error) { r.add("woke") }
func (r *recorder) Slept(store.Deployment)                           { r.add("slept") }
func (r *recorder) Restarted(_ store.Deployment, why Restart) {
	r.mu.Lock()
	r.restarts = append(r.restarts, why)
	r.mu.Unlock()
	r.add("restarted")
}

func (r *recorder) saw(e string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.events {
		if x == e {
			return true
		}
	}
	return false
}

// withObservers restarts e's controller with observers fanned out.
func withObservers(e *env, n int) []*recorder {
	var rs []*recorder
	var all Observers
	for range n {
		r := &recorder{}
		rs = append(rs, r)
		all = append(all, r)
	}
	e.ctl.Close()
	e.observer = all
	e.start()
	return rs
}

func TestObserversAreEachToldOfCrashesAndSleep(t *testing.T) {
	e := newEnv(t)
	rs := withObservers(e, 2)
	ctx := context.Background()
	d, asleep := e.deployIdling("1s")
	for _, r := range rs {
		if !r.saw("DEPLOYING→RUNNING") {
			t.Errorf("an observer was not told the deployment is running: %v", r.events)
		}
	}
	insts, _ := e.store.ListInstances(ctx, d.ID)
	if err := e.driver.Crash(insts[0].ID, 3); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "restart seen", func() bool { return rs[0].saw("restarted") && rs[1].saw("restarted") })
	for _, r := range rs {
		r.mu.Lock()
		why := r.restarts[0]
		r.mu.Unlock()
		if !why.Crashed || why.Reason != "the app exited (exit code 3)" {
			t.Errorf("restart: %+v", why)
		}
	}
	waitUntil(t, "scaled to zero", asleep)
	waitUntil(t, "sleep seen", func() bool { return rs[0].saw("slept") && rs[1].saw("slept") })
}

// TestInstanceStoppedIsToldOfSleepsAndRestarts: the router is told each
// time an instance of a deployment stops — scaled to zero, or replaced
// after a crash — so that it drops its idle connections to it.
func TestInstanceStoppedIsToldOfSleepsAndRestarts(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var told []string
	e.ctl.Close()
	e.stopped = func(deployment string) {
		mu.Lock()
		told = append(told, deployment)
		mu.Unlock()
	}
	e.start()
	count := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(slices.DeleteFunc(slices.Clone(told), func(s string) bool { return s != id }))
	}
	d, asleep := e.deployIdling("1s")
	if n := count(d.ID); n != 0 {
		t.Fatalf("told %d stops of a running deployment", n)
	}
	insts, _ := e.store.ListInstances(context.Background(), d.ID)
	if err := e.driver.Crash(insts[0].ID, 3); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the crashed instance's stop told", func() bool { return count(d.ID) >= 1 })
	waitUntil(t, "scaled to zero", asleep)
	waitUntil(t, "the sleep told", func() bool { return count(d.ID) >= 2 })
}

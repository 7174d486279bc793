package deploy

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/store"
)

// The health check's defaults are those of DESIGN.md: every 15 s, a 5 s
// timeout, three failures in a row. The tests below run the same code
// with short intervals set the way a user sets them, as project settings.
func TestHealthDefaults(t *testing.T) {
	e := newEnv(t)
	h := e.ctl.healthOf(store.ProjectSettings{})
	if h.Interval != 15*time.Second || h.Timeout != 5*time.Second || h.Failures != 3 || h.Path != "/" || h.Port != 3000 {
		t.Errorf("defaults: %+v", h)
	}
}

// probeScript makes the driver's dials fail or pass through, one outcome
// per dial, while its script lasts.
type probeScript struct {
	runtime.Driver
	mu     sync.Mutex
	script []bool // true: fail this dial
	// gate, if set, holds the first dial after the script until it is
	// closed (or the dial's context ends), so that a test can read the
	// state the script left before the next check changes it.
	gate chan struct{}
}

func (p *probeScript) Dial(ctx context.Context, h *runtime.Handle, port int) (net.Conn, error) {
	p.mu.Lock()
	fail, played := false, false
	if len(p.script) > 0 {
		fail, p.script = p.script[0], p.script[1:]
		played = true
	}
	gate := p.gate
	if !played {
		p.gate = nil
	}
	p.mu.Unlock()
	if !played && gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail {
		return nil, errors.New("connection refused (scripted)")
	}
	return p.Driver.Dial(ctx, h, port)
}

func (p *probeScript) set(s ...bool) {
	p.mu.Lock()
	p.script = s
	p.mu.Unlock()
}

// setGated is set, with the first dial after the script held until the
// returned func is called.
func (p *probeScript) setGated(s ...bool) (release func()) {
	gate := make(chan struct{})
	p.mu.Lock()
	p.script, p.gate = s, gate
	p.mu.Unlock()
	return func() { close(gate) }
}

func (p *probeScript) left() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.script)
}

// fastChecks sets short health-check settings on project web.
func (e *env) fastChecks(interval, timeout string) {
	ctx := context.Background()
	p, _ := e.store.GetProject(ctx, "web")
	e.store.UpdateProjectSettings(ctx, p.ID, store.ProjectSettings{HealthInterval: interval, HealthTimeout: timeout, HealthFailures: 3, IdleTimeout: "0"})
}

// failureCounts returns N of every "health check failed (N/3)" event.
func (e *env) failureCounts(id string) []string {
	lines, _ := e.store.ListLogs(context.Background(), store.LogQuery{DeploymentID: id, Kind: store.LogRuntime})
	var out []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l.Text, "health check failed ("); ok {
			out = append(out, rest[:strings.Index(rest, ")")])
		}
	}
	return out
}

// Three checks that time out in a row make the instance unhealthy: that
// is persisted with the last probe, logged, and the instance restarted.
func TestThreeTimedOutChecksMakeUnhealthyAndRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.fastChecks("10ms", "30ms")
	d := e.waitFor(e.deploy().ID, settled)
	insts, _ := e.store.ListInstances(ctx, d.ID)
	if len(insts) != 1 || insts[0].Health.State != HealthHealthy || insts[0].Health.Result != ProbeOK || insts[0].Health.ProbedAt.IsZero() {
		t.Fatalf("a healthy instance: %+v", insts)
	}
	first := insts[0].ID
	if err := e.driver.SetNeverAnswer(first, true); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a new instance, healthy", func() bool {
		insts, _ = e.store.ListInstances(ctx, d.ID)
		return len(insts) == 2 && insts[1].Status == "running" && insts[1].Health.State == HealthHealthy
	})
	h := insts[0].Health
	if insts[0].Status != "stopped" || h.State != HealthUnhealthy || h.Failures != 3 || h.ProbedAt.IsZero() ||
		h.Result != "GET / did not answer within 30ms" {
		t.Errorf("the unhealthy instance: %s %+v", insts[0].Status, h)
	}
	if got := strings.Join(e.failureCounts(d.ID), " "); got != "1/3 2/3 3/3" {
		t.Errorf("failed checks logged: %s", got)
	}
	if !e.logHas(d.ID, store.LogRuntime, "instance "+first+" unhealthy: 3 consecutive health checks failed (last: GET / did not answer within 30ms); restarting") {
		t.Error("no event saying the instance was unhealthy and restarted")
	}
}

// Failures count in a row: a passed check in between starts again.
func TestFailuresCountInARow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	script := &probeScript{}
	e.ctl.Close()
	e.wrap = func(d runtime.Driver) runtime.Driver { script.Driver = d; return script }
	e.start()
	e.fastChecks("10ms", "1s")
	d := e.waitFor(e.deploy().ID, settled)
	const F, ok = true, false
	script.set(F, F, ok, F, F, ok)
	waitUntil(t, "the script played", func() bool { return script.left() == 0 })
	waitUntil(t, "a check passed after the script", func() bool {
		insts, _ := e.store.ListInstances(ctx, d.ID)
		return insts[0].Health.Failures == 0 && insts[0].Health.State == HealthHealthy
	})
	insts, _ := e.store.ListInstances(ctx, d.ID)
	if len(insts) != 1 {
		t.Fatalf("two failures at a time restarted the instance: %+v", insts)
	}
	if got := strings.Join(e.failureCounts(d.ID), " "); got != "1/3 2/3 1/3 2/3" {
		t.Errorf("failed checks logged: %s", got)
	}

	// Two failures: failing, not yet unhealthy. The check after them is
	// held (within its 1 s timeout) until the record is read: at 10 ms
	// intervals it would otherwise pass and clear the count first.
	release := script.setGated(F, F)
	defer release()
	waitUntil(t, "two failures recorded", func() bool {
		insts, _ = e.store.ListInstances(ctx, d.ID)
		return insts[0].Health.Failures == 2 || len(insts) > 1
	})
	if insts[0].Health.State != HealthFailing || insts[0].Health.Result != "GET /: connection refused (scripted)" {
		t.Errorf("after two failed checks: %+v", insts[0].Health)
	}
}

package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/build/buildtest"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/store"
)

// fleet is a data directory with many deployments recorded straight into
// the store, as a server that ran for a while leaves it, and the machine
// its live instances run on.
type fleet struct {
	tb      testing.TB
	data    string
	store   *store.Store
	machine *fake.Machine
	builder *buildtest.Builder

	running, stopped, failed []store.Deployment
	idle                     []string          // RUNNING, scaled to zero
	live                     []string          // RUNNING, instance still runs
	gone                     []string          // RUNNING, instance died while the server was down
	current                  map[string]string // project name → current deployment (production)
	liveInstance             map[string]string // deployment → its live instance
}

// fleetSpec shapes a fleet: per project, deployments cycle through 7
// RUNNING (scaled to zero), 2 STOPPED, 1 FAILED; the newest RUNNING one is
// current on production, which has a custom domain. The first live RUNNING
// deployments have an instance that still runs, the next gone ones have a
// "running" instance whose process is gone.
type fleetSpec struct {
	projects, perProject int
	live, gone           int
}

func newFleet(tb testing.TB, spec fleetSpec) *fleet {
	tb.Helper()
	data := tb.TempDir()
	st, err := store.Open(filepath.Join(data, "slipway.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	f := &fleet{tb: tb, data: data, store: st, machine: fake.NewMachine(), builder: buildtest.New(),
		current: map[string]string{}, liveInstance: map[string]string{}}
	driver := fake.New(fake.Config{Machine: f.machine})
	tb.Cleanup(func() {
		// After the controllers close: stop whatever runs, whoever started it.
		live, _ := st.ListLiveInstances(context.Background())
		for _, in := range live {
			driver.Stop(context.Background(), &runtime.Handle{ID: in.ID, Driver: fake.Name})
		}
	})
	ctx := context.Background()
	t := time.Now().Add(-time.Duration(spec.projects*spec.perProject) * time.Minute).UTC()
	for pi := 0; pi < spec.projects; pi++ {
		p, err := st.CreateProject(ctx, store.Project{Name: fmt.Sprintf("fleet-%03d", pi)})
		if err != nil {
			tb.Fatal(err)
		}
		env, err := st.GetEnvironment(ctx, p.ID, store.ProductionEnvironment)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := st.AddDomain(ctx, env.ID, fmt.Sprintf("www.fleet-%03d.test", pi)); err != nil {
			tb.Fatal(err)
		}
		var current string
		for di := 0; di < spec.perProject; di++ {
			t = t.Add(time.Second)
			status := Running
			switch di % 10 {
			case 7, 8:
				status = Stopped
			case 9:
				status = Failed
			}
			d, err := st.CreateDeployment(ctx, store.Deployment{
				ProjectID: p.ID, EnvironmentID: env.ID, Status: string(status), Trigger: "upload", Promote: true,
				Branch: "main", CommitSHA: fmt.Sprintf("%040x", pi*1000+di), Image: "127.0.0.1:7300/app:" + p.Name,
				ImageDigest: "sha256:" + fmt.Sprintf("%064x", pi), CreatedAt: t,
			})
			if err != nil {
				tb.Fatal(err)
			}
			inst := store.Instance{ID: store.NewID(), DeploymentID: d.ID, Driver: fake.Name, CreatedAt: t.Add(time.Second),
				StdoutPath: filepath.Join(data, "logs", d.ID, "out"), StderrPath: filepath.Join(data, "logs", d.ID, "err")}
			switch {
			case status == Running && len(f.live) < spec.live:
				inst.Status = "running"
				h, err := driver.Start(ctx, runtime.Spec{ID: inst.ID, Image: d.Image, Port: 3000})
				if err != nil {
					tb.Fatal(err)
				}
				inst.State, _ = json.Marshal(h)
				f.live = append(f.live, d.ID)
				f.liveInstance[d.ID] = inst.ID
			case status == Running && len(f.gone) < spec.gone:
				inst.Status = "running"
				inst.State, _ = json.Marshal(runtime.Handle{ID: inst.ID, Driver: fake.Name, State: []byte(`{}`)})
				f.gone = append(f.gone, d.ID)
			case status == Running:
				inst.Status = "idle"
				f.idle = append(f.idle, d.ID)
			case status == Stopped:
				inst.Status = "stopped"
			default:
				inst.ID = "" // failed before it ran
			}
			if inst.ID != "" {
				if _, err := st.CreateInstance(ctx, inst); err != nil {
					tb.Fatal(err)
				}
			}
			d.ProjectName, d.EnvironmentName = p.Name, env.Name
			switch status {
			case Running:
				f.running = append(f.running, d)
				current = d.ID
			case Stopped:
				f.stopped = append(f.stopped, d)
			default:
				f.failed = append(f.failed, d)
			}
		}
		if current != "" {
			if err := st.SetCurrentDeployment(ctx, env.ID, current); err != nil {
				tb.Fatal(err)
			}
			f.current[p.Name] = current
		}
	}
	return f
}

// start starts a controller on the fleet's data, as a restarted server
// does, and returns it with its routing table.
func (f *fleet) start() (*Controller, *router.Table, *fake.Driver) {
	f.tb.Helper()
	ctl, table, driver := f.newController()
	if err := ctl.Start(context.Background()); err != nil {
		f.tb.Fatal(err)
	}
	f.tb.Cleanup(func() { ctl.Close() })
	return ctl, table, driver
}

func (f *fleet) newController() (*Controller, *router.Table, *fake.Driver) {
	f.tb.Helper()
	table := &router.Table{}
	driver := fake.New(fake.Config{Machine: f.machine})
	ctl, err := New(Config{Store: f.store, Builder: f.builder, Driver: driver, Routes: table,
		Registry: "127.0.0.1:7300", DataDir: f.data, DeployWindow: 10 * time.Second, IdleTimeout: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.tb.Fatal(err)
	}
	return ctl, table, driver
}

// BenchmarkStart times Controller.Start — reconciliation until every
// hostname is routed — on a data directory with many deployments recorded:
// 100 projects × 10 (as bench/densitybench records its first step) and
// 100 projects × 50, of which 20 RUNNING ones have a live instance.
func BenchmarkStart(b *testing.B) {
	for _, spec := range []fleetSpec{
		{projects: 100, perProject: 10, live: 20},
		{projects: 100, perProject: 50, live: 20},
	} {
		b.Run(fmt.Sprintf("deployments=%d", spec.projects*spec.perProject), func(b *testing.B) {
			f := newFleet(b, spec)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				ctl, table, _ := f.newController()
				b.StartTimer()
				if err := ctl.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if _, ok := table.Lookup(ctl.hosts.Preview(f.running[len(f.running)-1].ID)); !ok {
					b.Fatal("newest deployment not routed")
				}
				ctl.Close()
				b.StartTimer()
			}
		})
	}
}

// TestStartReconcilesFleet restarts a controller on many recorded
// deployments and checks what each one became: idle ones routed and still
// asleep, live ones re-attached (the same process), one whose process died
// restarted, terminal ones routed to their pages with nothing left running,
// interrupted ones resumed or failed, and every environment hostname on
// its current deployment. A second restart changes nothing.
func TestStartReconcilesFleet(t *testing.T) {
	ctx := context.Background()
	f := newFleet(t, fleetSpec{projects: 4, perProject: 10, live: 2, gone: 1})
	driver := fake.New(fake.Config{Machine: f.machine})
	pids := map[string]int{}
	for dep, inst := range f.liveInstance {
		st, err := driver.Inspect(ctx, &runtime.Handle{ID: inst, Driver: fake.Name})
		if err != nil || !st.Running {
			t.Fatalf("live instance %s: %+v %v", inst, st, err)
		}
		pids[dep] = st.PID
	}

	// Records a crash leaves behind, in the first project.
	p := f.running[0]
	record := func(status Status, attempts int) store.Deployment {
		d, err := f.store.CreateDeployment(ctx, store.Deployment{ProjectID: p.ProjectID, EnvironmentID: p.EnvironmentID,
			Status: string(status), Trigger: "upload", Image: p.Image, ImageDigest: p.ImageDigest})
		if err != nil {
			t.Fatal(err)
		}
		if attempts > 0 {
			if d, err = f.store.UpdateDeployment(ctx, d.ID, d.Status, store.DeploymentPatch{Attempts: &attempts}); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	deploying := record(Deploying, 0)
	givenUp := record(Building, 3) // MaxRetries reached
	// A STOPPED deployment whose instance still runs.
	stoppedLive := f.stopped[0]
	h, err := driver.Start(ctx, runtime.Spec{ID: store.NewID(), Port: 3000})
	if err != nil {
		t.Fatal(err)
	}
	state, _ := json.Marshal(h)
	if _, err := f.store.CreateInstance(ctx, store.Instance{ID: h.ID, DeploymentID: stoppedLive.ID, Driver: fake.Name, State: state, Status: "running"}); err != nil {
		t.Fatal(err)
	}
	// A sleeping deployment with a stale "running" record older than its
	// "idle" one.
	staleIdle := f.idle[len(f.idle)-1]
	stale := store.Instance{ID: store.NewID(), DeploymentID: staleIdle, Driver: fake.Name, Status: "running",
		CreatedAt: time.Now().Add(-48 * time.Hour)}
	stale.State, _ = json.Marshal(runtime.Handle{ID: stale.ID, Driver: fake.Name})
	if _, err := f.store.CreateInstance(ctx, stale); err != nil {
		t.Fatal(err)
	}

	before := f.instances(t)
	ctl, table, _ := f.start()

	// Right after Start, before any background work could matter.
	for _, id := range f.idle {
		r, ok := table.Lookup(ctl.hosts.Preview(id))
		if !ok || r.State != router.Serving || r.Backend == nil {
			t.Errorf("idle deployment %s: route %+v, %v; want serving (it wakes on a request)", id, r, ok)
		}
		// A wake may take its start and first check, each within the
		// deployment's window: the router waits that long.
		if l := ctl.liveByID(id); l == nil {
			t.Errorf("idle deployment %s: not live", id)
		} else if want := 2 * l.health.Window; r.DialTimeout != want || want <= 0 {
			t.Errorf("idle deployment %s: route's DialTimeout %v, want twice its window (%v)", id, r.DialTimeout, want)
		}
	}
	for _, d := range f.stopped {
		if r, _ := table.Lookup(ctl.hosts.Preview(d.ID)); r.State != router.Stopped {
			t.Errorf("stopped deployment %s: route state %s", d.ID, r.State)
		}
	}
	for _, d := range f.failed {
		if r, _ := table.Lookup(ctl.hosts.Preview(d.ID)); r.State != router.Failed {
			t.Errorf("failed deployment %s: route state %s", d.ID, r.State)
		}
	}
	if r, ok := table.Lookup(ctl.hosts.Preview(deploying.ID)); !ok || (r.State != router.Deploying && r.State != router.Serving) {
		t.Errorf("deploying deployment: route %+v, %v", r, ok)
	}
	if d, _ := f.store.GetDeployment(ctx, givenUp.ID); d.Status != string(Failed) || !strings.Contains(d.FailureReason, "restarted") {
		t.Errorf("deployment interrupted too often: %s %q", d.Status, d.FailureReason)
	}
	if r, _ := table.Lookup(ctl.hosts.Preview(givenUp.ID)); r.State != router.Failed {
		t.Errorf("deployment interrupted too often: route state %s", r.State)
	}
	for project, id := range f.current {
		for _, host := range []string{ctl.hosts.Project(project), ctl.hosts.Environment(project, store.ProductionEnvironment), "www." + project + ".test"} {
			if r, ok := table.Lookup(host); !ok || r.Deployment != id || r.State != router.Serving {
				t.Errorf("%s: route %+v, %v; want deployment %s serving", host, r, ok, id)
			}
		}
	}
	for _, id := range f.live {
		if code := fleetGet(table, ctl.hosts.Preview(id)); code != http.StatusOK {
			t.Errorf("live deployment %s: GET answered %d", id, code)
		}
	}

	// Nothing asleep was started; live ones kept their instance and
	// process; terminal ones run nothing.
	after := f.instances(t)
	for _, id := range f.idle {
		if id == staleIdle {
			continue
		}
		if !sameInstances(before[id], after[id]) {
			t.Errorf("idle deployment %s: instances %+v, then %+v", id, before[id], after[id])
		}
	}
	if got := after[staleIdle]; len(got) != 2 || got[0].ID != stale.ID || got[0].Status != "stopped" || got[1].Status != "idle" {
		t.Errorf("idle deployment with a stale record: instances %+v", got)
	}
	for _, id := range f.live {
		got := after[id]
		if len(got) != 1 || got[0].ID != f.liveInstance[id] || got[0].Status != "running" {
			t.Errorf("live deployment %s: instances %+v; want %s re-attached", id, got, f.liveInstance[id])
		}
		st, err := driver.Inspect(ctx, &runtime.Handle{ID: f.liveInstance[id], Driver: fake.Name})
		if err != nil || !st.Running || st.PID != pids[id] {
			t.Errorf("live deployment %s: process %+v %v; want pid %d still running", id, st, err, pids[id])
		}
	}
	if got := after[stoppedLive.ID]; len(got) != 2 || got[1].ID != h.ID || got[1].Status != "stopped" {
		t.Errorf("stopped deployment's instance: %+v; want recorded stopped", got)
	}
	if st, err := driver.Inspect(ctx, h); err == nil && st.Running {
		t.Errorf("stopped deployment's instance still runs")
	}

	// Background work: the dead instance is replaced, the deploying
	// deployment goes live.
	for _, id := range f.gone {
		waitUntil(t, "deployment "+id+" has a new instance serving", func() bool {
			insts, _ := f.store.ListInstances(ctx, id)
			return len(insts) == 2 && insts[0].Status == "stopped" && insts[1].Status == "running" &&
				fleetGet(table, ctl.hosts.Preview(id)) == http.StatusOK
		})
	}
	waitUntil(t, "the deploying deployment runs", func() bool {
		d, _ := f.store.GetDeployment(ctx, deploying.ID)
		return d.Status == string(Running) && fleetGet(table, ctl.hosts.Preview(deploying.ID)) == http.StatusOK
	})

	// A second restart re-attaches the same instances and wakes nothing.
	ctl.Close()
	before = f.instances(t)
	ctl, table, _ = f.start()
	after = f.instances(t)
	for id, insts := range before {
		if !sameInstances(insts, after[id]) {
			t.Errorf("second restart changed deployment %s's instances: %+v, then %+v", id, insts, after[id])
		}
	}
	// And a sleeping deployment still wakes on its first request.
	id := f.idle[0]
	if code := fleetGet(table, ctl.hosts.Preview(id)); code != http.StatusOK {
		t.Errorf("waking deployment %s: GET answered %d", id, code)
	}
	if insts, _ := f.store.ListInstances(ctx, id); len(insts) != 2 || insts[1].Status != "running" {
		t.Errorf("woken deployment %s: instances %+v", id, insts)
	}
}

// instances returns every deployment's instances, oldest first.
func (f *fleet) instances(t *testing.T) map[string][]store.Instance {
	t.Helper()
	all, err := f.store.ListAllDeployments(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]store.Instance{}
	for _, d := range all {
		insts, err := f.store.ListInstances(context.Background(), d.ID)
		if err != nil {
			t.Fatal(err)
		}
		out[d.ID] = insts
	}
	return out
}

func sameInstances(a, b []store.Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || a[i].Status != b[i].Status {
			return false
		}
	}
	return true
}

// fleetGet sends GET / for host through the router and returns the status.
func fleetGet(table *router.Table, host string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(ctx, "GET", "http://"+host+"/", nil)
	(&router.Router{Table: table}).ServeHTTP(rec, req)
	return rec.Code
}

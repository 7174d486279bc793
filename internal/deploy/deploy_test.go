package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/build/buildtest"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/source"
	"github.com/slipwayhq/slipway/internal/store"
)

func TestTransitions(t *testing.T) {
	legal := map[[2]Status]bool{
		{Pending, Initializing}: true, {Pending, Failed}: true, {Pending, Stopped}: true,
		{Initializing, Building}: true, {Initializing, Failed}: true, {Initializing, Stopped}: true,
		{Building, Deploying}: true, {Building, Failed}: true, {Building, Stopped}: true,
		{Deploying, Running}: true, {Deploying, Failed}: true, {Deploying, Stopped}: true,
		{Running, Stopped}: true,
	}
	all := []Status{Pending, Initializing, Building, Deploying, Running, Failed, Stopped}
	for _, from := range all {
		for _, to := range all {
			if got := from.CanMoveTo(to); got != legal[[2]Status{from, to}] {
				t.Errorf("%s → %s: CanMoveTo = %v", from, to, got)
			}
		}
	}
}

type env struct {
	t       *testing.T
	store   *store.Store
	machine *fake.Machine
	builder *buildtest.Builder
	table   *router.Table
	data    string
	ctl     *Controller
	driver  *fake.Driver

	neverAnswer bool
	keep        int
	perProject  int // builds of one project at once (Config.BuildsPerProject)
	box         *secrets.Box
	retention   Retention
	prepared    int   // Config.PreparedSandboxes
	ahead       int64 // Config.RestoreAheadMemory
	// wrap, if set, decorates the driver the controller is given.
	wrap func(runtime.Driver) runtime.Driver
	// observer, if set, is the controller's Config.Observer.
	observer Observer
	stopped  func(deployment string) // Config.InstanceStopped
	// gvisor, if set, holds the instances of a second sandbox kind,
	// "gvisor", run by gvisorDriver beside the default kind, "runc" (the
	// driver above).
	gvisor       *fake.Machine
	gvisorDriver *fake.Driver
}

func newEnv(t *testing.T) *env {
	t.Helper()
	data := t.TempDir()
	st, err := store.Open(filepath.Join(data, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, store: st, machine: fake.NewMachine(), builder: buildtest.New(), data: data}
	if _, err := st.CreateProject(context.Background(), store.Project{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if e.box, err = secrets.Open(filepath.Join(data, "secret.key")); err != nil {
		t.Fatal(err)
	}
	e.start()
	return e
}

// start starts a controller, as a (re)started server does.
func (e *env) start() {
	e.t.Helper()
	e.table = &router.Table{}
	cfg := fake.Config{Machine: e.machine}
	if e.neverAnswer {
		cfg.NeverAnswer = func(runtime.Spec) bool { return true }
	}
	e.driver = fake.New(cfg)
	var driver runtime.Driver = e.driver
	if e.wrap != nil {
		driver = e.wrap(driver)
	}
	var sandboxes map[string]runtime.Driver
	var sandbox string
	if e.gvisor != nil {
		e.gvisorDriver = fake.New(fake.Config{Machine: e.gvisor, Name: "fake-gvisor"})
		sandboxes, sandbox = map[string]runtime.Driver{"runc": driver, "gvisor": e.gvisorDriver}, "runc"
	}
	ctl, err := New(Config{Store: e.store, Builder: e.builder, Driver: driver, Sandboxes: sandboxes, Sandbox: sandbox, Routes: e.table,
		Registry: "127.0.0.1:7300", DataDir: e.data, DeployWindow: 10 * time.Second, Secrets: e.box, Keep: e.keep, BuildsPerProject: e.perProject,
		Retention: e.retention, Observer: e.observer, PreparedSandboxes: e.prepared, RestoreAheadMemory: e.ahead, InstanceStopped: e.stopped,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := ctl.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.ctl = ctl
	e.t.Cleanup(func() { ctl.Close() })
}

func (e *env) deploy(files ...string) store.Deployment {
	e.t.Helper()
	dir := e.t.TempDir()
	for _, f := range append([]string{"Dockerfile"}, files...) {
		os.WriteFile(filepath.Join(dir, f), []byte("FROM scratch\n"), 0o644)
	}
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		e.t.Fatal(err)
	}
	d, err := e.ctl.Create(context.Background(), CreateRequest{Project: "web", Trigger: "upload", Promote: true, Source: &buf})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// waitFor waits until the deployment's status satisfies ok.
func (e *env) waitFor(id string, ok func(Status) bool) store.Deployment {
	e.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		changed := e.ctl.Changed(id)
		d, err := e.store.GetDeployment(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		if ok(Status(d.Status)) {
			return d
		}
		select {
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			e.t.Fatalf("deployment %s stuck in %s", id, d.Status)
		}
	}
}

func settled(s Status) bool { return s == Running || s.Terminal() }

func (e *env) get(host string) (int, string) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://"+host+"/", nil)
	(&router.Router{Table: e.table}).ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func (e *env) transitions(id string) []string {
	lines, _ := e.store.ListLogs(context.Background(), store.LogQuery{DeploymentID: id, Kind: store.LogBuild})
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l.Text, "status ") {
			out = append(out, strings.TrimPrefix(l.Text, "status "))
		}
	}
	return out
}

func TestLifecycleToRunning(t *testing.T) {
	e := newEnv(t)
	d := e.waitFor(e.deploy().ID, settled)
	if d.Status != string(Running) {
		t.Fatalf("status %s: %s", d.Status, d.FailureReason)
	}
	want := "PENDING → INITIALIZING, INITIALIZING → BUILDING, BUILDING → DEPLOYING, DEPLOYING → RUNNING"
	if got := strings.Join(e.transitions(d.ID), ", "); got != want {
		t.Errorf("transitions: %s", got)
	}
	for name, ts := range map[string][2]time.Time{
		"init": {d.InitializingAt, d.InitEndedAt}, "build": {d.BuildingAt, d.BuildEndedAt}, "deploy": {d.DeployingAt, d.DeployEndedAt},
	} {
		if ts[0].IsZero() || ts[1].Before(ts[0]) {
			t.Errorf("%s phase: %v → %v", name, ts[0], ts[1])
		}
	}
	if !strings.HasPrefix(d.Image, "127.0.0.1:7300/web@sha256:") {
		t.Errorf("image %q", d.Image)
	}
	for _, host := range []string{d.ID + ".slipway.localhost", "web.slipway.localhost", "web-production.slipway.localhost"} {
		if code, _ := e.get(host); code != http.StatusOK {
			t.Errorf("GET %s: %d", host, code)
		}
	}
	env, _ := e.store.GetEnvironment(context.Background(), d.ProjectID, "production")
	if env.CurrentDeploymentID != d.ID {
		t.Errorf("current deployment = %q", env.CurrentDeploymentID)
	}
}

func TestFailedBuildKeepsCurrentServing(t *testing.T) {
	e := newEnv(t)
	good := e.waitFor(e.deploy().ID, settled)
	bad := e.waitFor(e.deploy("FAIL").ID, settled)
	if bad.Status != string(Failed) || !strings.Contains(bad.FailureReason, "exit code: 3") || !strings.Contains(bad.FailureReason, "RUN make") {
		t.Fatalf("bad deployment: %s %q", bad.Status, bad.FailureReason)
	}
	if bad.FinishedAt.IsZero() || bad.BuildEndedAt.IsZero() {
		t.Error("failed deployment's open phase was not closed")
	}
	if code, _ := e.get("web.slipway.localhost"); code != 200 {
		t.Errorf("default hostname after a failed build: %d", code)
	}
	if code, _ := e.get(bad.ID + ".slipway.localhost"); code != http.StatusServiceUnavailable {
		t.Errorf("failed preview: %d", code)
	}
	env, _ := e.store.GetEnvironment(context.Background(), good.ProjectID, "production")
	if env.CurrentDeploymentID != good.ID {
		t.Errorf("current deployment moved to %q", env.CurrentDeploymentID)
	}
}

func TestNeverHealthyFailsWithinWindow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p, _ := e.store.GetProject(ctx, "web")
	e.store.UpdateProjectSettings(ctx, p.ID, store.ProjectSettings{DeployWindow: "1s"})
	e.ctl.Close()
	e.neverAnswer = true
	e.start()
	d := e.waitFor(e.deploy().ID, settled)
	if d.Status != string(Failed) || !strings.Contains(d.FailureReason, "did not answer GET / on port 3000 within the deployment window (1s)") {
		t.Fatalf("%s: %q", d.Status, d.FailureReason)
	}
	insts, _ := e.store.ListInstances(ctx, d.ID)
	if len(insts) != 1 || insts[0].Status != "stopped" {
		t.Errorf("instances of the failed deployment: %+v", insts)
	}
}

func TestStopDuringBuild(t *testing.T) {
	e := newEnv(t)
	d := e.deploy("BLOCK")
	e.waitFor(d.ID, func(s Status) bool { return s == Building })
	d, err := e.ctl.Stop(context.Background(), d.ID)
	if err != nil || d.Status != string(Stopped) {
		t.Fatalf("stop: %s %v", d.Status, err)
	}
	if code, _ := e.get(d.ID + ".slipway.localhost"); code != http.StatusGone {
		t.Errorf("stopped preview: %d", code)
	}
}

func TestRestartReattachesRunningAndRetriesInterrupted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	running := e.waitFor(e.deploy().ID, settled)
	blocked := e.deploy("BLOCK")
	e.waitFor(blocked.ID, func(s Status) bool { return s == Building })

	// The server goes away mid-build; the running app's instance does not.
	e.ctl.Close()
	before, _ := e.store.ListInstances(ctx, running.ID)
	e.builder.Release()
	e.start()

	if code, _ := e.get(running.ID + ".slipway.localhost"); code != http.StatusOK {
		t.Errorf("running deployment after restart: %d", code)
	}
	after, _ := e.store.ListInstances(ctx, running.ID)
	if len(after) != 1 || len(before) != 1 || after[0].ID != before[0].ID || after[0].Status != "running" {
		t.Errorf("instances before %+v after %+v: want the same one re-attached", before, after)
	}
	d := e.waitFor(blocked.ID, settled)
	if d.Status != string(Running) || d.Attempts != 1 {
		t.Errorf("interrupted deployment: %s attempts %d (%s)", d.Status, d.Attempts, d.FailureReason)
	}
	if code, body := e.get("web.slipway.localhost"); code != http.StatusOK {
		t.Errorf("default hostname: %d %s", code, body)
	}
}

func TestInterruptedTooOftenFails(t *testing.T) {
	e := newEnv(t)
	d := e.deploy("BLOCK")
	for i := 0; i < 4; i++ {
		e.waitFor(d.ID, func(s Status) bool { return s == Building || s.Terminal() })
		e.ctl.Close()
		e.start()
	}
	d = e.waitFor(d.ID, settled)
	if d.Status != string(Failed) || !strings.Contains(d.FailureReason, "restarted") {
		t.Errorf("%s %q", d.Status, d.FailureReason)
	}
}

func TestCrashedInstanceIsRestarted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d := e.waitFor(e.deploy().ID, settled)
	insts, _ := e.store.ListInstances(ctx, d.ID)
	if err := e.driver.Crash(insts[0].ID, 2); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		insts, _ = e.store.ListInstances(ctx, d.ID)
		if len(insts) == 2 && insts[1].Status == "running" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(insts) != 2 || insts[0].Status != "stopped" || insts[1].Status != "running" {
		t.Fatalf("instances after a crash: %+v", insts)
	}
	lines, _ := e.store.ListLogs(ctx, store.LogQuery{DeploymentID: d.ID, Kind: store.LogRuntime})
	var saw bool
	for _, l := range lines {
		saw = saw || strings.Contains(l.Text, "the app exited (exit code 2)")
	}
	if !saw {
		t.Error("no event about the crash in the runtime log")
	}
	deadline = time.Now().Add(10 * time.Second)
	for code := 0; code != http.StatusOK && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		code, _ = e.get("web.slipway.localhost")
	}
	if code, _ := e.get("web.slipway.localhost"); code != http.StatusOK {
		t.Errorf("after restart: %d", code)
	}
}

// deployIdling deploys the web project with the idle timeout given, and
// returns the deployment and a check that it is scaled to zero.
func (e *env) deployIdling(timeout string) (store.Deployment, func() bool) {
	ctx := context.Background()
	p, _ := e.store.GetProject(ctx, "web")
	e.store.UpdateProjectSettings(ctx, p.ID, store.ProjectSettings{IdleTimeout: timeout})
	d := e.waitFor(e.deploy().ID, settled)
	return d, func() bool {
		// The newest instance that ran (a sandbox prepared ahead for the
		// next wake never has).
		insts, _ := e.store.ListInstances(ctx, d.ID)
		insts = slices.DeleteFunc(insts, func(in store.Instance) bool { return preparedStatus(in.Status) })
		return len(insts) > 0 && insts[len(insts)-1].Status == "idle"
	}
}

func TestScaleToZeroAndWake(t *testing.T) {
	e := newEnv(t)
	e.ctl.Close()
	e.prepared = -1 // wakes that start a new instance (see prepared_test.go)
	e.start()
	ctx := context.Background()
	d, asleep := e.deployIdling("1s")
	waitUntil(t, "scaled to zero", asleep)

	// Many concurrent requests wake it once.
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = e.get("web.slipway.localhost")
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("request %d during wake: %d", i, c)
		}
	}
	insts, _ := e.store.ListInstances(ctx, d.ID)
	if len(insts) != 2 || insts[1].Status != "running" {
		t.Fatalf("instances after wake: %+v (want one new instance)", insts)
	}
	// The held requests are released before the wake is recorded.
	var wakes []store.Wake
	waitUntil(t, "wake recorded", func() bool {
		wakes, _ = e.ctl.Wakes(ctx, d.ID, 10)
		return len(wakes) > 0
	})
	if len(wakes) != 1 || !wakes[0].OK || wakes[0].Duration <= 0 {
		t.Errorf("wakes: %+v", wakes)
	}
	if dd, _ := e.store.GetDeployment(ctx, d.ID); dd.Status != string(Running) {
		t.Errorf("status while scaled to zero and after: %s", dd.Status)
	}

	// Asleep across a restart of the server: nothing is started until a request.
	waitUntil(t, "scaled to zero again", asleep)
	e.ctl.Close()
	e.start()
	if insts, _ := e.store.ListInstances(ctx, d.ID); len(insts) != 2 {
		t.Errorf("a restart woke the deployment: %+v", insts)
	}
	if code, _ := e.get(d.ID + ".slipway.localhost"); code != http.StatusOK {
		t.Errorf("wake after restart: %d", code)
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPromoteRollsBackWithoutBuild(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first := e.waitFor(e.deploy().ID, settled)
	second := e.waitFor(e.deploy().ID, settled)
	body := func(host string) string {
		rec := httptest.NewRecorder()
		(&router.Router{Table: e.table}).ServeHTTP(rec, httptest.NewRequest("GET", "http://"+host+"/env?name=SLIPWAY_DEPLOYMENT_ID", nil))
		return rec.Body.String()
	}
	if b := body("web.slipway.localhost"); b != second.ID {
		t.Fatalf("default hostname serves %q, want the newest deployment %s", b, second.ID)
	}
	builds := e.builder.Builds()
	if _, err := e.ctl.Promote(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	env, _ := e.store.GetEnvironment(ctx, first.ProjectID, "production")
	if env.CurrentDeploymentID != first.ID || e.builder.Builds() != builds {
		t.Errorf("after rollback: current %s, builds %d → %d", env.CurrentDeploymentID, builds, e.builder.Builds())
	}
	if b := body("web.slipway.localhost"); b != first.ID {
		t.Errorf("default hostname serves %q after rollback, want %s", b, first.ID)
	}
	if code, _ := e.get(second.ID + ".slipway.localhost"); code != http.StatusOK {
		t.Errorf("the previous deployment lost its preview URL: %d", code)
	}
	stopped, _ := e.ctl.Stop(ctx, second.ID)
	if _, err := e.ctl.Promote(ctx, stopped.ID); !errors.Is(err, store.ErrConflict) {
		t.Errorf("promoting a STOPPED deployment: %v", err)
	}
}

func TestRedeployReusesImage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	first := e.waitFor(e.deploy().ID, settled)
	builds := e.builder.Builds()
	again, err := e.ctl.Redeploy(ctx, first.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	again = e.waitFor(again.ID, settled)
	if again.Status != string(Running) || again.Trigger != "redeploy" || again.ImageDigest != first.ImageDigest || e.builder.Builds() != builds {
		t.Errorf("redeploy: %s %s digest %s builds %d→%d", again.Status, again.Trigger, again.ImageDigest, builds, e.builder.Builds())
	}
	rebuilt, _ := e.ctl.Redeploy(ctx, first.ID, true)
	e.waitFor(rebuilt.ID, settled)
	if e.builder.Builds() != builds+1 {
		t.Errorf("--rebuild did not build")
	}
}

func TestEnvVarsReachTheAppAndStayEncrypted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p, _ := e.store.GetProject(ctx, "web")
	env, _ := e.store.GetEnvironment(ctx, p.ID, "production")
	rules, err := project.New(project.Config{Store: e.store, Lifecycle: e.ctl, Secrets: e.box})
	if err != nil {
		t.Fatal(err)
	}
	if err := rules.SetVar(ctx, env, "DATABASE_URL", "postgres://u:hunter2@db/app", true); err != nil {
		t.Fatal(err)
	}
	d := e.waitFor(e.deploy().ID, settled)
	rec := httptest.NewRecorder()
	(&router.Router{Table: e.table}).ServeHTTP(rec, httptest.NewRequest("GET", "http://"+d.ID+".slipway.localhost/env?name=DATABASE_URL", nil))
	if rec.Body.String() != "postgres://u:hunter2@db/app" {
		t.Errorf("app sees DATABASE_URL = %q", rec.Body.String())
	}
	stored, _ := e.store.ListEnvVars(ctx, env.ID)
	if bytes.Contains(stored[0].Value, []byte("hunter2")) {
		t.Error("variable stored in clear")
	}
}

func TestRetentionKeepsNewestAndCurrent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.ctl.Close()
	e.keep = 2
	e.start()
	var ids []string
	for i := 0; i < 4; i++ {
		ids = append(ids, e.waitFor(e.deploy().ID, settled).ID)
	}
	// Roll back to the oldest still running, then deploy once more.
	if _, err := e.ctl.Promote(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	d, _ := e.ctl.Create(ctx, CreateRequest{Project: "web", Trigger: "upload", Promote: false, Source: tarOf(t)})
	e.waitFor(d.ID, settled)
	// Retention runs just after a deployment is announced RUNNING, so the
	// retired ones are waited for rather than read at once.
	for _, id := range ids[:2] {
		e.waitFor(id, func(s Status) bool { return s == Stopped })
	}
	statuses := map[string]string{}
	for _, id := range append(ids, d.ID) {
		dd, _ := e.store.GetDeployment(ctx, id)
		statuses[id] = dd.Status
	}
	want := map[string]string{ids[0]: "STOPPED", ids[1]: "STOPPED", ids[2]: "RUNNING", ids[3]: "RUNNING", d.ID: "RUNNING"}
	for id, st := range want {
		if statuses[id] != st {
			t.Errorf("deployment %d (%s): %s, want %s", indexOf(append(ids, d.ID), id), id, statuses[id], st)
		}
	}
	// STOPPED is persisted before the stop is acted on: the preview's
	// route changes a moment after the status does.
	waitUntil(t, "the retired deployment's preview answers 410", func() bool {
		code, _ := e.get(ids[1] + ".slipway.localhost")
		return code == http.StatusGone
	})
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func tarOf(t *testing.T) *bytes.Buffer {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func TestEnqueueOnce(t *testing.T) {
	e := newEnv(t)
	e.ctl.Close() // no workers: what is queued stays in the queue
	e.ctl.enqueue(store.Deployment{ID: "a", ProjectID: "p"})
	e.ctl.enqueue(store.Deployment{ID: "a", ProjectID: "p"})
	e.ctl.enqueue(store.Deployment{ID: "b", ProjectID: "p"})
	if n := e.ctl.queue.len(); n != 2 {
		t.Errorf("queue holds %d ids after enqueueing a, a, b; want 2", n)
	}
}

// TestRequestInFlightKeepsAwake: a request that outlives the idle timeout
// (a stream, a WebSocket) keeps its deployment awake; idleness counts from
// its end.
func TestRequestInFlightKeepsAwake(t *testing.T) {
	e := newEnv(t)
	_, asleep := e.deployIdling("300ms")
	rt := &router.Router{Table: e.table, OnRequest: e.ctl.Touch, OnRequestDone: e.ctl.RequestDone}
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil { // the router aborts a broken answer
				done <- answer{-1, fmt.Sprint(r)}
			}
		}()
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, httptest.NewRequest("GET", "http://web.slipway.localhost/hold?ms=2000", nil))
		done <- answer{rec.Code, rec.Body.String()}
	}()
	// Checked until the answer is complete: asleep at any point would
	// mean the instance was stopped under the request.
	timeout := time.After(15 * time.Second)
	for held := true; held; {
		select {
		case a := <-done:
			if a.code != http.StatusOK || a.body != "holding\ndone\n" {
				t.Fatalf("held request: %d %q", a.code, a.body)
			}
			held = false
		case <-time.After(50 * time.Millisecond):
			if asleep() {
				t.Fatal("scaled to zero with a request in flight")
			}
		case <-timeout:
			t.Fatal("the held request never ended")
		}
	}
	waitUntil(t, "scaled to zero once the request ended", asleep)
}

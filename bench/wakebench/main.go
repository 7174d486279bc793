// Command wakebench measures waking from zero: the time from a request to
// the first byte of the answer for a scaled-to-zero deployment (the server
// runs with --idle-timeout 2s), over many wakes, for examples/hello (a
// static Go binary) and optionally a Python app. Each app is set beside two
// baselines of its own, measured in the same run with as many samples:
//
//   - plain process: the app started on the host without namespaces or
//     cgroups, exec → first 200. For hello, the app built natively with go
//     build; for the Python app, its deployment's start command chrooted
//     into its image's filesystem unpacked into a plain directory, with the
//     image config's Env, WorkingDir and User.
//
//   - runc driver alone: the deployed image started in a sandbox by
//     Slipway's runc driver directly (Driver.Start → first 200 through
//     Driver.Dial, with the deployment's start command), the floor a wake
//     approaches.
//
// The baselines are interleaved with the wakes: one sample of each after
// every wake.
//
// With -gvisor (runsc installed), hello is also measured in the gvisor
// sandbox: its image started by the driver with gVisor's runsc alone (a
// third baseline, set beside runc's), and woken through Slipway as a
// project whose sandbox is gvisor. With -microvm, hello is also woken
// through Slipway as a project whose sandbox is microvm (each wake boots
// a VM).
//
// Usage:
//
//	wakebench -bin bin/slipway -data DIR [-hello examples/hello] [-python examples/fastapi-uv] [-wakes 25] [-prepared-sandboxes 8] [-gvisor] [-microvm]
//	wakebench -snapshot -bin bin/slipway -data DIR -python examples/flask-pip [-wakes 25]
//
// With -snapshot only the Python app is measured, in the gvisor sandbox:
// its cold start (plain process; the gvisor driver alone, cold and from a
// snapshot) beside its wakes through Slipway resuming the deployment's
// snapshot restored ahead (the default), then restored at the wake
// (--restore-ahead-memory=0), then its cold wakes (--snapshots=false), the
// server restarted between them (see snapshot.go).
//
// With -prepared-sandboxes above 0 (the default) each wake waits, before
// it is sent, until the deployment's sandbox for it is prepared ahead, as
// a request after a real idle timeout finds it; the wakes are reported in
// all and split by whether they started a prepared sandbox.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/bench/internal/appstart"
	"github.com/slipwayhq/slipway/bench/internal/benchsrv"
	"github.com/slipwayhq/slipway/bench/internal/report"
	"github.com/slipwayhq/slipway/bench/internal/stats"
	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/runc"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "wakebench:", err)
		os.Exit(1)
	}
}

type series struct {
	Name    string          `json:"name"`
	Samples []time.Duration `json:"samples_ns"`
	Note    string          `json:"note,omitempty"`
	Failed  string          `json:"failed,omitempty"`
}

func run() error {
	bin := flag.String("bin", "bin/slipway", "the slipway binary")
	data := flag.String("data", "", "data directory (one pushbench used keeps the build cache warm)")
	hello := flag.String("hello", "examples/hello", "the Go example app")
	python := flag.String("python", "", "a Python example app (optional)")
	wakes := flag.Int("wakes", 25, "wakes to measure per app")
	gvisor := flag.Bool("gvisor", false, "also measure hello in the gvisor sandbox (needs runsc)")
	microvm := flag.Bool("microvm", false, "also measure hello's wakes in the microvm sandbox (needs scripts/install-microvm.sh)")
	idle := flag.Duration("idle", 2*time.Second, "the server's --idle-timeout")
	preparedN := flag.Int("prepared-sandboxes", 8, "the server's --prepared-sandboxes (0: wakes start new sandboxes)")
	out := flag.String("out", "", "Markdown section to write (default: stdout)")
	jsonOut := flag.String("json", "", "JSON results to write")
	snapshot := flag.Bool("snapshot", false, "measure only the -python app (a Flask app) on gvisor: its cold start beside snapshot wakes and cold wakes (see snapshot.go)")
	flag.Parse()
	if *data == "" {
		return errors.New("-data is required")
	}
	if *snapshot {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		return runSnapshot(ctx, snapshotOpts{bin: *bin, data: *data, python: *python, wakes: *wakes, prepared: *preparedN,
			idle: *idle, out: *out, json: *jsonOut})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	work, err := os.MkdirTemp("", "wakebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	loadBefore := report.LoadAvg()

	// hello's plain process: the app built natively.
	native := filepath.Join(work, "hello-native")
	build := exec.Command("go", "build", "-o", native, ".")
	build.Dir = *hello
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s natively: %v\n%s", *hello, err, out)
	}

	waitPrepared = *preparedN > 0
	srv, _, err := benchsrv.Start(ctx, serverproc.Config{Binary: *bin, DataDir: *data, IdleTimeout: *idle, DeployWindow: 5 * time.Minute,
		Args: []string{"--prepared-sandboxes", strconv.Itoa(*preparedN)}})
	if err != nil {
		return err
	}
	defer benchsrv.Shutdown(srv)
	c := srv.Client()

	helloApp := &appResult{Name: filepath.Base(*hello), Dir: *hello, Kind: "static Go binary",
		Plain:  &series{Name: filepath.Base(*hello) + ": plain process: exec of the natively built binary → first 200"},
		Driver: driverSeries(filepath.Base(*hello))}
	if helloApp.Dep, err = deployApp(ctx, c, "hello", *hello, work); err != nil {
		return err
	}
	baselines := []*sampler{{se: helloApp.Plain, sample: func(int) (time.Duration, error) { return plainStart(native) }}}
	// hello's runc driver alone: the same image in a sandbox, started by
	// the runc driver directly (no control plane, no router).
	if ds := helloApp.driverBaseline(ctx, work, "go", srv.Token()); ds != nil {
		defer ds.close()
		baselines = append(baselines, ds)
	}
	// hello's gvisor driver alone: the same image, the same driver, with
	// runsc as the runtime.
	if *gvisor {
		gs := &series{Name: helloApp.Name + ": gvisor driver alone: Driver.Start → first 200 through Driver.Dial (runsc; image already unpacked)"}
		helloApp.Extra = append(helloApp.Extra, gs)
		if ds, err := driverSampler(ctx, gs, work, "gv", runc.GVisor, helloApp.Dep.Image, srv.Token(), appstart.StartCommandArgs(helloApp.Dep.StartCommand), ""); err != nil {
			gs.Failed = err.Error()
		} else {
			defer ds.close()
			baselines = append(baselines, ds)
		}
	}
	if helloApp.Wakes, err = measureWakes(ctx, c, srv, "hello", helloApp.Name, helloApp.Dep, *wakes, 0, baselines); err != nil {
		return err
	}
	for _, sb := range []struct {
		kind string
		on   bool
	}{{"gvisor", *gvisor}, {"microvm", *microvm}} {
		kind := sb.kind
		if !sb.on {
			continue
		}
		ws, err := sandboxWakes(ctx, c, srv, helloApp, work, *wakes, kind)
		if err != nil {
			ws = []*series{{Name: helloApp.Name + ": wake through Slipway on " + kind, Failed: err.Error()}}
		}
		helloApp.Wakes = append(helloApp.Wakes, ws...)
	}
	apps := []*appResult{helloApp}

	if *python != "" {
		py := &appResult{Name: filepath.Base(*python), Dir: *python, Kind: "Python",
			Plain:  &series{Name: filepath.Base(*python) + ": plain process: the start command chrooted into the unpacked image, no namespaces or cgroups, exec → first 200"},
			Driver: driverSeries(filepath.Base(*python))}
		py.Dep, err = deployApp(ctx, c, "python", *python, work)
		if err != nil {
			py.Wakes = []*series{{Name: py.Name + ": wake through Slipway", Failed: err.Error()}}
			py.Driver.Failed = "no deployed image to start"
			py.Plain.Failed = py.Driver.Failed
		} else {
			var baselines []*sampler
			if cs, err := chrootSampler(ctx, py.Plain, work, "py", py.Dep.Image, srv.Token(), py.Dep.StartCommand); err != nil {
				py.Plain.Failed = err.Error()
			} else {
				baselines = append(baselines, cs)
			}
			if ds := py.driverBaseline(ctx, work, "py", srv.Token()); ds != nil {
				defer ds.close()
				baselines = append(baselines, ds)
			}
			if py.Wakes, err = measureWakes(ctx, c, srv, "python", py.Name, py.Dep, *wakes, 0, baselines); err != nil {
				py.Wakes = []*series{{Name: py.Name + ": wake through Slipway", Failed: err.Error()}}
			}
		}
		apps = append(apps, py)
	}

	var all []*series
	for _, a := range apps {
		all = append(all, a.series()...)
	}
	var s report.Section
	s.Heading("2. Wake from zero")
	s.P("Each app is deployed on a server started with `--idle-timeout %s`; before each wake the test waits for the runtime log's \"scaled to zero\" event and for the app's process to be gone, then sends one GET through the router on a new connection and times the first byte of the answer. The server's own record of each wake (`GET /api/v1/deployments/{id}/wakes`: from the request that found no instance to the first passed health check) is shown beside it. Load average before/after: %s / %s.",
		*idle, loadBefore, report.LoadAvg())
	if *preparedN > 0 {
		s.P("The server runs with `--prepared-sandboxes %d`: a deployment that falls asleep gets the sandbox of its next wake prepared ahead (filesystem, network, cgroup, `runc create`), so the wake runs `runc start`, the app's own start and one health check. Before each wake the test also waits until that sandbox is prepared (the deployment's newest instance says `prepared`, no longer `preparing`), as a request after a real idle timeout finds it. The server's record says which wakes started a prepared sandbox; when some did and some did not, the client's samples are also shown split.", *preparedN)
	} else {
		s.P("The server runs with `--prepared-sandboxes 0`: every wake makes its sandbox.")
	}
	s.P("Each app is compared with two baselines of its own, measured in the same run with as many samples as wakes; the ratio columns divide a row's p50 by the p50 of the baseline of the same app, never of another:")
	s.P("- *plain process*: the app started on the host as an ordinary process — no namespaces, no cgroups, no overlay filesystem, no proxy — timed from exec to the first 200 on its port, the process group killed after each sample. For %s, the app built natively with `go build` (CGO_ENABLED=0) and exec'd with PORT set. For the Python app, the deployment's start command (run as the control plane runs it, `/bin/sh -c \"…\"`) chrooted into the app's deployed image unpacked into a plain directory, with the image config's Env, WorkingDir and User and PORT set to a free loopback port.\n"+
		"- *runc driver alone*: the app's deployed image started in a sandbox by Slipway's runc driver directly, with the deployment's start command — no control plane, no router — timed from Driver.Start to the first 200 through Driver.Dial; the image is already unpacked (the first start, which pulls and unpacks it, is not counted). It is the floor a wake approaches.\n\n"+
		"The baselines are interleaved with the wakes, so that the three see the same machine: after each wake, while the woken app idles, one sample of each of its baselines is taken; then the app is left to fall asleep again before the next wake.",
		helloApp.Dir)
	for _, a := range apps {
		s.Sub(fmt.Sprintf("%s (%s)", a.Dir, a.Kind))
		if a.Dep.ID != "" {
			cmd := "the image's own entrypoint and cmd"
			if a.Dep.StartCommand != "" {
				cmd = "`" + a.Dep.StartCommand + "`"
			}
			s.P("Start command: %s.", cmd)
		}
		s.Table(a.table())
		for _, se := range a.series() {
			if se.Note != "" {
				s.P("*%s*: %s", a.label(se), se.Note)
			}
		}
	}
	s.P("With fewer than 100 samples p99 is the slowest sample (nearest rank).")
	return s.Write(*out, *jsonOut, all)
}

// appResult is one app's wakes and its own two baselines.
type appResult struct {
	Name   string // the example's directory name, e.g. "hello"
	Dir    string // the example's directory, as given
	Kind   string // "static Go binary", "Python"
	Dep    api.Deployment
	Plain  *series   // exec → first 200 as a plain process
	Driver *series   // the runc driver alone
	Extra  []*series // other baselines (the gvisor driver alone)
	Wakes  []*series // wakes through Slipway, and the server's record of them
}

// driverBaseline returns the sampler of the app's runc-driver-alone
// baseline, or nil with its series marked failed.
func (a *appResult) driverBaseline(ctx context.Context, work, tag, token string) *sampler {
	ds, err := driverSampler(ctx, a.Driver, work, tag, runc.Name, a.Dep.Image, token, appstart.StartCommandArgs(a.Dep.StartCommand), "")
	if err != nil {
		a.Driver.Failed = err.Error()
		return nil
	}
	return ds
}

func driverSeries(app string) *series {
	return &series{Name: app + ": runc driver alone: Driver.Start → first 200 through Driver.Dial (image already unpacked)"}
}

// series lists the app's series, baselines first (the JSON results).
func (a *appResult) series() []*series {
	return append(append([]*series{a.Plain, a.Driver}, a.Extra...), a.Wakes...)
}

// label is a series' name without the app's name in front of it.
func (a *appResult) label(se *series) string {
	return strings.TrimPrefix(se.Name, a.Name+": ")
}

// table is the app's table: every row's p50 compared with this app's own
// baselines.
func (a *appResult) table() [][]string {
	plain := stats.Summarize(a.Plain.Samples)
	driver := stats.Summarize(a.Driver.Samples)
	rows := [][]string{{"what", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "p50 vs this app's plain process", "p50 vs this app's runc driver"}}
	for _, se := range a.series() {
		if se.Failed != "" {
			rows = append(rows, []string{a.label(se), "0", "failed: " + benchsrv.Trim(se.Failed, 200), "", "", "", "", ""})
			continue
		}
		m := stats.Summarize(se.Samples)
		rows = append(rows, []string{a.label(se), strconv.Itoa(m.N), stats.MS(m.P50), stats.MS(m.P90), stats.MS(m.P99), stats.MS(m.Max),
			stats.Ratio(float64(m.P50), float64(plain.P50)), stats.Ratio(float64(m.P50), float64(driver.P50))})
	}
	return rows
}

// sampler takes one sample of a baseline at a time, so that baselines can
// be interleaved with the wakes.
type sampler struct {
	se     *series
	sample func(i int) (time.Duration, error)
	close  func()
}

// deployApp deploys dir as project and waits for it to run.
func deployApp(ctx context.Context, c *serverproc.Client, project, dir, work string) (api.Deployment, error) {
	if _, err := c.Project(ctx, project); err != nil {
		if err := c.CreateProject(ctx, project); err != nil {
			return api.Deployment{}, err
		}
	}
	app := filepath.Join(work, project)
	if err := benchsrv.CopyDir(dir, app); err != nil {
		return api.Deployment{}, err
	}
	p, err := benchsrv.Deploy(ctx, c, project, app, c.Host(project))
	if err != nil {
		return api.Deployment{}, err
	}
	if p.Status != "RUNNING" {
		return api.Deployment{}, fmt.Errorf("%s is %s: %s", p.ID, p.Status, p.Reason)
	}
	return c.Deployment(ctx, p.ID)
}

// measureWakes wakes the deployment d of project n times. After each wake
// (the app now idle), one sample of each baseline is taken; a baseline that
// fails is marked so and not sampled again. Sampling after the wake rather
// than before keeps the baselines' own teardown (a sandbox's network
// namespace, a killed process) out of the wake that follows. name names the
// series (the example's directory name).
//
// offset is how many wakes of the deployment were measured before (by a
// server before a restart): the server's record is then this call's n
// newest wakes.
func measureWakes(ctx context.Context, c *serverproc.Client, srv *serverproc.Server, project, name string, d api.Deployment, n, offset int, baselines []*sampler) ([]*series, error) {
	ttfb := &series{Name: name + ": wake through Slipway, request → first byte (client)"}
	for i := 0; i < n; i++ {
		if err := waitAsleep(ctx, c, d.ID, offset+i+1); err != nil {
			return nil, err
		}
		t, code, body, err := benchsrv.TTFB(ctx, srv.Router(), c.Host(project), "/")
		if err != nil || code != 200 {
			return nil, fmt.Errorf("wake %d of %s: %d %q %v", i+1, project, code, body, err)
		}
		ttfb.Samples = append(ttfb.Samples, t)
		fmt.Fprintf(os.Stderr, "%s wake %2d: %s ms\n", project, i+1, stats.MS(t))
		for _, b := range baselines {
			if b.se.Failed != "" {
				continue
			}
			t, err := b.sample(i + 1)
			if err != nil {
				b.se.Failed = err.Error()
				continue
			}
			b.se.Samples = append(b.se.Samples, t)
		}
	}
	var ws []api.Wake
	if err := c.JSON(ctx, "GET", "/api/v1/deployments/"+d.ID+"/wakes", nil, &ws); err != nil {
		return nil, err
	}
	if offset > 0 {
		ws = ws[:min(len(ws), n)] // newest first
	}
	server := &series{Name: name + ": the server's record of the same wakes (request → first passed health check)"}
	failed, prepared := 0, 0
	for _, w := range ws {
		if w.Prepared {
			prepared++
		}
		if !w.OK {
			failed++
			continue
		}
		server.Samples = append(server.Samples, time.Duration(w.DurationMS*float64(time.Millisecond)))
	}
	var notes []string
	if failed > 0 {
		notes = append(notes, fmt.Sprintf("%d wakes failed", failed))
	}
	notes = append(notes, fmt.Sprintf("%d of %d wakes started a sandbox prepared ahead", prepared, len(ws)))
	server.Note = strings.Join(notes, "; ")
	out := []*series{ttfb, server}
	// The client's samples split by whether the wake started a sandbox
	// prepared ahead: the server's record lists this run's wakes newest
	// first, one per sample.
	if len(ws) == len(ttfb.Samples) && prepared > 0 && prepared < len(ws) {
		ahead := &series{Name: name + ": wake through Slipway, request → first byte (client), sandbox prepared ahead"}
		fresh := &series{Name: name + ": wake through Slipway, request → first byte (client), new sandbox"}
		for i, t := range ttfb.Samples {
			if ws[len(ws)-1-i].Prepared {
				ahead.Samples = append(ahead.Samples, t)
			} else {
				fresh.Samples = append(fresh.Samples, t)
			}
		}
		out = append(out, ahead, fresh)
	}
	return out, nil
}

// waitAsleep waits until the deployment's runtime log holds its n-th
// "scaled to zero" event and its app process is gone.
func waitAsleep(ctx context.Context, c *serverproc.Client, id string, n int) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		lines, err := c.RuntimeLogs(ctx, id)
		if err != nil {
			return err
		}
		count := 0
		for _, l := range lines {
			if l.Stream == "slipway" && strings.HasPrefix(l.Text, "scaled to zero") {
				count++
			}
		}
		if count >= n && len(serverproc.AppProcesses()[id]) == 0 {
			return waitForPrepared(ctx, c, id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("deployment %s was not scaled to zero (wake %d) within a minute", id, n)
}

// waitPrepared: the server prepares sandboxes ahead (waitForPrepared).
var waitPrepared bool

// settle is how long a wake waits after its sandbox is prepared: runsc's
// sandbox goes on initialising for a moment after `runsc create`
// returns, which a wake after a real idle timeout (minutes) never meets.
var settle time.Duration

// waitForPrepared waits, as a request after a real idle timeout would
// find it, until the sleeping deployment's sandbox for its next wake is
// prepared (its newest instance says "prepared", not "preparing"), for at
// most 10 s: a
// sandbox that cannot be prepared leaves the wake to start a new one.
func waitForPrepared(ctx context.Context, c *serverproc.Client, id string) error {
	for deadline := time.Now().Add(10 * time.Second); waitPrepared && time.Now().Before(deadline); {
		d, err := c.Deployment(ctx, id)
		if err != nil {
			return err
		}
		if len(d.Instances) > 0 && d.Instances[0].Status == "prepared" {
			time.Sleep(settle)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// plainStart starts the binary as a plain process and times exec → first
// 200 on its port.
func plainStart(binary string) (time.Duration, error) {
	port, err := serverproc.FreePort()
	if err != nil {
		return 0, err
	}
	d, err := appstart.Time(appstart.Native(binary, port), "127.0.0.1:"+strconv.Itoa(port), 200*time.Microsecond, 10*time.Second)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", binary, err)
	}
	return d, nil
}

// driverSampler starts image with the runc driver alone, with command
// (nil: the image's own), as the control plane would: once to pull and
// unpack it (not counted), then once per sample. tag keeps the driver's
// root and instance IDs apart from another app's.
//
// With snapshot set (gvisor), the first instance is saved there once it
// answers (Driver.Snapshot), and every sample resumes it (Spec.Snapshot)
// instead of starting the app.
func driverSampler(ctx context.Context, se *series, work, tag, rt, image, token string, command []string, snapshot string) (*sampler, error) {
	if image == "" {
		return nil, errors.New("no deployed image to start")
	}
	d, err := runc.New(runc.Config{
		Runtime:       rt,
		Root:          filepath.Join(work, "runc-"+tag),
		RemoteOptions: []remote.Option{remote.WithAuth(&authn.Basic{Username: "slipway", Password: token})},
		StopGrace:     time.Second,
	})
	if err != nil {
		return nil, err
	}
	logs := filepath.Join(work, "runc-logs")
	os.MkdirAll(logs, 0o755)
	start := func(i int) (time.Duration, error) {
		id := fmt.Sprintf("wakebench%d-%s%d", os.Getpid()%100000, tag, i)
		spec := runtime.Spec{ID: id, Image: image, Command: command, StdoutPath: filepath.Join(logs, id+".out"), StderrPath: filepath.Join(logs, id+".err"),
			Env: []string{"SLIPWAY_DEPLOYMENT_ID=wakebench"}}
		if i > 0 {
			spec.Snapshot = snapshot
		}
		t0 := time.Now()
		h, err := d.Start(ctx, spec)
		if err != nil {
			return 0, err
		}
		defer d.Stop(context.Background(), h)
		for time.Since(t0) < 60*time.Second {
			if appstart.Get200(func() (net.Conn, error) { return d.Dial(ctx, h, 3000) }) {
				took := time.Since(t0)
				if i == 0 && snapshot != "" {
					if err := d.Snapshot(ctx, h, snapshot); err != nil {
						return 0, fmt.Errorf("saving a snapshot: %w", err)
					}
				}
				return took, nil
			}
			time.Sleep(time.Millisecond)
		}
		return 0, errors.New("the sandboxed app did not answer within 60 s")
	}
	first, err := start(0)
	if err != nil {
		d.Close()
		return nil, err
	}
	se.Note = fmt.Sprintf("the first start, which also pulled and unpacked the image, took %s ms and is not counted", stats.MS(first))
	return &sampler{se: se, sample: start, close: func() { d.Close() }}, nil
}

// sandboxWakes deploys the app again as a project whose sandbox is kind
// (gvisor, microvm) and measures n wakes of it, as measureWakes does (no
// baselines: the app's are measured beside its runc wakes).
func sandboxWakes(ctx context.Context, c *serverproc.Client, srv *serverproc.Server, a *appResult, work string, n int, kind string) ([]*series, error) {
	project := "hello-" + kind
	if err := c.CreateProject(ctx, project); err != nil {
		return nil, err
	}
	if err := c.JSON(ctx, "PATCH", "/api/v1/projects/"+project+"/settings", map[string]string{"sandbox": kind}, nil); err != nil {
		return nil, err
	}
	d, err := deployApp(ctx, c, project, a.Dir, work)
	if err != nil {
		return nil, err
	}
	ws, err := measureWakes(ctx, c, srv, project, a.Name, d, n, 0, nil)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		w.Name = strings.Replace(w.Name, "wake through Slipway", "wake through Slipway on "+kind, 1)
		w.Name = strings.Replace(w.Name, "the server's record of the same wakes", "the server's record of the "+kind+" wakes", 1)
	}
	return ws, nil
}

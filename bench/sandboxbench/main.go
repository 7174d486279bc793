// Command sandboxbench sets Slipway's sandboxes side by side in one run:
// runc always, gvisor with -gvisor (runsc installed), microvm with
// -microvm (QEMU, the guest kernel and slipway-init installed). Each app
// — examples/hello (a static Go binary) and, with -python, a Python app
// (examples/flask-pip) — is deployed as one project per sandbox kind on
// one data directory, and for each it measures, through the server's
// router:
//
//   - start → first 200: a request to the app scaled to zero on a server
//     with --prepared-sandboxes 0, so that Slipway makes the sandbox and
//     starts the app while the request waits (a cold start);
//   - wake → first byte: the same on a server with --prepared-sandboxes 8,
//     whose wakes start a sandbox prepared ahead where the driver prepares
//     one (runc and gvisor; microvm prepares none and boots);
//   - memory of an instance idle (scaled to zero, its sandbox for the next
//     wake prepared) and running (just after the first 200 of a wake): the
//     PSS of the host processes that make up its sandbox, with their RSS
//     and its cgroup's memory beside (see footprint);
//   - router throughput to hello in each sandbox (wrk through the router).
//
// Each figure is set beside runc's same figure and beside the app run as a
// plain process on the host (bench/internal/appstart), measured in the
// same run and interleaved with the sandboxes' samples.
//
//	sandboxbench -bin bin/slipway -data DIR [-hello examples/hello] [-python examples/flask-pip] [-gvisor] [-microvm] [-samples 5]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/bench/internal/appstart"
	"github.com/slipwayhq/slipway/bench/internal/benchsrv"
	"github.com/slipwayhq/slipway/bench/internal/report"
	"github.com/slipwayhq/slipway/bench/internal/stats"
	"github.com/slipwayhq/slipway/bench/internal/wrk"
	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sandboxbench:", err)
		os.Exit(1)
	}
}

// series is one kind of sample: the client's time to the first byte of
// each 200, and the answers that were not a 200.
type series struct {
	Samples  []time.Duration `json:"samples_ns"`
	Failures int             `json:"failures,omitempty"`
	Failed   string          `json:"failed,omitempty"` // the first failure
	// Record is the server's record of the same starts or wakes.
	Record wakeRecord `json:"server_record"`
}

// maxFailures is how many answers other than 200 a series takes before it
// is not sampled again.
const maxFailures = 2

// wakeRecord is the server's record of a target's wakes in a span of
// time: each from the request that found no instance to the new
// instance's first passed health check, whatever the client saw.
type wakeRecord struct {
	N        int             `json:"n"`
	Prepared int             `json:"prepared"` // started a sandbox prepared ahead
	Failed   int             `json:"failed"`
	OK       []time.Duration `json:"ok_ns"`
}

// app is one example app, its plain-process baseline and its deployments.
type app struct {
	Name    string      `json:"name"` // the example's directory name
	Dir     string      `json:"dir"`
	Kind    string      `json:"kind"` // "static Go binary", "Python"
	Plain   series      `json:"plain_start"`
	PlainFP []footprint `json:"plain_memory"`
	// PlainRouter is wrk straight to the app as a plain process (hello).
	PlainRouter []wrk.Result `json:"plain_wrk,omitempty"`
	Targets     []*target    `json:"sandboxes"`
	PlainNote   string       `json:"plain_note,omitempty"`

	// start starts the app as a plain process on port, its output in
	// files named after i.
	start func(port, i int) (*appstart.Proc, time.Duration, error)
}

// target is an app deployed in one sandbox kind.
type target struct {
	Kind    string         `json:"sandbox"`
	Project string         `json:"project"`
	Dep     api.Deployment `json:"-"`
	Failed  string         `json:"failed,omitempty"`
	Starts  series         `json:"starts"`
	Wakes   series         `json:"wakes"`
	Idle    []footprint    `json:"idle_memory"`
	Running []footprint    `json:"running_memory"`
	Router  []wrk.Result   `json:"wrk,omitempty"`

	noPrepare bool // the driver prepares no sandbox: found asleep without one for 10 s
}

func run() error {
	bin := flag.String("bin", "bin/slipway", "the slipway binary")
	data := flag.String("data", "", "data directory (one pushbench used keeps the build cache warm)")
	hello := flag.String("hello", "examples/hello", "the Go example app")
	python := flag.String("python", "", "a Python example app (optional)")
	gvisor := flag.Bool("gvisor", false, "also measure the gvisor sandbox (needs runsc)")
	microvm := flag.Bool("microvm", false, "also measure the microvm sandbox (needs scripts/install-microvm.sh)")
	samples := flag.Int("samples", 5, "starts and wakes per app and sandbox")
	idle := flag.Duration("idle", 2*time.Second, "the server's --idle-timeout")
	duration := flag.Duration("duration", 5*time.Second, "length of each wrk run")
	rounds := flag.Int("rounds", 2, "interleaved wrk rounds")
	out := flag.String("out", "", "Markdown section to write (default: stdout)")
	jsonOut := flag.String("json", "", "JSON results to write")
	flag.Parse()
	if *data == "" {
		return errors.New("-data is required")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found (apt-get install wrk; bench/run.sh does)")
	}
	kinds := []string{"runc"}
	if *gvisor {
		kinds = append(kinds, "gvisor")
	}
	if *microvm {
		kinds = append(kinds, "microvm")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	work, err := os.MkdirTemp("", "sandboxbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	logs := filepath.Join(work, "plain-logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	loadBefore := report.LoadAvg()

	// hello as a plain process: the app built natively.
	native := filepath.Join(work, "hello-native")
	build := exec.Command("go", "build", "-o", native, ".")
	build.Dir = *hello
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s natively: %v\n%s", *hello, err, out)
	}
	helloApp := &app{Name: filepath.Base(*hello), Dir: *hello, Kind: "static Go binary",
		PlainNote: "the app built natively with `go build` (CGO_ENABLED=0), exec'd with PORT set"}
	helloApp.start = func(port, i int) (*appstart.Proc, time.Duration, error) {
		cmd := appstart.Native(native, port)
		f, err := os.Create(filepath.Join(logs, fmt.Sprintf("hello-%d.out", i)))
		if err != nil {
			return nil, 0, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
		return appstart.Start(cmd, "127.0.0.1:"+strconv.Itoa(port), 200*time.Microsecond, 10*time.Second)
	}
	apps := []*app{helloApp}
	if *python != "" {
		apps = append(apps, &app{Name: filepath.Base(*python), Dir: *python, Kind: "Python"})
	}

	// The first server: no sandbox prepared ahead, every wake a cold start.
	cfg := serverproc.Config{Binary: *bin, DataDir: *data, IdleTimeout: *idle, DeployWindow: 5 * time.Minute,
		Args: []string{"--prepared-sandboxes", "0"}}
	srv, _, err := benchsrv.Start(ctx, cfg)
	if err != nil {
		return err
	}
	// The server of the moment, its deployments stopped at the end.
	defer func() { benchsrv.Shutdown(srv) }()
	c := srv.Client()
	var all []*target
	for _, a := range apps {
		for _, kind := range kinds {
			t := &target{Kind: kind, Project: "sb-" + shortName(a.Name) + "-" + kind}
			if t.Dep, err = deploy(ctx, c, t.Project, kind, a.Dir, work); err != nil {
				t.Failed = err.Error()
				fmt.Fprintf(os.Stderr, "%s: %v\n", t.Project, err)
			} else {
				all = append(all, t)
			}
			a.Targets = append(a.Targets, t)
		}
	}
	if len(apps) > 1 {
		py := apps[1]
		if err := py.chrootBaseline(ctx, srv.Token(), work, logs); err != nil {
			py.Plain.Failed = err.Error()
		}
	}

	// 1. Cold starts.
	startsFrom := time.Now()
	if err := measureAll(ctx, srv, apps, all, *samples, false); err != nil {
		return err
	}
	// 2. Wakes and memory, on a server that prepares sandboxes ahead:
	// the same data directory and addresses (images are stored by the
	// registry's address), the deployments asleep.
	if err := waitAllAsleep(ctx, c, all, false); err != nil {
		return err
	}
	srv.Stop(30 * time.Second)
	cfg.Listen, cfg.Router = srv.Config().Listen, srv.Config().Router
	cfg.Args = []string{"--prepared-sandboxes", "8"}
	if srv, _, err = benchsrv.Start(ctx, cfg); err != nil {
		return err
	}
	c = srv.Client()
	wakesFrom := time.Now()
	if err := measureAll(ctx, srv, apps, all, *samples, true); err != nil {
		return err
	}
	wakesTo := time.Now()
	// 3. Router throughput to hello in each sandbox.
	if err := throughput(ctx, srv, helloApp, all, *duration, *rounds); err != nil {
		return err
	}
	for _, t := range all {
		t.Starts.Record = record(ctx, c, t, startsFrom, wakesFrom)
		t.Wakes.Record = record(ctx, c, t, wakesFrom, wakesTo)
	}

	var s report.Section
	s.Heading("5. Per sandbox")
	s.P("Each app is deployed once per sandbox kind (%s), as a project of that kind, on one data directory; every figure goes through Slipway (its router, on a new connection) and is set beside runc's same figure and beside the app run as a plain process on the host, all measured in this run. Samples of the sandboxes and of the plain process are interleaved: in each round, one of each, every app asleep before each one. Load average before/after: %s / %s.",
		strings.Join(kinds, ", "), loadBefore, report.LoadAvg())
	s.P("- *start → first 200*: a GET to the app scaled to zero (the server's `--idle-timeout %s`) on a server with `--prepared-sandboxes 0`: the server makes the sandbox (filesystem, cgroup, the runtime's start; a network namespace wired ahead by the server's pool) and starts the app while the request waits; timed to the first byte of its 200.\n"+
		"- *wake → first byte*: the same on a server with `--prepared-sandboxes 8`: the wake starts the sandbox prepared when the app fell asleep (runc and gvisor: `runc create` / `runsc create`) after the test has waited for it, as a request after a real idle timeout finds it; microvm prepares none, so its wake is a boot.\n"+
		"- *the server's record*: the same starts and wakes as the server records them (`GET /api/v1/deployments/{id}/wakes`: from the request that found no instance to the new instance's first passed health check). A request the router stops holding gets a 503 (counted under *not 200*; a series stops after %d) while the wake goes on: the record holds it.\n"+
		"- *plain process*: %s; exec → first 200 on a loopback port, the process group killed after each sample.\n"+
		"- *memory*: what an instance's sandbox holds of the host's memory — the PSS (proportional set size) summed over the host processes that make it up: the processes in its cgroup (the app; `runc init` waiting in a prepared runc sandbox; runsc's sandbox), those whose command line names it (runsc's sandbox and gofer, QEMU) and their descendants (gVisor's stub processes, an app's workers). PSS counts a page shared between processes (a binary's text, a library, runsc's own binary, shared memory) once in all, split among them, so that N instances add up to what they hold together; RSS counts it in full in each, and is shown beside it. The cgroup's memory (memory.usage_in_bytes here: anonymous memory, page cache first read by the instance, its tmpfs writable layer and kernel memory, as its memory limit counts them) is shown too where the sandbox has one: QEMU runs in none of its own, and a guest's page cache is inside its RAM, so PSS is the one figure the three share. *Idle* is an instance asleep with its sandbox for the next wake prepared (nothing for microvm, which keeps nothing); *running* is read just after the first 200 of a wake. Medians of the samples.",
		*idle, maxFailures, helloApp.PlainNote)
	for _, a := range apps {
		s.Sub(fmt.Sprintf("%s (%s)", a.Dir, a.Kind))
		if a.PlainNote != "" && a != helloApp {
			s.P("Plain process: %s.", a.PlainNote)
		}
		s.Table(a.timeTable())
		s.Table(a.memoryTable())
		if len(a.PlainRouter) > 0 {
			s.P("Router throughput: small responses from the app, wrk with 1 thread and 32 connections for %s per run, %d interleaved rounds (medians), through the server's router to each sandbox (the app woken by one GET just before) and straight to the app run as a plain process on loopback (no router).", *duration, *rounds)
			s.Table(a.routerTable())
		}
		for _, t := range a.Targets {
			if t.Failed != "" {
				s.P("*%s*: failed: %s", t.Kind, benchsrv.Trim(t.Failed, 300))
				continue
			}
			s.P("*%s*: the server's record: %d of %d starts and %d of %d wakes started a sandbox prepared ahead. Processes counted running: %s; idle: %s.",
				t.Kind, t.Starts.Record.Prepared, t.Starts.Record.N, t.Wakes.Record.Prepared, t.Wakes.Record.N, procNames(t.Running), procNames(t.Idle))
			for _, se := range []series{t.Starts, t.Wakes} {
				if se.Failed != "" {
					s.P("*%s*: %d answers were not a 200, the first: %s", t.Kind, se.Failures, benchsrv.Trim(se.Failed, 300))
				}
			}
		}
	}
	s.P("With fewer than 100 samples p99 is the slowest sample (nearest rank).")
	return s.Write(*out, *jsonOut, apps)
}

// shortName is an example's name as a project name's part.
func shortName(name string) string {
	return strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(name))
}

// deploy creates project with the sandbox kind, deploys dir to it and
// waits for it to run.
func deploy(ctx context.Context, c *serverproc.Client, project, kind, dir, work string) (api.Deployment, error) {
	if _, err := c.Project(ctx, project); err != nil {
		if err := c.CreateProject(ctx, project); err != nil {
			return api.Deployment{}, err
		}
	}
	if err := c.JSON(ctx, "PATCH", "/api/v1/projects/"+project+"/settings", map[string]string{"sandbox": kind}, nil); err != nil {
		return api.Deployment{}, err
	}
	src := filepath.Join(work, project)
	if err := benchsrv.CopyDir(dir, src); err != nil {
		return api.Deployment{}, err
	}
	p, err := benchsrv.Deploy(ctx, c, project, src, c.Host(project))
	if err != nil {
		return api.Deployment{}, err
	}
	if p.Status != "RUNNING" {
		return api.Deployment{}, fmt.Errorf("%s is %s: %s", p.ID, p.Status, p.Reason)
	}
	return c.Deployment(ctx, p.ID)
}

// chrootBaseline makes the Python app's plain process: its image (the
// runc deployment's) unpacked into a plain directory, its start command
// chrooted into it.
func (a *app) chrootBaseline(ctx context.Context, token, work, logs string) error {
	var dep api.Deployment
	for _, t := range a.Targets {
		if t.Failed == "" {
			dep = t.Dep
			break
		}
	}
	if dep.Image == "" {
		return errors.New("no deployed image to start")
	}
	ch, err := appstart.NewChroot(ctx, dep.Image, token, filepath.Join(work, "py-rootfs"), dep.StartCommand, "sandboxbench")
	if err != nil {
		return err
	}
	a.PlainNote = fmt.Sprintf("the deployment's start command (%q, run as the control plane runs it) chrooted into the app's image unpacked into a plain directory (in %s ms, not counted), with the image config's Env, WorkingDir (%s) and User",
		dep.StartCommand, stats.MS(ch.Unpacked), ch.Dir)
	a.start = func(port, i int) (*appstart.Proc, time.Duration, error) {
		out, err := os.Create(filepath.Join(logs, fmt.Sprintf("py-%d.out", i)))
		if err != nil {
			return nil, 0, err
		}
		defer out.Close()
		errPath := filepath.Join(logs, fmt.Sprintf("py-%d.err", i))
		errf, err := os.Create(errPath)
		if err != nil {
			return nil, 0, err
		}
		defer errf.Close()
		p, d, err := appstart.Start(ch.Command(port, out, errf), "127.0.0.1:"+strconv.Itoa(port), time.Millisecond, 30*time.Second)
		if err != nil {
			return nil, 0, fmt.Errorf("sample %d: %w; stderr: %s", i, err, appstart.Tail(errPath, 300))
		}
		return p, d, nil
	}
	return nil
}

// plainSample starts the app as a plain process once: its start time and,
// with mem, its memory after the first 200.
func (a *app) plainSample(i int, mem bool) {
	if a.start == nil || a.Plain.Failed != "" { // a failed baseline is not sampled again
		return
	}
	port, err := serverproc.FreePort()
	if err != nil {
		a.Plain.Failed = err.Error()
		return
	}
	p, d, err := a.start(port, i)
	if err != nil {
		a.Plain.Failed = err.Error()
		return
	}
	if mem {
		a.PlainFP = append(a.PlainFP, measure(processTree(p.PID()), ""))
	}
	p.Stop()
	a.Plain.Samples = append(a.Plain.Samples, d)
}

// measureAll takes n samples of every target's start (wake false) or wake
// (wake true, with its memory idle and running), round by round, with one
// sample of each app's plain process after each round. A target that
// fails is marked so and not sampled again.
func measureAll(ctx context.Context, srv *serverproc.Server, apps []*app, all []*target, n int, wake bool) error {
	c := srv.Client()
	what := "start"
	if wake {
		what = "wake"
	}
	for i := 1; i <= n; i++ {
		for _, a := range apps {
			for _, t := range a.Targets {
				if t.Failed != "" {
					continue
				}
				se := &t.Starts
				if wake {
					se = &t.Wakes
				}
				if se.Failures >= maxFailures {
					continue
				}
				if err := waitAllAsleep(ctx, c, all, wake); err != nil {
					return err
				}
				if wake {
					t.Idle = append(t.Idle, instanceFootprint(ctx, c, t, "prepared"))
				}
				d, code, body, err := benchsrv.TTFB(ctx, srv.Router(), c.Host(t.Project), "/")
				if err == nil && code != 200 {
					err = fmt.Errorf("%d %q", code, benchsrv.Trim(string(body), 200))
				}
				if err != nil {
					se.Failures++
					if se.Failed == "" {
						se.Failed = fmt.Sprintf("%s %d after %s ms: %v", what, i, stats.MS(d), err)
					}
					fmt.Fprintf(os.Stderr, "%s %-8s %s %d: after %s ms: %v\n", a.Name, t.Kind, what, i, stats.MS(d), err)
					continue
				}
				se.Samples = append(se.Samples, d)
				if wake {
					// The woken instance, newest: its recorded status
					// may still say prepared just after its first 200.
					t.Running = append(t.Running, instanceFootprint(ctx, c, t, "prepared", "starting", "running"))
				}
				fmt.Fprintf(os.Stderr, "%s %-8s %s %d: %s ms\n", a.Name, t.Kind, what, i, stats.MS(d))
			}
			a.plainSample(i, wake)
		}
	}
	return nil
}

// instanceFootprint measures the newest instance of t's deployment if its
// status is one of statuses; an instance in another status (a microvm
// asleep keeps none prepared) holds nothing.
func instanceFootprint(ctx context.Context, c *serverproc.Client, t *target, statuses ...string) footprint {
	d, err := c.Deployment(ctx, t.Dep.ID)
	if err != nil || len(d.Instances) == 0 || !slices.Contains(statuses, d.Instances[0].Status) {
		return footprint{Cgroup: -1}
	}
	id := d.Instances[0].ID
	return measure(members(processes(), []string{id})[id], id)
}

// waitAllAsleep waits until every target's deployment is scaled to zero
// with no process of its stopped instances left and, with prepared, its
// sandbox for the next wake prepared (for at most 10 s per target: a
// target whose driver prepares none is then not waited for again).
func waitAllAsleep(ctx context.Context, c *serverproc.Client, all []*target, prepared bool) error {
	t0 := time.Now()
	for deadline := t0.Add(3 * time.Minute); time.Now().Before(deadline); {
		ok := true
		var gone []string
		for _, t := range all {
			d, err := c.Deployment(ctx, t.Dep.ID)
			if err != nil {
				return err
			}
			if len(d.Instances) == 0 {
				continue
			}
			switch st := d.Instances[0].Status; {
			case st == "prepared":
			case st == "idle" && (!prepared || t.noPrepare):
			case st == "idle" && time.Since(t0) > 10*time.Second:
				t.noPrepare = true
			default:
				ok = false
			}
			for _, in := range d.Instances {
				switch in.Status {
				case "idle", "stopped", "exited":
					gone = append(gone, in.ID)
				}
			}
		}
		if ok && len(members(processes(), gone)) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("the deployments did not all fall asleep within 3 minutes")
}

// record is the server's record of the wakes of t's deployment that
// started between from and to.
func record(ctx context.Context, c *serverproc.Client, t *target, from, to time.Time) wakeRecord {
	var ws []api.Wake
	var r wakeRecord
	if err := c.JSON(ctx, "GET", "/api/v1/deployments/"+t.Dep.ID+"/wakes", nil, &ws); err != nil {
		return r
	}
	for _, w := range ws {
		if w.StartedAt.Before(from) || !w.StartedAt.Before(to) {
			continue
		}
		r.N++
		if w.Prepared {
			r.Prepared++
		}
		if !w.OK {
			r.Failed++
			continue
		}
		r.OK = append(r.OK, time.Duration(w.DurationMS*float64(time.Millisecond)))
	}
	return r
}

// throughput runs wrk through the router to hello in each sandbox and
// straight to hello run as a plain process, in interleaved rounds.
func throughput(ctx context.Context, srv *serverproc.Server, a *app, all []*target, duration time.Duration, rounds int) error {
	c := srv.Client()
	for r := 1; r <= rounds; r++ {
		for _, t := range a.Targets {
			if t.Failed != "" {
				continue
			}
			if err := waitAllAsleep(ctx, c, all, true); err != nil {
				return err
			}
			host := c.Host(t.Project)
			if _, code, _, err := benchsrv.TTFB(ctx, srv.Router(), host, "/"); err != nil || code != 200 {
				t.Failed = fmt.Sprintf("waking it before wrk: %d %v", code, err)
				continue
			}
			res, err := wrk.Run(ctx, wrk.Options{URL: "http://" + srv.Router() + "/", Host: host, Duration: duration})
			if err != nil {
				return err
			}
			t.Router = append(t.Router, res)
			fmt.Fprintf(os.Stderr, "round %d %-8s %8.0f req/s  p99 %.2f ms\n", r, t.Kind, res.RPS, res.P99MS)
		}
		port, err := serverproc.FreePort()
		if err != nil {
			return err
		}
		p, _, err := a.start(port, 1000+r)
		if err != nil {
			return err
		}
		res, err := wrk.Run(ctx, wrk.Options{URL: "http://127.0.0.1:" + strconv.Itoa(port) + "/", Host: "bench", Duration: duration})
		p.Stop()
		if err != nil {
			return err
		}
		a.PlainRouter = append(a.PlainRouter, res)
		fmt.Fprintf(os.Stderr, "round %d plain    %8.0f req/s  p99 %.2f ms\n", r, res.RPS, res.P99MS)
	}
	return nil
}

// runc is the app's runc target, or nil.
func (a *app) runc() *target {
	for _, t := range a.Targets {
		if t.Kind == "runc" && t.Failed == "" {
			return t
		}
	}
	return nil
}

// timeTable: starts and wakes per sandbox, with the plain process.
func (a *app) timeTable() [][]string {
	rows := [][]string{{"what", "n", "p50 ms", "p90 ms", "p99 ms", "p50 vs runc", "p50 vs plain process", "not 200", "the server's record: p50 ms (n)"}}
	plain := stats.Summarize(a.Plain.Samples)
	rc := a.runc()
	row := func(label string, se series, base *series, server bool) {
		m := stats.Summarize(se.Samples)
		p50, p90, p99, vsRunc, vsPlain := "–", "–", "–", "–", "–"
		if m.N > 0 {
			p50, p90, p99 = stats.MS(m.P50), stats.MS(m.P90), stats.MS(m.P99)
			vsPlain = stats.Ratio(float64(m.P50), float64(plain.P50))
			if base != nil {
				vsRunc = stats.Ratio(float64(m.P50), float64(stats.Summarize(base.Samples).P50))
			}
		} else if se.Failed != "" && se.Failures == 0 {
			p50 = "failed: " + benchsrv.Trim(se.Failed, 200)
		}
		rec := "–"
		if server {
			r := stats.Summarize(se.Record.OK)
			rec = fmt.Sprintf("– (%d)", r.N)
			if r.N > 0 {
				rec = fmt.Sprintf("%s (%d)", stats.MS(r.P50), r.N)
			}
			if se.Record.Failed > 0 {
				rec += fmt.Sprintf(", %d failed", se.Record.Failed)
			}
		}
		rows = append(rows, []string{label, strconv.Itoa(m.N), p50, p90, p99, vsRunc, vsPlain, strconv.Itoa(se.Failures), rec})
	}
	row("plain process: exec → first 200", a.Plain, nil, false)
	for _, phase := range []string{"start → first 200 (new sandbox)", "wake → first byte (sandbox prepared ahead where the driver prepares one)"} {
		for _, t := range a.Targets {
			if t.Failed != "" && len(t.Starts.Samples) == 0 && t.Starts.Failures == 0 {
				continue
			}
			se, base := t.Starts, (*series)(nil)
			if rc != nil {
				base = &rc.Starts
			}
			if strings.HasPrefix(phase, "wake") {
				se = t.Wakes
				if rc != nil {
					base = &rc.Wakes
				}
			}
			row(t.Kind+": "+phase, se, base, true)
		}
	}
	return rows
}

// memoryTable: each sandbox's footprint idle and running, with the plain
// process's.
func (a *app) memoryTable() [][]string {
	rows := [][]string{{"memory", "n", "PSS", "RSS", "cgroup", "PSS vs runc", "PSS vs plain process"}}
	plain := medianFP(a.PlainFP)
	rows = append(rows, []string{"plain process, after its first 200", strconv.Itoa(len(a.PlainFP)), report.MiB(plain.PSS), report.MiB(plain.RSS), "–", "–", "1.00×"})
	rc := a.runc()
	for _, running := range []bool{false, true} {
		for _, t := range a.Targets {
			fps, label := t.Idle, t.Kind+": idle (asleep, sandbox prepared)"
			if running {
				fps, label = t.Running, t.Kind+": running (after the first 200 of a wake)"
			}
			if len(fps) == 0 {
				continue
			}
			m := medianFP(fps)
			vsRunc, vsPlain := "–", "–"
			if rc != nil {
				base := medianFP(rc.Idle)
				if running {
					base = medianFP(rc.Running)
				}
				vsRunc = stats.Ratio(float64(m.PSS), float64(base.PSS))
			}
			if running {
				vsPlain = stats.Ratio(float64(m.PSS), float64(plain.PSS))
			}
			if !running && m.PSS == 0 && m.Cgroup < 0 {
				label = t.Kind + ": idle (asleep: nothing kept)"
			}
			cg := "–"
			if m.Cgroup >= 0 {
				cg = report.MiB(m.Cgroup)
			}
			rows = append(rows, []string{label, strconv.Itoa(len(fps)), report.MiB(m.PSS), report.MiB(m.RSS), cg, vsRunc, vsPlain})
		}
	}
	return rows
}

// medianFP is the median of each field of fps.
func medianFP(fps []footprint) footprint {
	if len(fps) == 0 {
		return footprint{Cgroup: -1}
	}
	med := func(f func(footprint) int64) int64 {
		xs := make([]float64, len(fps))
		for i, fp := range fps {
			xs[i] = float64(f(fp))
		}
		return int64(stats.Median(xs))
	}
	return footprint{
		PSS:    med(func(f footprint) int64 { return f.PSS }),
		RSS:    med(func(f footprint) int64 { return f.RSS }),
		Cgroup: med(func(f footprint) int64 { return f.Cgroup }),
	}
}

// procNames names the processes counted in fps (their commands, with how
// many of each), from the sample that counted most.
func procNames(fps []footprint) string {
	var most []string
	for _, fp := range fps {
		if len(fp.Procs) > len(most) {
			most = fp.Procs
		}
	}
	if len(most) == 0 {
		return "none"
	}
	count := map[string]int{}
	for _, p := range most {
		count[p]++
	}
	var out []string
	for name, n := range count {
		if n > 1 {
			name = fmt.Sprintf("%s ×%d", name, n)
		}
		out = append(out, "`"+name+"`")
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// routerTable: wrk through the router to each sandbox and straight to the
// plain process.
func (a *app) routerTable() [][]string {
	type med struct {
		rps, p50, p99 float64
		errs          int64
	}
	summarize := func(rs []wrk.Result) med {
		var rps, p50, p99 []float64
		var m med
		for _, r := range rs {
			rps, p50, p99 = append(rps, r.RPS), append(p50, r.P50MS), append(p99, r.P99MS)
			m.errs += r.Non2xx + r.SocketError
		}
		m.rps, m.p50, m.p99 = stats.Median(rps), stats.Median(p50), stats.Median(p99)
		return m
	}
	plain := summarize(a.PlainRouter)
	var rc med
	if t := a.runc(); t != nil {
		rc = summarize(t.Router)
	}
	rows := [][]string{{"path", "req/s", "p50 ms", "p99 ms", "req/s vs runc", "req/s vs plain process", "p99 vs runc", "errors"}}
	add := func(label string, m med, vsRunc bool) {
		rr, pr := "–", "–"
		if vsRunc {
			rr, pr = stats.Ratio(m.rps, rc.rps), stats.Ratio(m.p99, rc.p99)
		}
		rows = append(rows, []string{label, fmt.Sprintf("%.0f", m.rps), fmt.Sprintf("%.3f", m.p50), fmt.Sprintf("%.3f", m.p99),
			rr, stats.Ratio(m.rps, plain.rps), pr, strconv.FormatInt(m.errs, 10)})
	}
	add("plain process, wrk straight to it (no router)", plain, false)
	for _, t := range a.Targets {
		if len(t.Router) > 0 {
			add(t.Kind+": wrk → Slipway's router → the app in its sandbox", summarize(t.Router), true)
		}
	}
	return rows
}

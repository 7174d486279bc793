// Command densitybench measures how much a Slipway server costs and how
// much it holds:
//
//  1. the server's resident memory (RSS) idle, on a new data directory;
//
//  2. its RSS with 100 projects and 1,000 deployments recorded, every one
//     RUNNING and scaled to zero (so kept reachable: a request wakes it),
//     and further steps (default 5,000); the records are written through
//     the store package (internal/store) while the server is down, each a
//     clone of one real build of examples/hello, with its phases, 30 build
//     log lines and an idle instance;
//
//  3. how many tiny apps (examples/hello) run at once: deployments are
//     woken ten at a time through the router while a probe measures the
//     latency of one of them, until 200 run, a wake fails, the probe's p99
//     doubles and grows by 5 ms (twice in a row) or the time budget ends.
//
//     densitybench -bin bin/slipway -data DIR -idle-data DIR2 [-steps 1000,5000] [-max-running 200]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/bench/internal/benchsrv"
	"github.com/slipwayhq/slipway/bench/internal/report"
	"github.com/slipwayhq/slipway/bench/internal/stats"
	"github.com/slipwayhq/slipway/internal/store"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "densitybench:", err)
		os.Exit(1)
	}
}

type memory struct {
	ServerRSS    int64 `json:"server_rss"`
	BuildkitdRSS int64 `json:"buildkitd_rss"`
}

type idleStep struct {
	Deployments  int     `json:"deployments"`
	Projects     int     `json:"projects"`
	DBBytes      int64   `json:"db_bytes"`
	StartMS      float64 `json:"start_to_api_ms"`
	NewestMS     float64 `json:"start_to_newest_answer_ms"`
	ServerRSS    int64   `json:"server_rss"`
	ListProjects float64 `json:"list_projects_p50_ms"`
	ListDeps     float64 `json:"list_deployments_p50_ms"`
	WakeP50MS    float64 `json:"wake_ttfb_p50_ms"`
	RSSAfter     int64   `json:"server_rss_after_wakes"`
}

type runStep struct {
	Running      int     `json:"running"`
	WakeP50MS    float64 `json:"wake_p50_ms"`
	WakeMaxMS    float64 `json:"wake_max_ms"`
	ProbeP50MS   float64 `json:"probe_p50_ms"`
	ProbeP99MS   float64 `json:"probe_p99_ms"`
	ServerRSS    int64   `json:"server_rss"`
	ServerCPU    float64 `json:"server_cpu_percent"`
	MemAvailable int64   `json:"host_mem_available"`
}

func run() error {
	bin := flag.String("bin", "bin/slipway", "the slipway binary")
	data := flag.String("data", "", "data directory with examples/hello built (after pushbench), gets the records")
	idleData := flag.String("idle-data", "", "a new data directory for the idle measurement")
	hello := flag.String("hello", "examples/hello", "the Go example app")
	stepsFlag := flag.String("steps", "1000,5000", "deployment counts to record (10 per project)")
	maxRunning := flag.Int("max-running", 200, "stop waking apps at this many")
	budget := flag.Duration("budget", 8*time.Minute, "time budget of the running-apps part")
	out := flag.String("out", "", "Markdown section to write (default: stdout)")
	jsonOut := flag.String("json", "", "JSON results to write")
	flag.Parse()
	if *data == "" || *idleData == "" {
		return errors.New("-data and -idle-data are required")
	}
	var steps []int
	for _, f := range strings.Split(*stepsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 10 {
			return fmt.Errorf("bad -steps %q", *stepsFlag)
		}
		steps = append(steps, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	loadBefore := report.LoadAvg()

	// 1. Idle, on a new data directory.
	idle, err := idleMemory(ctx, *bin, *idleData)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "idle: server %s, buildkitd %s\n", report.MiB(idle.ServerRSS), report.MiB(idle.BuildkitdRSS))

	// One real build to clone.
	image, digest, err := oneBuild(ctx, *bin, *data, *hello)
	if err != nil {
		return err
	}

	// 2. Recorded deployments, scaled to zero.
	var idleSteps []idleStep
	var srv *serverproc.Server
	defer func() {
		if srv != nil {
			srv.Stop(30 * time.Second)
		}
	}()
	recorded := 0
	var newest string
	var all []string
	for _, n := range steps {
		if srv != nil {
			srv.Stop(30 * time.Second)
		}
		ids, err := record(ctx, *data, recorded, n, image, digest)
		if err != nil {
			return err
		}
		all = append(all, ids...)
		newest = ids[len(ids)-1]
		recorded = n
		st := idleStep{Deployments: n, Projects: n / 10}
		if fi, err := os.Stat(filepath.Join(*data, "slipway.db")); err == nil {
			st.DBBytes = fi.Size()
		}
		t0 := time.Now()
		srv, err = serverproc.Start(ctx, serverproc.Config{Binary: *bin, DataDir: *data, IdleTimeout: time.Hour, DeployWindow: 5 * time.Minute})
		if err != nil {
			return err
		}
		st.StartMS = msSince(t0)
		c := srv.Client()
		if err := waitAnswer(ctx, c, newest); err != nil {
			return err
		}
		st.NewestMS = msSince(t0)
		time.Sleep(5 * time.Second)
		st.ServerRSS, _ = serverproc.RSS(srv.PID())
		st.ListProjects = apiP50(ctx, c, "/api/v1/projects", 10)
		st.ListDeps = apiP50(ctx, c, "/api/v1/projects/dens-0000/deployments", 20)
		var wakes []time.Duration
		for i := 0; i < 10; i++ {
			id := all[rand.IntN(len(all))]
			t, code, _, err := benchsrv.TTFB(ctx, srv.Router(), c.Host(id), "/")
			if err != nil || code != 200 {
				return fmt.Errorf("waking recorded deployment %s: %d %v", id, code, err)
			}
			wakes = append(wakes, t)
		}
		st.WakeP50MS = float64(stats.Summarize(wakes).P50) / 1e6
		st.RSSAfter, _ = serverproc.RSS(srv.PID())
		idleSteps = append(idleSteps, st)
		fmt.Fprintf(os.Stderr, "%d deployments: start %.0f ms, newest answers %.0f ms, RSS %s, list projects %.1f ms\n",
			n, st.StartMS, st.NewestMS, report.MiB(st.ServerRSS), st.ListProjects)
	}

	// 3. Running apps, woken ten at a time.
	runSteps, stopReason, err := runningApps(ctx, srv, all, *maxRunning, *budget)
	if err != nil {
		return err
	}

	var s report.Section
	s.Heading("4. Density")
	s.P("Load average before/after: %s / %s.", loadBefore, report.LoadAvg())
	s.Sub("Idle server")
	s.P("A new data directory, no projects, 5 s after the API first answered: the slipway process %s RSS; the buildkitd it supervises %s more (total %s).",
		report.MiB(idle.ServerRSS), report.MiB(idle.BuildkitdRSS), report.MiB(idle.ServerRSS+idle.BuildkitdRSS))
	s.Sub("Deployments recorded and scaled to zero")
	s.P("Records written with the store package (internal/store) while the server was down: 10 deployments per project, each a clone of one real build of examples/hello (same image), RUNNING with its phases, 30 build log lines and an instance stopped for idleness, so every one is reachable and wakes on its first request. Then the server started with `--idle-timeout 1h`; RSS 5 s after its API answered; list latencies are medians over 10–20 calls; wakes are of 10 random recorded deployments.")
	table := [][]string{{"deployments", "projects", "db size", "exec → API ms", "exec → newest answers ms", "server RSS", "GET /projects p50 ms", "GET deployments p50 ms", "wake TTFB p50 ms", "RSS after 10 wakes"}}
	for _, st := range idleSteps {
		table = append(table, []string{strconv.Itoa(st.Deployments), strconv.Itoa(st.Projects), report.MiB(st.DBBytes),
			fmt.Sprintf("%.0f", st.StartMS), fmt.Sprintf("%.0f", st.NewestMS), report.MiB(st.ServerRSS),
			fmt.Sprintf("%.1f", st.ListProjects), fmt.Sprintf("%.1f", st.ListDeps), fmt.Sprintf("%.0f", st.WakeP50MS), report.MiB(st.RSSAfter)})
	}
	s.Table(table)
	if len(idleSteps) > 0 {
		per := float64(idleSteps[0].ServerRSS-idle.ServerRSS) / float64(idleSteps[0].Deployments)
		s.P("RSS with %d deployments vs idle: %s (%.1f KiB per recorded deployment).", idleSteps[0].Deployments,
			stats.Ratio(float64(idleSteps[0].ServerRSS), float64(idle.ServerRSS)), per/1024)
	}
	s.Sub("Running tiny apps")
	s.P("On the same server, recorded deployments woken ten at a time through the router (each by one GET on its preview hostname); after each batch a probe sends 400 GETs (4 at a time, keep-alive) through the router to the first app woken. Server CPU is the slipway process's share of one CPU over 3 s without requests, before the probe: what supervising and tailing the logs of that many idle apps costs. Stopped because: %s.", stopReason)
	rt := [][]string{{"apps running", "wake p50 ms (last batch)", "wake max ms", "probe p50 ms", "probe p99 ms", "server RSS", "server CPU", "host MemAvailable"}}
	for _, st := range runSteps {
		wp50, wmax := "–", "–"
		if st.WakeMaxMS > 0 {
			wp50, wmax = fmt.Sprintf("%.0f", st.WakeP50MS), fmt.Sprintf("%.0f", st.WakeMaxMS)
		}
		rt = append(rt, []string{strconv.Itoa(st.Running), wp50, wmax,
			fmt.Sprintf("%.2f", st.ProbeP50MS), fmt.Sprintf("%.2f", st.ProbeP99MS), report.MiB(st.ServerRSS),
			fmt.Sprintf("%.0f%%", st.ServerCPU), report.MiB(st.MemAvailable)})
	}
	s.Table(rt)
	return s.Write(*out, *jsonOut, map[string]any{"idle": idle, "recorded": idleSteps, "running": runSteps, "stopped_because": stopReason})
}

func msSince(t time.Time) float64 { return float64(time.Since(t)) / 1e6 }

// idleMemory starts a server on a new data directory and reads its RSS.
func idleMemory(ctx context.Context, bin, dir string) (memory, error) {
	srv, err := serverproc.Start(ctx, serverproc.Config{Binary: bin, DataDir: dir})
	if err != nil {
		return memory{}, err
	}
	defer srv.Stop(30 * time.Second)
	time.Sleep(5 * time.Second)
	var m memory
	m.ServerRSS, err = serverproc.RSS(srv.PID())
	if err != nil {
		return m, err
	}
	for _, pid := range serverproc.Children(srv.PID()) {
		if serverproc.Comm(pid) == "buildkitd" {
			m.BuildkitdRSS, _ = serverproc.RSS(pid)
		}
	}
	return m, nil
}

// oneBuild deploys examples/hello once and returns its image.
func oneBuild(ctx context.Context, bin, dir, hello string) (string, string, error) {
	srv, err := serverproc.Start(ctx, serverproc.Config{Binary: bin, DataDir: dir, IdleTimeout: time.Hour, DeployWindow: 5 * time.Minute})
	if err != nil {
		return "", "", err
	}
	defer benchsrv.Shutdown(srv)
	c := srv.Client()
	if _, err := c.Project(ctx, "dens-source"); err != nil {
		if err := c.CreateProject(ctx, "dens-source"); err != nil {
			return "", "", err
		}
	}
	work, err := os.MkdirTemp("", "densitybench-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(work)
	if err := benchsrv.CopyDir(hello, work); err != nil {
		return "", "", err
	}
	p, err := benchsrv.Deploy(ctx, c, "dens-source", work, c.Host("dens-source"))
	if err != nil {
		return "", "", err
	}
	if p.Status != "RUNNING" {
		return "", "", fmt.Errorf("building hello: %s %s", p.Status, p.Reason)
	}
	d, err := c.Deployment(ctx, p.ID)
	return d.Image, d.ImageDigest, err
}

// record adds deployments (10 per project) until there are n, numbering
// projects from from/10. It returns the new deployments' ids, oldest
// first.
func record(ctx context.Context, dir string, from, n int, image, digest string) ([]string, error) {
	st, err := store.Open(filepath.Join(dir, "slipway.db"))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var ids []string
	t := time.Now().Add(-time.Duration(n) * time.Minute).UTC()
	for pi := from / 10; pi < n/10; pi++ {
		p, err := st.CreateProject(ctx, store.Project{Name: fmt.Sprintf("dens-%04d", pi)})
		if err != nil {
			return nil, err
		}
		env, err := st.GetEnvironment(ctx, p.ID, store.ProductionEnvironment)
		if err != nil {
			return nil, err
		}
		var last string
		for di := 0; di < 10; di++ {
			t = t.Add(time.Second)
			d, err := st.CreateDeployment(ctx, store.Deployment{
				ProjectID: p.ID, EnvironmentID: env.ID, Status: "RUNNING", Trigger: "upload", Promote: true,
				Branch: "main", CommitSHA: fmt.Sprintf("%040x", rand.Uint64()), CommitMessage: fmt.Sprintf("commit %d of %s", di, p.Name),
				CommitAuthor: "Bench <bench@example.com>", Builder: "dockerfile", Image: image, ImageDigest: digest, CreatedAt: t,
			})
			if err != nil {
				return nil, err
			}
			t1, t2, t3, t4 := t.Add(10*time.Millisecond), t.Add(20*time.Millisecond), t.Add(1200*time.Millisecond), t.Add(1400*time.Millisecond)
			var lines []store.LogLine
			for i := 0; i < 30; i++ {
				lines = append(lines, store.LogLine{DeploymentID: d.ID, Kind: store.LogBuild, Time: t2,
					Text: fmt.Sprintf("#%d [build %d/5] recorded by densitybench: a build log line of typical length", i, i%5+1)})
			}
			if _, err := st.UpdateDeployment(ctx, d.ID, "RUNNING", store.DeploymentPatch{
				InitializingAt: &t, InitEndedAt: &t1, BuildingAt: &t1, BuildEndedAt: &t3, DeployingAt: &t3, DeployEndedAt: &t4,
			}, lines...); err != nil {
				return nil, err
			}
			inst := store.NewID()
			logDir := filepath.Join(dir, "logs", d.ID)
			if _, err := st.CreateInstance(ctx, store.Instance{ID: inst, DeploymentID: d.ID, Driver: "runc", Status: "idle",
				StdoutPath: filepath.Join(logDir, inst+".stdout"), StderrPath: filepath.Join(logDir, inst+".stderr"), CreatedAt: t4}); err != nil {
				return nil, err
			}
			ids = append(ids, d.ID)
			last = d.ID
		}
		if err := st.SetCurrentDeployment(ctx, env.ID, last); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// waitAnswer waits until deployment id answers 200 through the router.
func waitAnswer(ctx context.Context, c *serverproc.Client, id string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		code, _, err := c.Get(ctx, c.Host(id), "/")
		if err == nil && code == 200 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("deployment %s does not answer: %d %v", id, code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// apiP50 is the median latency of n calls of GET path.
func apiP50(ctx context.Context, c *serverproc.Client, path string, n int) float64 {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if code, _, err := c.Do(ctx, "GET", path, nil, ""); err != nil || code != 200 {
			return -1
		}
		ds = append(ds, time.Since(t0))
	}
	return float64(stats.Summarize(ds).P50) / 1e6
}

// runningApps wakes recorded deployments ten at a time while probing the
// first one. It stops every deployment it woke before returning.
func runningApps(ctx context.Context, srv *serverproc.Server, ids []string, max int, budget time.Duration) ([]runStep, string, error) {
	c := srv.Client()
	deadline := time.Now().Add(budget)
	order := rand.Perm(len(ids))
	var woken []string
	defer func() {
		// Stop what was woken, four at a time.
		ch := make(chan string)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range ch {
					sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					c.StopDeployment(sctx, id)
					cancel()
				}
			}()
		}
		for _, id := range woken {
			ch <- id
		}
		close(ch)
		wg.Wait()
	}()
	wake := func(id string) (time.Duration, error) {
		t, code, body, err := benchsrv.TTFB(ctx, srv.Router(), c.Host(id), "/")
		if err == nil && code != 200 {
			err = fmt.Errorf("%d %q", code, benchsrv.Trim(string(body), 100))
		}
		return t, err
	}
	first := ids[order[0]]
	if _, err := wake(first); err != nil {
		return nil, "", fmt.Errorf("waking the probe app: %w", err)
	}
	woken = append(woken, first)
	probe := &http.Client{Transport: &http.Transport{DialContext: c.RouterDialer(), MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}
	var steps []runStep
	var baseP99 float64
	over := 0
	next := 1
	var lastWakes stats.Summary
	for {
		st := runStep{Running: len(woken), WakeP50MS: float64(lastWakes.P50) / 1e6, WakeMaxMS: float64(lastWakes.Max) / 1e6}
		// The server's own work while the apps idle: supervision, log
		// tailing. (/proc/PID/stat counts in USER_HZ, 100 a second.)
		cpu0, t0 := cpuTicks(srv.PID()), time.Now()
		time.Sleep(3 * time.Second)
		st.ServerCPU = 100 * float64(cpuTicks(srv.PID())-cpu0) / 100 / time.Since(t0).Seconds()
		p50, p99, err := probeLatency(ctx, probe, c.Host(first), 400, 4)
		if err != nil {
			return steps, "", err
		}
		st.ProbeP50MS, st.ProbeP99MS = p50, p99
		st.ServerRSS, _ = serverproc.RSS(srv.PID())
		st.MemAvailable = memAvailable()
		steps = append(steps, st)
		fmt.Fprintf(os.Stderr, "%3d running: probe p50 %.2f ms p99 %.2f ms, RSS %s, CPU %.0f%%\n", st.Running, p50, p99, report.MiB(st.ServerRSS), st.ServerCPU)
		// The probe's baseline is the median p99 of the first three rows;
		// "doubled" also asks for 5 ms more, so that noise on a shared
		// machine around a 1-2 ms p99 does not count.
		if len(steps) <= 3 {
			var xs []float64
			for _, s := range steps {
				xs = append(xs, s.ProbeP99MS)
			}
			baseP99 = stats.Median(xs)
		} else if p99 > 2*baseP99 && p99 > baseP99+5 {
			over++
			if over >= 2 {
				return steps, fmt.Sprintf("the probe's p99 (%.2f ms) was more than twice its baseline (%.2f ms) twice in a row, at %d apps", p99, baseP99, len(woken)), nil
			}
		} else {
			over = 0
		}
		if len(woken) >= max {
			return steps, fmt.Sprintf("the bound of %d running apps was reached", max), nil
		}
		if time.Now().After(deadline) {
			return steps, fmt.Sprintf("the time budget (%s) ran out at %d apps", budget, len(woken)), nil
		}
		var ws []time.Duration
		for i := 0; i < 10 && len(woken) < max && next < len(order); i++ {
			id := ids[order[next]]
			next++
			t, err := wake(id)
			if err != nil {
				return steps, fmt.Sprintf("a wake failed at %d apps: %v", len(woken), err), nil
			}
			woken = append(woken, id)
			ws = append(ws, t)
		}
		if len(ws) == 0 {
			return steps, "no more deployments to wake", nil
		}
		lastWakes = stats.Summarize(ws) // reported with the next row, which counts these apps
	}
}

// probeLatency sends n GETs to host, conc at a time, and returns p50 and
// p99 in milliseconds.
func probeLatency(ctx context.Context, client *http.Client, host string, n, conc int) (float64, float64, error) {
	var mu sync.Mutex
	var ds []time.Duration
	var firstErr error
	ch := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range ch {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+host+"/", nil)
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("probe answered %s", resp.Status)
					}
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				ds = append(ds, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		ch <- struct{}{}
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	m := stats.Summarize(ds)
	return float64(m.P50) / 1e6, float64(m.P99) / 1e6, nil
}

// cpuTicks returns a process's user+system CPU time in clock ticks.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	sy, _ := strconv.ParseInt(f[12], 10, 64)
	return u + sy
}

// memAvailable is the host's MemAvailable in bytes.
func memAvailable() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

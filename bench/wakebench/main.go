// Command wakebench measures waking from zero: the time from a request to
// the first byte of the answer for a scaled-to-zero examples/hello
// deployment (the server runs with --idle-timeout 2s), over many wakes,
// next to two baselines measured in the same run: the same app built
// natively with go build and started as a plain process (exec → first
// 200), and the app's image started in a sandbox by Slipway's runc driver
// alone (Driver.Start → first 200 through Driver.Dial), which is the floor
// a wake cannot go below.
//
//	wakebench -bin bin/slipway -data DIR [-hello examples/hello] [-python examples/fastapi-uv] [-wakes 25]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

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
	idle := flag.Duration("idle", 2*time.Second, "the server's --idle-timeout")
	out := flag.String("out", "", "Markdown section to write (default: stdout)")
	jsonOut := flag.String("json", "", "JSON results to write")
	flag.Parse()
	if *data == "" {
		return errors.New("-data is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	work, err := os.MkdirTemp("", "wakebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	loadBefore := report.LoadAvg()

	// Baseline 1: the plain process.
	native := filepath.Join(work, "hello-native")
	build := exec.Command("go", "build", "-o", native, ".")
	build.Dir = *hello
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s natively: %v\n%s", *hello, err, out)
	}
	plain := &series{Name: "plain process: exec of the natively built binary → first 200"}
	for i := 0; i < *wakes; i++ {
		d, err := plainStart(ctx, native)
		if err != nil {
			return err
		}
		plain.Samples = append(plain.Samples, d)
	}

	srv, _, err := benchsrv.Start(ctx, serverproc.Config{Binary: *bin, DataDir: *data, IdleTimeout: *idle, DeployWindow: 5 * time.Minute})
	if err != nil {
		return err
	}
	defer benchsrv.Shutdown(srv)
	c := srv.Client()

	helloRes, helloDep, err := measureApp(ctx, c, srv, "hello", *hello, work, *wakes)
	if err != nil {
		return err
	}

	// Baseline 2: the same image in a sandbox, started by the runc driver
	// directly (no control plane, no router).
	sandbox := &series{Name: "runc driver alone: Driver.Start → first 200 through Driver.Dial (image already unpacked)"}
	if helloDep.Image != "" {
		if err := driverStarts(ctx, sandbox, work, helloDep.Image, srv.Token(), *wakes); err != nil {
			sandbox.Failed = err.Error()
		}
	}

	var pyRes []*series
	if *python != "" {
		pyRes, _, err = measureApp(ctx, c, srv, "python", *python, work, *wakes)
		if err != nil {
			pyRes = []*series{{Name: filepath.Base(*python), Failed: err.Error()}}
		}
	}

	all := append([]*series{plain, sandbox}, helloRes...)
	all = append(all, pyRes...)
	var s report.Section
	s.Heading("2. Wake from zero")
	s.P("examples/hello deployed on a server started with `--idle-timeout %s`; before each wake the test waits for the runtime log's \"scaled to zero\" event and for the app's process to be gone, then sends one GET through the router on a new connection and times the first byte of the answer. The server's own record of each wake (`GET /api/v1/deployments/{id}/wakes`: from the request that found no instance to the first passed health check) is shown beside it. Baselines from the same run: the app built natively and started as a plain process, and its image started by the runc driver alone. Load average before/after: %s / %s.",
		*idle, loadBefore, report.LoadAvg())
	base := stats.Summarize(plain.Samples)
	sb := stats.Summarize(sandbox.Samples)
	table := [][]string{{"what", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "p50 vs plain process", "p50 vs runc driver"}}
	for _, se := range all {
		if se.Failed != "" {
			table = append(table, []string{se.Name, "0", "failed: " + benchsrv.Trim(se.Failed, 200), "", "", "", "", ""})
			continue
		}
		m := stats.Summarize(se.Samples)
		table = append(table, []string{se.Name, strconv.Itoa(m.N), stats.MS(m.P50), stats.MS(m.P90), stats.MS(m.P99), stats.MS(m.Max),
			stats.Ratio(float64(m.P50), float64(base.P50)), stats.Ratio(float64(m.P50), float64(sb.P50))})
	}
	s.Table(table)
	s.P("With fewer than 100 samples p99 is the slowest sample (nearest rank).")
	for _, se := range all {
		if se.Note != "" {
			s.P("*%s*: %s", se.Name, se.Note)
		}
	}
	return s.Write(*out, *jsonOut, all)
}

// measureApp deploys dir as project, then wakes it n times.
func measureApp(ctx context.Context, c *serverproc.Client, srv *serverproc.Server, project, dir, work string, n int) ([]*series, api.Deployment, error) {
	if _, err := c.Project(ctx, project); err != nil {
		if err := c.CreateProject(ctx, project); err != nil {
			return nil, api.Deployment{}, err
		}
	}
	app := filepath.Join(work, project)
	if err := benchsrv.CopyDir(dir, app); err != nil {
		return nil, api.Deployment{}, err
	}
	p, err := benchsrv.Deploy(ctx, c, project, app, c.Host(project))
	if err != nil {
		return nil, api.Deployment{}, err
	}
	if p.Status != "RUNNING" {
		return nil, api.Deployment{}, fmt.Errorf("%s is %s: %s", p.ID, p.Status, p.Reason)
	}
	d, err := c.Deployment(ctx, p.ID)
	if err != nil {
		return nil, d, err
	}
	name := filepath.Base(dir)
	ttfb := &series{Name: name + ": wake through Slipway, request → first byte (client)"}
	for i := 0; i < n; i++ {
		if err := waitAsleep(ctx, c, d.ID, i+1); err != nil {
			return nil, d, err
		}
		t, code, body, err := benchsrv.TTFB(ctx, srv.Router(), c.Host(project), "/")
		if err != nil || code != 200 {
			return nil, d, fmt.Errorf("wake %d of %s: %d %q %v", i+1, project, code, body, err)
		}
		ttfb.Samples = append(ttfb.Samples, t)
		fmt.Fprintf(os.Stderr, "%s wake %2d: %s ms\n", project, i+1, stats.MS(t))
	}
	var ws []api.Wake
	if err := c.JSON(ctx, "GET", "/api/v1/deployments/"+d.ID+"/wakes", nil, &ws); err != nil {
		return nil, d, err
	}
	server := &series{Name: name + ": the server's record of the same wakes (request → first passed health check)"}
	failed := 0
	for _, w := range ws {
		if !w.OK {
			failed++
			continue
		}
		server.Samples = append(server.Samples, time.Duration(w.DurationMS*float64(time.Millisecond)))
	}
	if failed > 0 {
		server.Note = fmt.Sprintf("%d wakes failed", failed)
	}
	return []*series{ttfb, server}, d, nil
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
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("deployment %s was not scaled to zero (wake %d) within a minute", id, n)
}

// plainStart starts the binary as a plain process and times exec → first
// 200 on its port.
func plainStart(ctx context.Context, binary string) (time.Duration, error) {
	port, err := serverproc.FreePort()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	for time.Since(t0) < 10*time.Second {
		if ok := get200(func() (net.Conn, error) { return net.Dial("tcp", addr) }); ok {
			return time.Since(t0), nil
		}
		time.Sleep(200 * time.Microsecond)
	}
	return 0, fmt.Errorf("%s did not answer within 10 s", binary)
}

// get200 sends GET / on a new connection and reports whether it got 200.
func get200(dial func() (net.Conn, error)) bool {
	conn, err := dial()
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// driverStarts starts the image n times with the runc driver alone.
func driverStarts(ctx context.Context, se *series, work, image, token string, n int) error {
	d, err := runc.New(runc.Config{
		Root:          filepath.Join(work, "runc"),
		RemoteOptions: []remote.Option{remote.WithAuth(&authn.Basic{Username: "slipway", Password: token})},
		StopGrace:     time.Second,
	})
	if err != nil {
		return err
	}
	logs := filepath.Join(work, "runc-logs")
	os.MkdirAll(logs, 0o755)
	start := func(i int) (time.Duration, error) {
		id := fmt.Sprintf("wakebench%d-%d", os.Getpid()%100000, i)
		spec := runtime.Spec{ID: id, Image: image, StdoutPath: filepath.Join(logs, id+".out"), StderrPath: filepath.Join(logs, id+".err"),
			Env: []string{"SLIPWAY_DEPLOYMENT_ID=wakebench"}}
		t0 := time.Now()
		h, err := d.Start(ctx, spec)
		if err != nil {
			return 0, err
		}
		defer d.Stop(context.Background(), h)
		for time.Since(t0) < 30*time.Second {
			if get200(func() (net.Conn, error) { return d.Dial(ctx, h, 3000) }) {
				return time.Since(t0), nil
			}
			time.Sleep(time.Millisecond)
		}
		return 0, errors.New("the sandboxed app did not answer within 30 s")
	}
	// The first start pulls and unpacks the image; it is not counted.
	first, err := start(0)
	if err != nil {
		return err
	}
	se.Note = fmt.Sprintf("the first start, which also pulled and unpacked the image, took %s ms and is not counted", stats.MS(first))
	for i := 1; i <= n; i++ {
		t, err := start(i)
		if err != nil {
			return err
		}
		se.Samples = append(se.Samples, t)
	}
	return nil
}

// Command routerbench measures the overhead of Slipway's router
// (internal/router) on small responses: wrk drives a tiny Go backend
// directly, through the router, and through nginx configured as a reverse
// proxy with a keep-alive upstream, at a fixed concurrency, in interleaved
// rounds, and reports requests per second and p50/p99 latency with ratios
// to the direct baseline and to nginx.
//
// The backend and the router run as separate processes (this program
// re-executed with the "backend" and "proxy" subcommands), as nginx does.
//
//	routerbench [-duration 6s] [-connections 32] [-rounds 3] [-out router.md] [-json router.json] [-baseline old-routerbench]
//
// With -baseline, the router of another build of this program (say, one of
// an earlier commit) is measured too, in the same interleaved rounds, for a
// before/after comparison that shares one machine state.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/bench/internal/report"
	"github.com/slipwayhq/slipway/bench/internal/stats"
	"github.com/slipwayhq/slipway/bench/internal/wrk"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

const (
	host = "bench.slipway.localhost"
	body = "hello from the backend\n"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "backend":
			backend(os.Args[2])
			return
		case "proxy":
			ns := ""
			if len(os.Args) > 4 {
				ns = os.Args[4]
			}
			proxy(os.Args[2], os.Args[3], ns)
			return
		}
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "routerbench:", err)
		os.Exit(1)
	}
}

// backend serves a small constant response.
func backend(addr string) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body))
	})
	fmt.Fprintln(os.Stderr, http.ListenAndServe(addr, h))
	os.Exit(1)
}

// proxy serves Slipway's router with one route to the backend; with ns
// (a network namespace's path), it dials the backend from inside that
// namespace, as the server dials instances.
func proxy(addr, backendAddr, ns string) {
	var t router.Table
	var d net.Dialer
	dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", backendAddr) }
	if ns != "" {
		var err error
		if dial, err = nsDialer(ns, backendAddr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	t.Set(host, router.Route{Deployment: "benchbackend0", Project: "bench", Backend: router.BackendFunc(dial)})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// As the server serves it: a Front, with net/http for what it hands over.
	rt := &router.Router{Table: &t}
	front := &router.Front{Router: rt, Fallback: &http.Server{Handler: rt, ReadHeaderTimeout: 10 * time.Second}}
	fmt.Fprintln(os.Stderr, front.Serve(ln))
	os.Exit(1)
}

type row struct {
	Name   string       `json:"name"`
	Setup  string       `json:"setup"`
	Rounds []wrk.Result `json:"rounds"`
	RPS    float64      `json:"rps_median"`
	P50MS  float64      `json:"p50_ms_median"`
	P99MS  float64      `json:"p99_ms_median"`
	Errors int64        `json:"errors"`
}

func run() error {
	duration := flag.Duration("duration", 6*time.Second, "length of each wrk run")
	conns := flag.Int("connections", 32, "wrk connections (fixed concurrency)")
	threads := flag.Int("threads", 1, "wrk threads")
	rounds := flag.Int("rounds", 3, "interleaved rounds per configuration")
	out := flag.String("out", "", "Markdown section to write (default: stdout)")
	jsonOut := flag.String("json", "", "JSON results to write")
	baseline := flag.String("baseline", "", "another routerbench binary whose router is measured alongside (GOMAXPROCS=NumCPU)")
	bridge := flag.Bool("bridge", true, "also measure with the backend as an app on Slipway's instance network (needs root)")
	flag.Parse()

	for _, bin := range []string{"wrk", "nginx"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found (apt-get install wrk nginx; bench/run.sh does)", bin)
		}
	}
	work, err := os.MkdirTemp("", "routerbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
			p.Wait()
		}
	}()
	start := func(env []string, name string, args ...string) error {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
		return nil
	}
	addr := func() (string, error) {
		p, err := serverproc.FreePort()
		return "127.0.0.1:" + strconv.Itoa(p), err
	}

	backendAddr, err := addr()
	if err != nil {
		return err
	}
	if err := start(nil, self, "backend", backendAddr); err != nil {
		return err
	}
	type target struct{ name, setup, addr, group string }
	targets := []target{{"direct", "wrk → backend", backendAddr, ""}}
	for _, procsN := range []int{runtime.NumCPU(), 1} {
		a, err := addr()
		if err != nil {
			return err
		}
		if err := start([]string{"GOMAXPROCS=" + strconv.Itoa(procsN)}, self, "proxy", a, backendAddr); err != nil {
			return err
		}
		targets = append(targets, target{fmt.Sprintf("slipway router, GOMAXPROCS=%d", procsN),
			"wrk → internal/router as the server serves it (router.Front over router.Router, one Table route, TCP dial to the backend) → backend", a, ""})
	}
	if *baseline != "" {
		a, err := addr()
		if err != nil {
			return err
		}
		if err := start([]string{"GOMAXPROCS=" + strconv.Itoa(runtime.NumCPU())}, *baseline, "proxy", a, backendAddr); err != nil {
			return err
		}
		targets = append(targets, target{fmt.Sprintf("baseline router (%s), GOMAXPROCS=%d", filepath.Base(*baseline), runtime.NumCPU()),
			"wrk → the router of " + filepath.Base(*baseline) + " → backend", a, ""})
	}
	for _, workers := range []int{1, runtime.NumCPU()} {
		a, err := addr()
		if err != nil {
			return err
		}
		conf, err := nginxConf(work, a, backendAddr, workers)
		if err != nil {
			return err
		}
		if err := start(nil, "nginx", "-p", work, "-c", conf, "-g", "daemon off;"); err != nil {
			return err
		}
		targets = append(targets, target{fmt.Sprintf("nginx, %d worker(s)", workers),
			"wrk → nginx 1.22 (Debian), proxy_pass to an upstream with keepalive 64, access log off → backend", a, ""})
	}
	if *bridge {
		app, err := newAppOnBridge(context.Background(), work)
		if err != nil {
			return err
		}
		defer app.Close()
		cmd := app.Command(self, "backend", "0.0.0.0:3000")
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
		const g = "app on the bridge: "
		targets = append(targets, target{g + "direct (host → the app's address)", "wrk → the app's address on the bridge", app.addr, "bridge"})
		a, err := addr()
		if err != nil {
			return err
		}
		if err := start([]string{"GOMAXPROCS=" + strconv.Itoa(runtime.NumCPU())}, self, "proxy", a, "127.0.0.1:3000", app.NsPath()); err != nil {
			return err
		}
		targets = append(targets, target{fmt.Sprintf(g+"slipway router, GOMAXPROCS=%d, namespace dial", runtime.NumCPU()),
			"wrk → internal/router dialling 127.0.0.1:3000 inside the app's network namespace (as the server dials instances) → the app", a, "bridge"})
		if *baseline != "" {
			a, err := addr()
			if err != nil {
				return err
			}
			if err := start([]string{"GOMAXPROCS=" + strconv.Itoa(runtime.NumCPU())}, *baseline, "proxy", a, app.addr); err != nil {
				return err
			}
			targets = append(targets, target{fmt.Sprintf(g+"baseline router (%s), GOMAXPROCS=%d, address dial", filepath.Base(*baseline), runtime.NumCPU()),
				"wrk → the router of " + filepath.Base(*baseline) + " dialling the app's address → the app", a, "bridge"})
		}
		for _, workers := range []int{1, runtime.NumCPU()} {
			a, err := addr()
			if err != nil {
				return err
			}
			conf, err := nginxConf(work, a, app.addr, workers)
			if err != nil {
				return err
			}
			if err := start(nil, "nginx", "-p", work, "-c", conf, "-g", "daemon off;"); err != nil {
				return err
			}
			targets = append(targets, target{fmt.Sprintf(g+"nginx, %d worker(s)", workers),
				"wrk → nginx proxy_pass to the app's address (keepalive 64) → the app", a, "bridge"})
		}
	}
	for _, t := range targets {
		if err := waitHTTP(t.addr); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}

	loadBefore := report.LoadAvg()
	rows := make([]row, len(targets))
	ctx := context.Background()
	for r := 0; r < *rounds; r++ {
		for i, t := range targets {
			res, err := wrk.Run(ctx, wrk.Options{URL: "http://" + t.addr + "/", Host: host,
				Threads: *threads, Connections: *conns, Duration: *duration})
			if err != nil {
				return err
			}
			rows[i].Name, rows[i].Setup = t.name, t.setup
			rows[i].Rounds = append(rows[i].Rounds, res)
			fmt.Fprintf(os.Stderr, "round %d %-32s %8.0f req/s  p50 %.3f ms  p99 %.3f ms\n", r+1, t.name, res.RPS, res.P50MS, res.P99MS)
		}
	}
	for i := range rows {
		var rps, p50, p99 []float64
		for _, r := range rows[i].Rounds {
			rps, p50, p99 = append(rps, r.RPS), append(p50, r.P50MS), append(p99, r.P99MS)
			rows[i].Errors += r.Non2xx + r.SocketError
		}
		rows[i].RPS, rows[i].P50MS, rows[i].P99MS = stats.Median(rps), stats.Median(p50), stats.Median(p99)
	}

	var s report.Section
	s.Heading("1. Router overhead")
	s.P("Small responses (%d bytes) from a tiny Go backend (net/http) on loopback, driven by wrk with %d thread(s) and %d connections for %s per run; %d interleaved rounds, medians shown. Every process shares the same %d cores. Load average before/after: %s / %s.",
		len(body), *threads, *conns, *duration, *rounds, runtime.NumCPU(), loadBefore, report.LoadAvg())
	var loop, onBridge []row
	for i, t := range targets {
		if t.group == "bridge" {
			onBridge = append(onBridge, rows[i])
		} else {
			loop = append(loop, rows[i])
		}
	}
	s.Table(ratioTable(loop))
	if len(onBridge) > 0 {
		s.P("The same, with the backend as an app on Slipway's instance network, as a deployment runs: in a network namespace wired by internal/netns (a veth on a bridge of its own, a leased address, Slipway's nftables policy), listening on port 3000. Measured in the same interleaved rounds; the ratios are to this table's own direct and nginx rows.")
		s.Table(ratioTable(onBridge))
	}
	s.P("Setups: %s.", setups(rows))
	var cmds []string
	for _, r := range rows {
		cmds = append(cmds, r.Rounds[0].Command)
	}
	s.P("wrk command lines (first round; the Host header is ignored by the backend and nginx):")
	s.Code(strings.Join(cmds, "\n"))
	return s.Write(*out, *jsonOut, rows)
}

// ratioTable is rows with their ratios to the first row (direct) and to
// the one of nginx with 1 worker.
func ratioTable(rows []row) [][]string {
	direct, nginx1 := rows[0], rows[len(rows)-2]
	for _, r := range rows {
		if strings.HasSuffix(r.Name, "nginx, 1 worker(s)") {
			nginx1 = r
		}
	}
	table := [][]string{{"path", "req/s", "p50 ms", "p99 ms", "req/s vs direct", "req/s vs nginx (1 worker)", "p99 vs nginx (1 worker)", "errors"}}
	for _, r := range rows {
		table = append(table, []string{r.Name, fmt.Sprintf("%.0f", r.RPS), fmt.Sprintf("%.3f", r.P50MS), fmt.Sprintf("%.3f", r.P99MS),
			stats.Ratio(r.RPS, direct.RPS), stats.Ratio(r.RPS, nginx1.RPS), stats.Ratio(r.P99MS, nginx1.P99MS), strconv.FormatInt(r.Errors, 10)})
	}
	return table
}

func setups(rows []row) string {
	seen := map[string]bool{}
	var out []string
	for _, r := range rows {
		if !seen[r.Setup] {
			seen[r.Setup] = true
			out = append(out, r.Setup)
		}
	}
	return strings.Join(out, "; ")
}

// nginxConf writes a reverse-proxy configuration for nginx; its files
// are named after the listening port, so that several can run at once.
func nginxConf(dir, listen, backend string, workers int) (string, error) {
	_, port, _ := net.SplitHostPort(listen)
	name := filepath.Join(dir, "nginx-"+port+".conf")
	conf := fmt.Sprintf(`worker_processes %d;
pid %[2]s/nginx-%[3]s.pid;
error_log %[2]s/nginx-%[3]s.error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[2]s/body-%[3]s;
    proxy_temp_path %[2]s/proxy-%[3]s;
    fastcgi_temp_path %[2]s/fastcgi-%[3]s;
    uwsgi_temp_path %[2]s/uwsgi-%[3]s;
    scgi_temp_path %[2]s/scgi-%[3]s;
    upstream backend {
        server %[4]s;
        keepalive 64;
    }
    server {
        listen %[5]s;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
    }
}
`, workers, dir, port, backend, listen)
	return name, os.WriteFile(name, []byte(conf), 0o644)
}

// waitHTTP waits until addr answers 200.
func waitHTTP(addr string) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

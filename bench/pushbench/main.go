// Command pushbench measures push to live: from the start of a source
// upload to RUNNING and to the first 200 through the router, for
// examples/hello with a cold build cache (a fresh data directory: only the
// base images are there) and warm (the same source again, a change to a
// file the Dockerfile does not copy, a change to the Go code), and for a
// Python app when one is given; each with the share of every phase.
//
// It leaves the data directory (with its build cache and images) for the
// benchmarks that follow, every deployment stopped.
//
//	pushbench -bin bin/slipway -data DIR [-hello examples/hello] [-python examples/fastapi-uv] [-warm 5]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/bench/internal/benchsrv"
	"github.com/slipwayhq/slipway/bench/internal/report"
	"github.com/slipwayhq/slipway/bench/internal/stats"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

type scenario struct {
	App      string          `json:"app"`
	Name     string          `json:"scenario"`
	Runs     []benchsrv.Push `json:"runs"`
	Median   benchsrv.Push   `json:"-"`
	Failures []string        `json:"failures,omitempty"`
	note     string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "bin/slipway", "the slipway binary")
	data := flag.String("data", "", "data directory (should be new: the first push measures a cold cache)")
	hello := flag.String("hello", "examples/hello", "the Go example app")
	python := flag.String("python", "", "a Python example app (optional)")
	warm := flag.Int("warm", 5, "warm pushes of the same source")
	out := flag.String("out", "", "Markdown section to write (default: stdout)")
	jsonOut := flag.String("json", "", "JSON results to write")
	flag.Parse()
	if *data == "" {
		return fmt.Errorf("-data is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	work, err := os.MkdirTemp("", "pushbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	fresh := true
	if _, err := os.Stat(filepath.Join(*data, "slipway.db")); err == nil {
		fresh = false
	}
	loadBefore := report.LoadAvg()
	srv, startup, err := benchsrv.Start(ctx, serverproc.Config{Binary: *bin, DataDir: *data, DeployWindow: 5 * time.Minute})
	if err != nil {
		return err
	}
	defer benchsrv.Shutdown(srv)
	c := srv.Client()

	var all []*scenario
	push := func(sc *scenario, project, dir string) bool {
		p, err := benchsrv.Deploy(ctx, c, project, dir, c.Host(project))
		if err == nil && p.Status != "RUNNING" {
			err = fmt.Errorf("%s %s: %s", p.ID, p.Status, p.Reason)
		}
		if err != nil {
			sc.Failures = append(sc.Failures, err.Error())
			fmt.Fprintf(os.Stderr, "%s %s: %v\n", sc.App, sc.Name, err)
			return false
		}
		sc.Runs = append(sc.Runs, p)
		fmt.Fprintf(os.Stderr, "%-8s %-34s RUNNING %7.0f ms, first 200 %7.0f ms (build %.0f ms)\n", sc.App, sc.Name, p.RunningMS, p.FirstOKMS, p.BuildMS)
		return true
	}

	// examples/hello.
	app := filepath.Join(work, "hello")
	if err := benchsrv.CopyDir(*hello, app); err != nil {
		return err
	}
	if err := c.CreateProject(ctx, "hello"); err != nil {
		return err
	}
	name := "cold cache (first build in this data directory)"
	if !fresh {
		name = "first push (data directory was not new)"
	}
	cold := &scenario{App: "hello", Name: name}
	all = append(all, cold)
	if push(cold, "hello", app) {
		same := &scenario{App: "hello", Name: "warm, same source"}
		all = append(all, same)
		for i := 0; i < *warm; i++ {
			push(same, "hello", app)
		}
		readme := &scenario{App: "hello", Name: "warm, README changed (not copied)", note: "a file the Dockerfile does not COPY: every layer is cached"}
		all = append(all, readme)
		for i := 0; i < *warm; i++ {
			os.WriteFile(filepath.Join(app, "README.md"), []byte(fmt.Sprintf("change %d at %s\n", i, time.Now())), 0o644)
			push(readme, "hello", app)
		}
		code := &scenario{App: "hello", Name: "warm, main.go changed", note: "BuildKit reruns the `go build` step (with whatever Go build cache the Dockerfile keeps)"}
		all = append(all, code)
		f, err := os.OpenFile(filepath.Join(app, "main.go"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		fmt.Fprintf(f, "\n// pushbench change %d\n", time.Now().UnixNano())
		f.Close()
		push(code, "hello", app)
	}

	// A Python app, built from a detected plan.
	if *python != "" {
		papp := filepath.Join(work, "python")
		if err := benchsrv.CopyDir(*python, papp); err != nil {
			return err
		}
		if err := c.CreateProject(ctx, "python"); err != nil {
			return err
		}
		pcold := &scenario{App: filepath.Base(*python), Name: "cold (first build of this app)"}
		all = append(all, pcold)
		if push(pcold, "python", papp) {
			pwarm := &scenario{App: filepath.Base(*python), Name: "warm, same source"}
			all = append(all, pwarm)
			for i := 0; i < *warm; i++ {
				push(pwarm, "python", papp)
			}
		}
	}

	var s report.Section
	s.Heading("3. Push to live")
	s.P("From the start of the upload (the source packed as `slipway deploy` packs it, sent to `POST /api/v1/projects/{project}/deployments`) to the API reporting RUNNING (polled every 10 ms), and to the first 200 from the new deployment through the router on the project's hostname (polled every 2 ms). One server, data directory new at the first push (base images seeded, build cache empty); the server started (exec → API healthy, buildkitd included) in %s. Medians over the runs shown; the phases are the deployment's own timestamps. Load average before/after: %s / %s.",
		stats.MS(startup)+" ms", loadBefore, report.LoadAvg())
	table := [][]string{{"app", "push", "runs", "→ RUNNING ms", "→ first 200 ms", "upload", "queue", "initializing", "building", "deploying", "→ first 200"}}
	for _, sc := range all {
		if len(sc.Runs) == 0 {
			table = append(table, []string{sc.App, sc.Name, "0", "failed: " + benchsrv.Trim(first(sc.Failures), 160), "", "", "", "", "", "", ""})
			continue
		}
		m := median(sc.Runs)
		sc.Median = m
		share := func(v float64) string {
			return fmt.Sprintf("%.0f ms (%.0f%%)", v, 100*v/m.FirstOKMS)
		}
		table = append(table, []string{sc.App, sc.Name, fmt.Sprint(len(sc.Runs)), fmt.Sprintf("%.0f", m.RunningMS), fmt.Sprintf("%.0f", m.FirstOKMS),
			share(m.UploadMS), share(m.QueueMS), share(m.InitMS), share(m.BuildMS), share(m.DeployMS), share(m.RouteMS)})
	}
	s.Table(table)
	if len(cold.Runs) > 0 {
		var warmMS []float64
		for _, sc := range all[1:2] {
			for _, r := range sc.Runs {
				warmMS = append(warmMS, r.FirstOKMS)
			}
		}
		s.P("Cold vs warm (same source), hello: %s. Phase shares are of the time to the first 200; `upload` is from the client's first byte to the deployment's record, `→ first 200` from the end of DEPLOYING to the first answer.",
			stats.Ratio(cold.Runs[0].FirstOKMS, stats.Median(warmMS)))
	}
	if len(cold.Runs) > 0 {
		if steps := slowSteps(ctx, c, cold.Runs[0].ID, 4); steps != "" {
			s.P("Slowest BuildKit steps of the cold build, from its build log: %s.", steps)
		}
	}
	for _, sc := range all {
		if sc.note != "" {
			s.P("*%s, %s*: %s.", sc.App, sc.Name, sc.note)
		}
		for _, f := range sc.Failures {
			s.P("*%s, %s* failed: `%s`", sc.App, sc.Name, benchsrv.Trim(f, 400))
		}
	}
	return s.Write(*out, *jsonOut, map[string]any{"server_start_ms": float64(startup) / 1e6, "scenarios": all})
}

var (
	stepRE    = regexp.MustCompile(`^#(\d+) (.*)$`)
	doneRE    = regexp.MustCompile(`^#(\d+) DONE ([0-9.]+)s$`)
	extractRE = regexp.MustCompile(`^#(\d+) extracting ([0-9.]+)s done$`)
)

// slowSteps names the n slowest steps of a deployment's BuildKit build
// (a step's name is the first line BuildKit prints for it; extracting a
// base image is counted apart from the step that pulls it).
func slowSteps(ctx context.Context, c *serverproc.Client, id string, n int) string {
	lines, err := c.BuildLogs(ctx, id)
	if err != nil {
		return ""
	}
	names := map[string]string{}
	type step struct {
		name string
		secs float64
	}
	var steps []step
	for _, l := range lines {
		if m := doneRE.FindStringSubmatch(l.Text); m != nil {
			secs, _ := strconv.ParseFloat(m[2], 64)
			steps = append(steps, step{names[m[1]], secs})
		} else if m := extractRE.FindStringSubmatch(l.Text); m != nil {
			secs, _ := strconv.ParseFloat(m[2], 64)
			steps = append(steps, step{"extracting layers of " + names[m[1]], secs})
		} else if m := stepRE.FindStringSubmatch(l.Text); m != nil {
			if _, ok := names[m[1]]; !ok {
				names[m[1]] = m[2]
			}
		}
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].secs > steps[j].secs })
	var out []string
	for i := 0; i < n && i < len(steps); i++ {
		out = append(out, fmt.Sprintf("`%s` %.1f s", benchsrv.Trim(steps[i].name, 90), steps[i].secs))
	}
	return strings.Join(out, "; ")
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// median takes the median of each field separately.
func median(runs []benchsrv.Push) benchsrv.Push {
	pick := func(f func(benchsrv.Push) float64) float64 {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, f(r))
		}
		return stats.Median(xs)
	}
	return benchsrv.Push{
		RunningMS: pick(func(p benchsrv.Push) float64 { return p.RunningMS }),
		FirstOKMS: pick(func(p benchsrv.Push) float64 { return p.FirstOKMS }),
		UploadMS:  pick(func(p benchsrv.Push) float64 { return p.UploadMS }),
		QueueMS:   pick(func(p benchsrv.Push) float64 { return p.QueueMS }),
		InitMS:    pick(func(p benchsrv.Push) float64 { return p.InitMS }),
		BuildMS:   pick(func(p benchsrv.Push) float64 { return p.BuildMS }),
		DeployMS:  pick(func(p benchsrv.Push) float64 { return p.DeployMS }),
		RouteMS:   pick(func(p benchsrv.Push) float64 { return p.RouteMS }),
	}
}

// Command summary reads the JSON results of the benchmarks and writes the
// section of BENCHMARKS.md that sets them against the targets of
// DESIGN.md. Results that are missing are reported as such.
//
//	summary -dir RESULTS [-out summary.md]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/bench/internal/report"
	"github.com/slipwayhq/slipway/bench/internal/stats"
)

func main() {
	dir := flag.String("dir", ".", "directory holding router.json, wake.json, push.json and density.json")
	out := flag.String("out", "", "Markdown section to write (default: stdout)")
	flag.Parse()
	var rows [][]string
	add := func(what, target, measured string, ok *bool) {
		verdict := "–"
		if ok != nil {
			verdict = map[bool]string{true: "met", false: "**not met**"}[*ok]
		}
		rows = append(rows, []string{what, target, measured, verdict})
	}
	b := func(v bool) *bool { return &v }

	var router []struct {
		Name  string  `json:"name"`
		RPS   float64 `json:"rps_median"`
		P99MS float64 `json:"p99_ms_median"`
	}
	if load(*dir, "router.json", &router) && len(router) >= 4 {
		var slip, nginx1 = router[1], router[len(router)-2]
		for _, r := range router {
			if strings.HasPrefix(r.Name, "nginx, 1 ") {
				nginx1 = r
			}
		}
		add("router throughput, small responses ("+slip.Name+" vs "+nginx1.Name+")", "≥ nginx's req/s, p99 ≤ nginx's",
			fmt.Sprintf("%.0f vs %.0f req/s (%s); p99 %.2f vs %.2f ms", slip.RPS, nginx1.RPS, stats.Ratio(slip.RPS, nginx1.RPS), slip.P99MS, nginx1.P99MS),
			b(slip.RPS >= nginx1.RPS && slip.P99MS <= nginx1.P99MS))
	} else {
		add("router throughput", "≥ nginx's req/s, p99 ≤ nginx's", "not measured", nil)
	}

	var wake []struct {
		Name    string          `json:"name"`
		Samples []time.Duration `json:"samples_ns"`
	}
	found := false
	if load(*dir, "wake.json", &wake) {
		series := map[string]stats.Summary{}
		for _, w := range wake {
			if len(w.Samples) > 0 {
				series[w.Name] = stats.Summarize(w.Samples)
			}
		}
		for name, m := range series {
			if strings.HasPrefix(name, "hello: wake through Slipway") {
				add("wake from zero → first byte, static Go app", "p50 ≤ 20 ms, p99 ≤ 50 ms",
					fmt.Sprintf("p50 %s ms, p99 %s ms (n=%d)", stats.MS(m.P50), stats.MS(m.P99), m.N),
					b(m.P50 <= 20*time.Millisecond && m.P99 <= 50*time.Millisecond))
				found = true
			}
		}
		// The Python (Flask) app's wake against its own cold start: the
		// app started as a plain process in its image's filesystem. Its
		// series are named after its example directory.
		for name, m := range series {
			app, _, ok := strings.Cut(name, ": wake through Slipway")
			if !ok || app == "hello" {
				continue
			}
			for cold, c := range series {
				if strings.HasPrefix(cold, app+": plain process") {
					add("wake of the Python app ("+app+") against its own cold start (plain process)", "≤ 0.5× (snapshot restore)",
						fmt.Sprintf("p50 %s ms vs %s ms (%s)", stats.MS(m.P50), stats.MS(c.P50), stats.Ratio(float64(m.P50), float64(c.P50))),
						b(float64(m.P50) <= 0.5*float64(c.P50)))
				}
			}
		}
	}
	if !found {
		add("wake from zero", "p50 ≤ 20 ms, p99 ≤ 50 ms", "not measured", nil)
	}
	// The Flask app's snapshot wakes on gvisor (wakebench -snapshot)
	// against its cold start in the same sandbox and its cold wakes.
	var snap []struct {
		Name    string          `json:"name"`
		Samples []time.Duration `json:"samples_ns"`
	}
	if load(*dir, "wake-snapshot.json", &snap) {
		var wake, coldStart, coldWake stats.Summary
		for _, w := range snap {
			if len(w.Samples) == 0 {
				continue
			}
			switch _, name, _ := strings.Cut(w.Name, ": "); {
			case strings.HasPrefix(name, "wake through Slipway on gvisor, resuming") && !strings.Contains(name, "prepared ahead") && !strings.Contains(name, "new sandbox"):
				wake = stats.Summarize(w.Samples)
			case strings.HasPrefix(name, "gvisor driver alone, cold"):
				coldStart = stats.Summarize(w.Samples)
			case strings.HasPrefix(name, "wake through Slipway on gvisor with --snapshots=false") && !strings.Contains(name, "prepared ahead") && !strings.Contains(name, "new sandbox"):
				coldWake = stats.Summarize(w.Samples)
			}
		}
		if wake.N > 0 && coldStart.N > 0 {
			add("snapshot wake of the Python app on gvisor against its cold start there (gvisor driver alone)", "≤ 0.5×",
				fmt.Sprintf("p50 %s ms vs %s ms (%s)", stats.MS(wake.P50), stats.MS(coldStart.P50), stats.Ratio(float64(wake.P50), float64(coldStart.P50))),
				b(float64(wake.P50) <= 0.5*float64(coldStart.P50)))
		}
		if wake.N > 0 && coldWake.N > 0 {
			add("snapshot wake of the Python app on gvisor against its cold wake there (--snapshots=false)", "≤ 0.5×",
				fmt.Sprintf("p50 %s ms vs %s ms (%s)", stats.MS(wake.P50), stats.MS(coldWake.P50), stats.Ratio(float64(wake.P50), float64(coldWake.P50))),
				b(float64(wake.P50) <= 0.5*float64(coldWake.P50)))
		}
	}

	var push struct {
		Scenarios []struct {
			App  string `json:"app"`
			Name string `json:"scenario"`
			Runs []struct {
				FirstOKMS float64 `json:"first_200_ms"`
			} `json:"runs"`
		} `json:"scenarios"`
	}
	if load(*dir, "push.json", &push) {
		for _, sc := range push.Scenarios {
			if sc.App != "hello" || len(sc.Runs) == 0 {
				continue
			}
			var xs []float64
			for _, r := range sc.Runs {
				xs = append(xs, r.FirstOKMS)
			}
			m := stats.Median(xs)
			switch {
			case strings.HasPrefix(sc.Name, "cold"):
				add("push → live, examples/hello, cold cache (base images present)", "≤ 10 s", fmt.Sprintf("%.1f s", m/1000), b(m <= 10000))
			case sc.Name == "warm, same source":
				add("push → live, examples/hello, warm cache, same source", "≤ 1 s", fmt.Sprintf("%.2f s (median of %d)", m/1000, len(xs)), b(m <= 1000))
			case strings.Contains(sc.Name, "main.go"):
				add("push → live, examples/hello, warm cache, Go code changed", "≤ 1 s", fmt.Sprintf("%.1f s", m/1000), b(m <= 1000))
			}
		}
	} else {
		add("push → live", "≤ 1 s warm, ≤ 10 s cold", "not measured", nil)
	}

	var density struct {
		Idle struct {
			ServerRSS    int64 `json:"server_rss"`
			BuildkitdRSS int64 `json:"buildkitd_rss"`
		} `json:"idle"`
		Recorded []struct {
			Deployments int     `json:"deployments"`
			ServerRSS   int64   `json:"server_rss"`
			NewestMS    float64 `json:"start_to_newest_answer_ms"`
		} `json:"recorded"`
	}
	if load(*dir, "density.json", &density) {
		add("server memory, idle", "≤ 60 MB RSS", fmt.Sprintf("%s (the slipway process; %s with the buildkitd it runs)",
			report.MiB(density.Idle.ServerRSS), report.MiB(density.Idle.ServerRSS+density.Idle.BuildkitdRSS)), b(density.Idle.ServerRSS <= 60e6))
		largest := -1
		for i, r := range density.Recorded {
			if largest < 0 || r.Deployments > density.Recorded[largest].Deployments {
				largest = i
			}
		}
		if largest >= 0 {
			r := density.Recorded[largest]
			// The target is set at 10,000; a smaller run is reported
			// against it without a verdict.
			var ok *bool
			if r.Deployments >= 10000 {
				ok = b(r.ServerRSS <= 100e6)
			}
			add(fmt.Sprintf("server memory, %s deployments kept reachable (scaled to zero)", thousands(r.Deployments)), "≤ 100 MB RSS with 10,000", report.MiB(r.ServerRSS), ok)
			add(fmt.Sprintf("server restart → the newest of %s deployments answers", thousands(r.Deployments)), "≤ 1 s (all routes served)",
				fmt.Sprintf("%.0f ms", r.NewestMS), b(r.NewestMS <= 1000))
		}
	} else {
		add("server memory", "≤ 60 MB idle, ≤ 100 MB with 10,000 deployments", "not measured", nil)
	}
	add("deploy switch under load", "0 failed of ≥ 100,000 requests across 20 back-to-back deploys",
		"measured by the fault suite (test/fault TestDeployUnderLoad), not here", nil)

	var s report.Section
	s.Heading("Summary against the targets")
	s.P("Targets from DESIGN.md; the figures are from the sections below, measured in this run.")
	s.Table(append([][]string{{"what", "target", "measured", "verdict"}}, rows...))
	if err := s.Write(*out, "", nil); err != nil {
		fmt.Fprintln(os.Stderr, "summary:", err)
		os.Exit(1)
	}
}

// load decodes dir/name into v and reports whether it could.
func load(dir, name string, v any) bool {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return false
	}
	return json.Unmarshal(b, v) == nil
}

// thousands formats n with commas: 10000 → "10,000".
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

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
		for _, w := range wake {
			if strings.HasPrefix(w.Name, "hello: wake through Slipway") && len(w.Samples) > 0 {
				m := stats.Summarize(w.Samples)
				add("wake from zero → first byte, static Go app", "p50 ≤ 50 ms, p99 ≤ 150 ms",
					fmt.Sprintf("p50 %s ms, p99 %s ms (n=%d)", stats.MS(m.P50), stats.MS(m.P99), m.N),
					b(m.P50 <= 50*time.Millisecond && m.P99 <= 150*time.Millisecond))
				found = true
			}
		}
	}
	if !found {
		add("wake from zero", "p50 ≤ 50 ms, p99 ≤ 150 ms", "not measured", nil)
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
				add("push → live, examples/hello, cold cache (base images present)", "≤ 20 s", fmt.Sprintf("%.1f s", m/1000), b(m <= 20000))
			case sc.Name == "warm, same source":
				add("push → live, examples/hello, warm cache, same source", "≤ 3 s", fmt.Sprintf("%.2f s (median of %d)", m/1000, len(xs)), b(m <= 3000))
			case strings.Contains(sc.Name, "main.go"):
				add("push → live, examples/hello, warm cache, Go code changed", "≤ 3 s", fmt.Sprintf("%.1f s", m/1000), b(m <= 3000))
			}
		}
	} else {
		add("push → live", "≤ 3 s warm, ≤ 20 s cold", "not measured", nil)
	}

	var density struct {
		Idle struct {
			ServerRSS    int64 `json:"server_rss"`
			BuildkitdRSS int64 `json:"buildkitd_rss"`
		} `json:"idle"`
		Recorded []struct {
			Deployments int   `json:"deployments"`
			ServerRSS   int64 `json:"server_rss"`
		} `json:"recorded"`
	}
	if load(*dir, "density.json", &density) {
		add("server memory, idle", "≤ 60 MB RSS", fmt.Sprintf("%s (the slipway process; %s with the buildkitd it runs)",
			report.MiB(density.Idle.ServerRSS), report.MiB(density.Idle.ServerRSS+density.Idle.BuildkitdRSS)), b(density.Idle.ServerRSS <= 60e6))
		for _, r := range density.Recorded {
			if r.Deployments == 1000 {
				add("server memory, 1,000 deployments kept reachable (scaled to zero)", "≤ 100 MB RSS", report.MiB(r.ServerRSS), b(r.ServerRSS <= 100e6))
			}
		}
	} else {
		add("server memory", "≤ 60 MB idle, ≤ 100 MB with 1,000 deployments", "not measured", nil)
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

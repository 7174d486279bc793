// Package wrk runs the wrk load generator (Debian package wrk) and parses
// what it prints: requests per second, latency percentiles (with
// --latency) and errors.
package wrk

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Options describe one wrk run.
type Options struct {
	// URL is the target; Host, if set, is sent as the Host header.
	URL, Host string
	// Threads and Connections are wrk's -t and -c. If zero, 1 and 32.
	Threads, Connections int
	// Duration is wrk's -d. If zero, 8 s.
	Duration time.Duration
	// Prefix, if set, runs wrk through a command (such as
	// "ip netns exec NAME").
	Prefix []string
}

// Result is what one run measured.
type Result struct {
	Command     string  `json:"command"`
	Requests    int64   `json:"requests"`
	RPS         float64 `json:"rps"`
	P50MS       float64 `json:"p50_ms"`
	P99MS       float64 `json:"p99_ms"`
	Non2xx      int64   `json:"non_2xx"`
	SocketError int64   `json:"socket_errors"`
}

// Args returns the command line of a run.
func (o Options) Args() []string {
	if o.Threads == 0 {
		o.Threads = 1
	}
	if o.Connections == 0 {
		o.Connections = 32
	}
	if o.Duration == 0 {
		o.Duration = 8 * time.Second
	}
	args := append([]string{}, o.Prefix...)
	args = append(args, "wrk", "-t"+strconv.Itoa(o.Threads), "-c"+strconv.Itoa(o.Connections),
		"-d"+o.Duration.String(), "--latency")
	if o.Host != "" {
		args = append(args, "-H", "Host: "+o.Host)
	}
	return append(args, o.URL)
}

// Run runs wrk and parses its output.
func Run(ctx context.Context, o Options) (Result, error) {
	args := o.Args()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	r, err := Parse(out.String())
	r.Command = Quote(args)
	return r, err
}

var (
	rpsRE      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	totalRE    = regexp.MustCompile(`(\d+) requests in`)
	latRE      = regexp.MustCompile(`(?m)^\s+(50|90|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	non2xxRE   = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	socketErrs = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// Parse reads wrk's output (run with --latency).
func Parse(out string) (Result, error) {
	var r Result
	m := rpsRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no Requests/sec in wrk's output:\n%s", out)
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	if m := totalRE.FindStringSubmatch(out); m != nil {
		r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	for _, m := range latRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		switch m[1] {
		case "50":
			r.P50MS = v
		case "99":
			r.P99MS = v
		}
	}
	if r.P50MS == 0 {
		return r, fmt.Errorf("no latency distribution in wrk's output (run with --latency):\n%s", out)
	}
	if m := non2xxRE.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := socketErrs.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.SocketError += n
		}
	}
	return r, nil
}

// Quote renders a command line for a shell.
func Quote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$;&|<>()*?[]#~`\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

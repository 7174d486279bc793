package fault

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Log flood: one app writes newlines to stdout as fast as it can (8 MiB,
// five times, a second apart) while another project deploys and the API
// is read. The other deployment must succeed, the server must never report
// "database is locked", its resident memory must stay under 300 MB and no
// API call may take over 1 s (the acceptance bounds of issue 13; the
// figures are printed). The flood's runtime log says how much of it was
// dropped.
func TestLogFlood(t *testing.T) {
	const (
		floodBytes = 8 << 20
		floodTimes = 5
		maxRSS     = 300_000_000 // bytes
		maxCall    = time.Second
	)
	e := sharedEnv(t)
	c := e.c
	ensureProject(t, c, "flood")
	ensureProject(t, c, "calm")
	flooder := deployRunning(t, c, "flood", faultApp(t, "flood"), 10*time.Minute)
	t.Cleanup(func() { c.StopDeployment(context.Background(), flooder.ID) })
	serverLog, err := os.ReadFile(e.srv.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	logFrom := len(serverLog)

	// The API, quiet, for comparison.
	calls := []string{
		"/api/v1/projects/calm/deployments",
		"/api/v1/deployments/" + flooder.ID,
		"/api/v1/deployments/" + flooder.ID + "/logs?limit=100",
		"/api/v1/projects",
	}
	call := func(path string) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		code, body, err := c.Do(ctx, "GET", path, nil, "")
		took := time.Since(start)
		if err == nil && code != 200 {
			err = fmt.Errorf("GET %s: %d %s", path, code, body)
		}
		return took, err
	}
	var quiet []time.Duration
	for range 10 {
		for _, p := range calls {
			took, err := call(p)
			if err != nil {
				t.Fatal(err)
			}
			quiet = append(quiet, took)
		}
	}

	// Measure while the app floods and the other project deploys.
	pid := e.srv.PID()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var rss []int64
	var busy []time.Duration
	var callErrs []error
	wg.Add(2)
	go func() { // the server's resident memory, every 50 ms
		defer wg.Done()
		for {
			if n, ok := residentBytes(pid); ok {
				mu.Lock()
				rss = append(rss, n)
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	go func() { // the API, one call after another
		defer wg.Done()
		for i := 0; ; i++ {
			took, err := call(calls[i%len(calls)])
			mu.Lock()
			busy = append(busy, took)
			if err != nil {
				callErrs = append(callErrs, err)
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	report, _ := askApp(t, c, c.Host("flood"), "/flood", url.Values{
		"bytes": {strconv.Itoa(floodBytes)}, "times": {strconv.Itoa(floodTimes)}}, time.Minute)
	if report["flooding"] != strconv.Itoa(floodBytes*floodTimes) {
		t.Fatalf("the app did not start flooding: %v", report)
	}
	start := time.Now()
	calm := deployRunning(t, c, "calm", faultApp(t, "calm"), 10*time.Minute)
	t.Cleanup(func() { c.StopDeployment(context.Background(), calm.ID) })
	deployTook := time.Since(start)
	// Past the flood's end, and until the tailer has caught up.
	time.Sleep(time.Until(start.Add(floodTimes*time.Second + 2*time.Second)))
	var lines []string
	waitFor := time.Now().Add(30 * time.Second)
	for {
		logs, err := c.RuntimeLogs(context.Background(), flooder.ID)
		if err != nil {
			t.Fatal(err)
		}
		lines = lines[:0]
		for _, l := range logs {
			lines = append(lines, l.Text)
		}
		if slices.ContainsFunc(lines, func(s string) bool { return strings.Contains(s, "dropped") }) || time.Now().After(waitFor) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	serverLog, _ = os.ReadFile(e.srv.LogPath())
	locked := strings.Count(string(serverLog[logFrom:]), "database is locked")
	peak := slices.Max(rss)
	slices.Sort(quiet)
	slices.Sort(busy)
	pct := func(d []time.Duration, p float64) time.Duration {
		return d[int(float64(len(d)-1)*p)].Round(10 * time.Microsecond)
	}
	var notices []string
	for _, l := range lines {
		if strings.Contains(l, "dropped") {
			notices = append(notices, l)
		}
	}
	t.Logf("flood: %d × %d MiB of newlines; other project's deploy took %s (%s)", floodTimes, floodBytes>>20, deployTook.Round(time.Millisecond), calm.Status)
	t.Logf("server RSS: peak %.1f MB over %d samples (limit %d MB)", float64(peak)/1e6, len(rss), maxRSS/1_000_000)
	t.Logf("API calls: quiet p50 %s max %s (%d); during the flood p50 %s p99 %s max %s (%d calls)",
		pct(quiet, 0.5), quiet[len(quiet)-1], len(quiet), pct(busy, 0.5), pct(busy, 0.99), busy[len(busy)-1], len(busy))
	t.Logf("flood's runtime log: %d lines stored; %q", len(lines), notices)
	t.Logf("\"database is locked\" in the server log: %d", locked)

	if calm.Status != "RUNNING" {
		t.Errorf("the other project's deployment is %s", calm.Status)
	}
	if locked > 0 {
		t.Errorf("the server logged \"database is locked\" %d times during the flood", locked)
	}
	if len(callErrs) > 0 {
		t.Errorf("%d API calls failed during the flood, the first: %v", len(callErrs), callErrs[0])
	}
	if peak > maxRSS {
		t.Errorf("server RSS peaked at %.1f MB during the flood; the bound is %d MB", float64(peak)/1e6, maxRSS/1_000_000)
	}
	if worst := busy[len(busy)-1]; worst > maxCall {
		t.Errorf("the slowest API call during the flood took %s; the bound is %s", worst, maxCall)
	}
	if len(notices) == 0 {
		t.Errorf("the flood's runtime log does not say what was dropped; its last lines: %q", lines[max(0, len(lines)-5):])
	}
}

// residentBytes reads a process's resident set size from /proc.
func residentBytes(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

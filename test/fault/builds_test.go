package fault

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

// sleeper is a source whose build runs `sleep 600` in a step whose
// command line holds marker, so the test finds its process in /proc.
func sleeper(t *testing.T, marker string) string {
	t.Helper()
	dir := t.TempDir()
	df := "FROM debian:bookworm-slim\nRUN sleep 600 && echo " + marker + "\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// processesWith counts the processes whose command line holds s.
func processesWith(s string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	n := 0
	for _, d := range dirs {
		if cmd, err := os.ReadFile(filepath.Join(d, "cmdline")); err == nil && bytes.Contains(cmd, []byte(s)) {
			n++
		}
	}
	return n
}

// waitProcesses waits until want(count of processes holding s) holds.
func waitProcesses(t *testing.T, s, what string, want func(int) bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !want(processesWith(s)) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d processes hold %q", what, processesWith(s), s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func upload(t *testing.T, c *serverproc.Client, project, dir string) api.Deployment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := c.Upload(ctx, project, dir, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBuildDeadline: a build that runs past its project's build timeout
// (here `RUN sleep 600` with buildTimeout 20s) is FAILED saying so, its
// step's process is gone (the BuildKit solve was cancelled), and the
// project's current deployment keeps serving.
func TestBuildDeadline(t *testing.T) {
	e := sharedEnv(t)
	c := e.c
	ensureProject(t, c, "deadline")
	good := deployRunning(t, c, "deadline", faultApp(t, "deadline"), 10*time.Minute)
	t.Cleanup(func() { c.StopDeployment(context.Background(), good.ID) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.JSON(ctx, "PATCH", "/api/v1/projects/deadline/settings", map[string]string{"buildTimeout": "20s"}, nil); err != nil {
		t.Fatal(err)
	}
	marker := fmt.Sprintf("slipway-deadline-%d", time.Now().UnixNano())
	start := time.Now()
	d := upload(t, c, "deadline", sleeper(t, marker))
	waitProcesses(t, marker, "the step never started", func(n int) bool { return n > 0 })
	d, err := c.WaitSettled(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("deployment %s: %s after %s: %q", d.ID, d.Status, time.Since(start).Round(time.Millisecond), d.FailureReason)
	if d.Status != "FAILED" || d.FailureReason != "build exceeded 20s deadline" {
		t.Fatalf("deployment %s is %s (%q), want FAILED: build exceeded 20s deadline", d.ID, d.Status, d.FailureReason)
	}
	waitProcesses(t, marker, "the step still runs after the deadline", func(n int) bool { return n == 0 })
	if got := info(t, c, c.Host("deadline")); got.Deployment != good.ID {
		t.Errorf("the default hostname is served by %s, want the last good deployment %s", got.Deployment, good.ID)
	}
}

// TestBuildsCantStarveOthers: a project queues three builds that never end
// by themselves; it gets one builder at a time, its other deployments
// wait, and another project's deployment builds and goes live meanwhile
// (the server has two builders).
func TestBuildsCantStarveOthers(t *testing.T) {
	e := sharedEnv(t)
	c := e.c
	ensureProject(t, c, "hog")
	ensureProject(t, c, "fair")
	marker := fmt.Sprintf("slipway-hog-%d", time.Now().UnixNano())
	var hogs []api.Deployment
	for i := range 3 {
		hogs = append(hogs, upload(t, c, "hog", sleeper(t, fmt.Sprintf("%s-%d", marker, i))))
	}
	t.Cleanup(func() {
		for _, d := range hogs {
			c.StopDeployment(context.Background(), d.ID)
		}
	})
	waitProcesses(t, marker, "the first of hog's builds never started", func(n int) bool { return n > 0 })

	start := time.Now()
	fair := deployRunning(t, c, "fair", faultApp(t, "fair"), 5*time.Minute)
	t.Cleanup(func() { c.StopDeployment(context.Background(), fair.ID) })
	t.Logf("fair's deployment went live %s after hog's builds started", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var statuses []string
	for _, h := range hogs {
		d, err := c.Deployment(ctx, h.ID)
		if err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, d.Status)
	}
	t.Logf("hog's deployments: %v", statuses)
	if strings.Join(statuses, " ") != "BUILDING PENDING PENDING" {
		t.Errorf("hog's deployments are %v, want one BUILDING and the others PENDING", statuses)
	}
	if n := processesWith(marker); n == 0 || processesWith(marker+"-1") > 0 || processesWith(marker+"-2") > 0 {
		t.Errorf("processes of hog's build steps: first %d, second %d, third %d; want only the first's",
			processesWith(marker+"-0"), processesWith(marker+"-1"), processesWith(marker+"-2"))
	}
	for _, d := range hogs {
		if err := c.StopDeployment(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
	}
	waitProcesses(t, marker, "hog's build steps still run after its deployments were stopped", func(n int) bool { return n == 0 })
}

package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
)

// requireRunsc skips a test that needs gVisor's runsc when it is not
// installed, unless CI is set: there it fails (scripts/setup.sh installs
// it with scripts/install-gvisor.sh).
func requireRunsc(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("runsc"); err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("runsc not found in PATH (scripts/install-gvisor.sh installs it; CI is set, so this may not skip)")
	}
	t.Skip("runsc not found in PATH (scripts/install-gvisor.sh installs it)")
}

// instanceExes returns the executables of the processes in the cgroup of
// instance id (/slipway/<id>, in the first hierarchy that has it).
func instanceExes(t *testing.T, id string) []string {
	t.Helper()
	procs, _ := filepath.Glob("/sys/fs/cgroup/*/slipway/" + id + "/cgroup.procs")
	if len(procs) == 0 {
		procs, _ = filepath.Glob("/sys/fs/cgroup/slipway/" + id + "/cgroup.procs")
	}
	if len(procs) == 0 {
		t.Fatalf("instance %s has no cgroup", id)
	}
	b, err := os.ReadFile(procs[0])
	if err != nil {
		t.Fatal(err)
	}
	var exes []string
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil {
			exes = append(exes, filepath.Base(strings.TrimSuffix(exe, " (deleted)")))
		}
	}
	return exes
}

// TestGVisorSandbox deploys testdata/app to a project whose sandbox is
// gvisor: it goes RUNNING in runsc's sandbox (the processes in its cgroup
// are runsc's, none is the app's own binary on the host's kernel),
// answers through the router, scales to zero and wakes there.
func TestGVisorSandbox(t *testing.T) {
	h := startServer(t)
	requireRunsc(t)
	h.projectWith("gv", map[string]string{"sandbox": "gvisor", "idleTimeout": "1s"})
	d := h.wait(h.upload("gv", "testdata/app", "").ID)
	if d.Status != "RUNNING" {
		t.Fatalf("deployment on gvisor: %s %s\nruntime log:\n%s", d.Status, d.FailureReason, h.runtimeLog(d.ID))
	}
	if d.Sandbox != "gvisor" {
		t.Errorf("deployment's sandbox = %q, want gvisor", d.Sandbox)
	}
	if len(d.Instances) == 0 {
		t.Fatal("no instance listed")
	}
	exes := instanceExes(t, d.Instances[0].ID)
	if len(exes) == 0 {
		t.Errorf("no process in the instance's cgroup")
	}
	for _, exe := range exes {
		if exe != "runsc" {
			t.Errorf("process %q in the instance's cgroup, want only runsc's (the Sentry and its gofer)", exe)
		}
	}
	if code, body, err := h.body("gv.slipway.localhost", "/"); err != nil || code != 200 || !strings.Contains(body, d.ID) {
		t.Fatalf("GET through the router: %d %q %v", code, body, err)
	}
	slept := h.sleeps(d.ID)
	for i := range 3 {
		h.waitSleep(d.ID, slept, 30*time.Second)
		start := time.Now()
		code, body, err := h.body(d.ID+".slipway.localhost", "/")
		if err != nil || code != 200 || !strings.Contains(body, d.ID) {
			t.Fatalf("wake %d: %d %q %v", i, code, body, err)
		}
		slept = h.sleeps(d.ID)
		t.Logf("wake %d from zero on gvisor, request → response through the router: %s", i, time.Since(start).Round(time.Millisecond))
	}
	var again api.Deployment
	h.call("GET", "/api/v1/deployments/"+d.ID, nil, &again)
	if len(again.Instances) < 4 {
		t.Errorf("instances after 3 wakes: %d, want 4", len(again.Instances))
	}
	h.do("PATCH", "/api/v1/projects/gv/settings", strings.NewReader(`{"idleTimeout":"0"}`), "application/json")
}

// TestGVisorSnapshotWake: on gvisor, the deployment's first healthy
// instance is saved, and each wake resumes that snapshot instead of
// starting the app. testdata/app answers with the time its process
// started, which only memory holds: a wake that answers with the time of
// the saved instance is a restore, never a cold start. The snapshot is on
// disk: after a restart of the server, wakes still resume it. One that
// no longer matches (here, its key rewritten) is discarded, saying so,
// that wake starts the app, and its instance is saved anew. Stopping the
// deployment removes its snapshots.
func TestGVisorSnapshotWake(t *testing.T) {
	h := startServer(t)
	requireRunsc(t)
	h.projectWith("gvsnap", map[string]string{"sandbox": "gvisor", "idleTimeout": "1s"})
	d := h.wait(h.upload("gvsnap", "testdata/app", "").ID)
	if d.Status != "RUNNING" {
		t.Fatalf("deployment on gvisor: %s %s\nruntime log:\n%s", d.Status, d.FailureReason, h.runtimeLog(d.ID))
	}
	host := d.ID + ".slipway.localhost"
	saves := func() int {
		return len(regexp.MustCompile(`snapshot of instance \S+ saved in`).FindAllStringIndex(h.runtimeLog(d.ID), -1))
	}
	waitSaves := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); saves() < n; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no snapshot saved (%d wanted) within 2 minutes; runtime log:\n%s", n, h.runtimeLog(d.ID))
			}
		}
	}
	waitSaves(1)
	dir := filepath.Join(h.data, "snapshots", d.ID, "gvisor")
	if _, err := os.Stat(filepath.Join(dir, "snapshot.json")); err != nil {
		t.Fatalf("the snapshot is not on disk: %v", err)
	}
	// started is the saved app's answer: "app <deployment> started <ns>".
	code, saved, err := h.body(host, "/")
	if err != nil || code != 200 || !strings.Contains(saved, d.ID) {
		t.Fatalf("GET /: %d %q %v", code, saved, err)
	}
	wake := func(what string) string {
		t.Helper()
		h.waitSleep(d.ID, h.sleeps(d.ID), time.Minute)
		start := time.Now()
		code, body, err := h.body(host, "/")
		if err != nil || code != 200 {
			t.Fatalf("%s: %d %q %v", what, code, body, err)
		}
		t.Logf("%s: request → response through the router in %s", what, time.Since(start).Round(time.Millisecond))
		return body
	}
	for i := range 2 {
		if body := wake(fmt.Sprintf("wake %d", i)); body != saved {
			t.Errorf("wake %d answered %q, want the saved app's %q (resumed, not started)\nruntime log:\n%s", i, body, saved, h.runtimeLog(d.ID))
		}
	}
	if log := h.runtimeLog(d.ID); !strings.Contains(log, "resumed from a snapshot") {
		t.Errorf("no wake says it resumed from a snapshot; runtime log:\n%s", log)
	}
	// By default (--restore-ahead-memory) the sandbox prepared for each
	// wake had the snapshot restored ahead: the wake only resumed it.
	if log := h.runtimeLog(d.ID); strings.Count(log, "restored from the deployment's snapshot ahead") != 2 {
		t.Errorf("want both wakes to resume an app restored ahead; runtime log:\n%s", log)
	}
	// The API's wake records say so too (recorded once the wake is done).
	var wakes []api.Wake
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		wakes = nil
		h.call("GET", "/api/v1/deployments/"+d.ID+"/wakes", nil, &wakes)
		if len(wakes) >= 2 || time.Now().After(end) {
			break
		}
	}
	if len(wakes) != 2 || !wakes[0].Restored || !wakes[1].Restored || !wakes[0].OK {
		t.Errorf("wakes %+v, want 2, both restored", wakes)
	}

	h.restart()
	if body := wake("wake after a restart of the server"); body != saved {
		t.Errorf("after a restart, the wake answered %q, want the saved app's %q", body, saved)
	}

	// A snapshot that does not match any more (as after a new runsc).
	meta := filepath.Join(dir, "snapshot.json")
	b, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["key"] = "stale"
	b, _ = json.Marshal(m)
	if err := os.WriteFile(meta, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Its sandbox for the next wake is prepared when it falls asleep,
	// after the key changed: preparing it finds the snapshot stale.
	cold := wake("wake after the snapshot went stale")
	if cold == saved {
		t.Errorf("a stale snapshot was resumed: %q", cold)
	}
	if log := h.runtimeLog(d.ID); !strings.Contains(log, "snapshot discarded") {
		t.Errorf("the runtime log does not say the stale snapshot was discarded:\n%s", log)
	}
	waitSaves(2)
	if body := wake("wake from the new snapshot"); body != cold {
		t.Errorf("after the new save, the wake answered %q, want the newly saved app's %q", body, cold)
	}

	h.do("PATCH", "/api/v1/projects/gvsnap/settings", strings.NewReader(`{"idleTimeout":"0"}`), "application/json")
	if code := h.call("POST", "/api/v1/deployments/"+d.ID+"/stop", nil, nil); code != http.StatusOK {
		t.Fatalf("stop: %d", code)
	}
	if _, err := os.Stat(filepath.Join(h.data, "snapshots", d.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the deployment's snapshots outlive its stop (%v)", err)
	}
}

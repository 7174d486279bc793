package server

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
	h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: "gv"}, nil)
	if code := h.call("PATCH", "/api/v1/projects/gv/settings", map[string]string{"sandbox": "gvisor", "idleTimeout": "1s"}, nil); code != http.StatusOK {
		t.Fatalf("PATCH settings: %d", code)
	}
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

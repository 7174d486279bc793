package server

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// requireMicroVM skips (fails under CI) where the microvm sandbox cannot
// run: scripts/install-microvm.sh installs what it needs.
func requireMicroVM(t *testing.T) {
	t.Helper()
	var missing string
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing = "qemu-system-x86_64"
	} else if k, _ := filepath.Glob("/usr/local/lib/slipway/microvm/vmlinuz-*-cloud-amd64"); len(k) == 0 {
		missing = "a guest kernel in /usr/local/lib/slipway/microvm"
	} else if _, err := os.Stat("/usr/local/lib/slipway/microvm/slipway-init"); err != nil {
		missing = "slipway-init in /usr/local/lib/slipway/microvm"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("the microvm sandbox needs %s (scripts/install-microvm.sh; CI is set, so this may not skip)", missing)
	}
	t.Skipf("the microvm sandbox needs %s (scripts/install-microvm.sh)", missing)
}

// TestMicroVMSandbox deploys examples/go to a project whose sandbox is
// microvm and to one on runc: each goes RUNNING, answers through the
// router, scales to zero and wakes on the next request. It logs, for each
// sandbox, how long a wake takes to the first 200 through the router
// (the start of a new instance: a VM's boot, for microvm).
func TestMicroVMSandbox(t *testing.T) {
	h := startServer(t)
	requireMicroVM(t)
	dir := filepath.Join("..", "..", "examples", "go")
	wakes := map[string][]time.Duration{}
	for _, sandbox := range []string{"microvm", "runc"} {
		project := "sbx-" + sandbox
		h.t = t
		h.projectWith(project, map[string]string{"sandbox": sandbox, "idleTimeout": "1s"})
		d, took := deployExample(h, project, dir)
		if d.Sandbox != sandbox {
			t.Errorf("deployment's sandbox = %q, want %q", d.Sandbox, sandbox)
		}
		host := project + ".slipway.localhost"
		if code, body, err := h.body(host, "/"); err != nil || code != 200 {
			t.Fatalf("GET %s/: %d %q %v\nruntime log:\n%s", host, code, body, err, h.runtimeLog(d.ID))
		}
		t.Logf("%s: upload → RUNNING %v", sandbox, took.Round(100*time.Millisecond))
		slept := h.sleeps(d.ID)
		for i := range 3 {
			h.waitSleep(d.ID, slept, 2*time.Minute)
			t0 := time.Now()
			code, body, err := h.body(host, "/")
			if err != nil || code != 200 {
				// The server runs in this process: where its goroutines
				// wait tells what held the wake.
				var stacks strings.Builder
				pprof.Lookup("goroutine").WriteTo(&stacks, 1)
				t.Fatalf("%s: wake %d: %d %q %v\nruntime log:\n%s\ngoroutines:\n%s", sandbox, i, code, body, err, h.runtimeLog(d.ID), stacks.String())
			}
			wakes[sandbox] = append(wakes[sandbox], time.Since(t0).Round(time.Millisecond))
			slept = h.sleeps(d.ID)
		}
		// Stop it: no VM outlives the test.
		h.call("POST", "/api/v1/deployments/"+d.ID+"/stop", nil, nil)
	}
	t.Logf("wake → first 200 through the router: microvm %v; runc %v", wakes["microvm"], wakes["runc"])
}

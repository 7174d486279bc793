package server

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExamplesOnEverySandbox deploys each offline-installable example of
// examples/ (Go, Node, a static site, Flask) to a project whose sandbox is
// gvisor and to one whose sandbox is microvm: each goes RUNNING in that
// sandbox, answers through the router as the example says it must, scales
// to zero and answers again after a wake — on gvisor, resuming the
// snapshot of its first healthy instance. (runc runs them in
// TestExamplesEndToEnd; the build is the same whatever the sandbox, so a
// second build of a source is served from BuildKit's cache.) Durations are
// logged, not asserted.
func TestExamplesOnEverySandbox(t *testing.T) {
	h := startServer(t)
	requireRunsc(t)
	requireMicroVM(t)
	for _, sandbox := range []string{"gvisor", "microvm"} {
		for _, ex := range offlineExamples {
			t.Run(sandbox+"/"+ex.dir, func(t *testing.T) {
				h.t = t
				project := "sx-" + sandbox + "-" + strings.ReplaceAll(ex.dir, "-", "")
				settings := map[string]string{"sandbox": sandbox, "idleTimeout": "1s"}
				if sandbox == "microvm" {
					// Under TCG (no KVM here) an interpreter starts several
					// times slower in the guest than on the host, more on a
					// loaded machine: Flask answered 41 s after the deploy
					// began at load 16 (README, "microvm").
					settings["deployWindow"] = "2m"
				}
				h.projectWith(project, settings)
				d, took := deployExample(h, project, filepath.Join("..", "..", "examples", ex.dir))
				// No VM or sandbox outlives the test.
				defer h.call("POST", "/api/v1/deployments/"+d.ID+"/stop", nil, nil)
				if d.Sandbox != sandbox {
					t.Errorf("deployment's sandbox = %q, want %q", d.Sandbox, sandbox)
				}
				host := project + ".slipway.localhost"
				get := func(what string) {
					t.Helper()
					code, body, err := h.body(host, "/")
					if err != nil || code != http.StatusOK {
						t.Fatalf("%s: GET %s/: %d %q %v\nruntime log:\n%s", what, host, code, body, err, h.runtimeLog(d.ID))
					}
					if why := ex.body(d.ID, body); why != "" {
						t.Fatalf("%s: GET %s/ = %q: %s", what, host, body, why)
					}
				}
				get("after deploy")
				slept := h.sleeps(d.ID)
				h.waitSleep(d.ID, slept, 2*time.Minute)
				t0 := time.Now()
				get("wake from zero")
				if sandbox == "gvisor" {
					// The deployment's first healthy instance was saved,
					// and the wake resumed it (README, "gvisor").
					for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.runtimeLog(d.ID), "resumed from a snapshot"); time.Sleep(100 * time.Millisecond) {
						if time.Now().After(deadline) {
							t.Errorf("the wake on gvisor did not resume the deployment's snapshot; runtime log:\n%s", h.runtimeLog(d.ID))
							break
						}
					}
				}
				t.Logf("examples/%s on %s: upload → RUNNING %v, wake → first 200 through the router %v",
					ex.dir, sandbox, took.Round(100*time.Millisecond), time.Since(t0).Round(time.Millisecond))
			})
		}
	}
}

package server

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
)

// memoryLimit reads the memory limit runc gave an instance's cgroup
// (cgroups v1 or hybrid, else v2).
func memoryLimit(t *testing.T, instance string) int64 {
	t.Helper()
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory/slipway", instance, "memory.limit_in_bytes"),
		filepath.Join("/sys/fs/cgroup/slipway", instance, "memory.max"),
	} {
		if b, err := os.ReadFile(f); err == nil {
			n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if err != nil {
				t.Fatalf("%s: %q", f, b)
			}
			return n
		}
	}
	t.Fatalf("no memory cgroup found for instance %s", instance)
	return 0
}

// serving returns the deployment's newest instance once it runs.
func (h *harness) serving(id string) api.Instance {
	h.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var d api.Deployment
		h.call("GET", "/api/v1/deployments/"+id, nil, &d)
		if len(d.Instances) > 0 && d.Instances[0].Status == "running" && d.Instances[0].Health == "healthy" {
			return d.Instances[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("deployment %s has no healthy instance; runtime log:\n%s", id, h.runtimeLog(id))
	return api.Instance{}
}

// A running deployment runs as it was created: variables, the start
// command, limits and the idle timeout changed afterwards reach neither a
// restart after a crash nor a wake from zero; a redeploy applies them.
func TestRunningDeploymentKeepsWhatItWasCreatedWith(t *testing.T) {
	h := startServer(t)
	const mib = 1 << 20
	h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: "frozen"}, nil)
	vars := "/api/v1/projects/frozen/environments/production/variables/GREETING"
	if code := h.call("PUT", vars, api.SetVariableRequest{Value: "one"}, nil); code != 200 {
		t.Fatalf("set variable: %d", code)
	}
	if code, b := h.do("PATCH", "/api/v1/projects/frozen/settings", strings.NewReader(`{"memoryBytes":268435456,"idleTimeout":"2s"}`), "application/json"); code != 200 {
		t.Fatalf("settings: %d %s", code, b)
	}
	d := h.wait(h.upload("frozen", "testdata/app", "").ID)
	if d.Status != "RUNNING" {
		t.Fatalf("deploy: %s %s", d.Status, d.FailureReason)
	}
	greeting := func() string {
		t.Helper()
		code, body, err := h.body(d.ID+".slipway.localhost", "/env?name=GREETING")
		if err != nil || code != 200 {
			t.Fatalf("GET /env: %d %q %v", code, body, err)
		}
		return body
	}
	if g := greeting(); g != "one" {
		t.Fatalf("the app sees GREETING=%q", g)
	}
	first := h.serving(d.ID)
	if m := memoryLimit(t, first.ID); m != 256*mib {
		t.Fatalf("memory limit %d, want 256 MiB", m)
	}

	// Change the variable, the start command (one this image cannot run),
	// the memory limit, and never scale to zero.
	h.call("PUT", vars, api.SetVariableRequest{Value: "two"}, nil)
	h.call("PUT", "/api/v1/projects/frozen/start-command", api.StartCommandRequest{Command: "exit 7"}, nil)
	h.do("PATCH", "/api/v1/projects/frozen/settings", strings.NewReader(`{"memoryBytes":134217728,"idleTimeout":"0"}`), "application/json")
	h.call("GET", "/api/v1/deployments/"+d.ID, nil, &d)
	if !d.SettingsChanged || strings.Join(d.ChangedSettings, ",") != "idleTimeout,memoryBytes,startCommand,variables" {
		t.Errorf("settingsChanged %v %v", d.SettingsChanged, d.ChangedSettings)
	}

	// A restart after a crash runs it as it was created.
	h.body(d.ID+".slipway.localhost", "/crash")
	deadline := time.Now().Add(time.Minute)
	var restarted api.Instance
	for restarted.ID == "" || restarted.ID == first.ID {
		if time.Now().After(deadline) {
			t.Fatalf("not restarted after a crash; runtime log:\n%s", h.runtimeLog(d.ID))
		}
		time.Sleep(100 * time.Millisecond)
		restarted = h.serving(d.ID)
	}
	if g := greeting(); g != "one" {
		t.Errorf("after a restart the app sees GREETING=%q, want \"one\"", g)
	}
	if m := memoryLimit(t, restarted.ID); m != 256*mib {
		t.Errorf("after a restart: memory limit %d, want 256 MiB", m)
	}

	// It still scales to zero after 2 s, and a request wakes it as created.
	deadline = time.Now().Add(time.Minute)
	var asleep api.Instance
	for asleep.Status != "idle" {
		if time.Now().After(deadline) {
			t.Fatalf("never scaled to zero; runtime log:\n%s", h.runtimeLog(d.ID))
		}
		time.Sleep(200 * time.Millisecond)
		h.call("GET", "/api/v1/deployments/"+d.ID, nil, &d)
		// The newest that ran: the sandbox prepared ahead for the next
		// wake is listed first.
		for _, in := range d.Instances {
			if in.Status != "preparing" && in.Status != "prepared" {
				asleep = in
				break
			}
		}
	}
	if g := greeting(); g != "one" {
		t.Errorf("after a wake the app sees GREETING=%q, want \"one\"", g)
	}
	woken := h.serving(d.ID)
	if woken.ID == asleep.ID {
		t.Fatalf("no new instance after the wake")
	}
	if m := memoryLimit(t, woken.ID); m != 256*mib {
		t.Errorf("after a wake: memory limit %d, want 256 MiB", m)
	}

	// A redeploy applies the changes (with the image's own command again).
	h.do("DELETE", "/api/v1/projects/frozen/start-command", nil, "")
	var again api.Deployment
	h.call("POST", "/api/v1/deployments/"+d.ID+"/redeploy", nil, &again)
	again = h.wait(again.ID)
	if again.Status != "RUNNING" || again.SettingsChanged {
		t.Fatalf("redeploy: %s %s, settingsChanged %v", again.Status, again.FailureReason, again.SettingsChanged)
	}
	if _, g, _ := h.body(again.ID+".slipway.localhost", "/env?name=GREETING"); g != "two" {
		t.Errorf("the redeployed app sees GREETING=%q, want \"two\"", g)
	}
	if m := memoryLimit(t, h.serving(again.ID).ID); m != 128*mib {
		t.Errorf("redeployed: memory limit %d, want 128 MiB", m)
	}
}

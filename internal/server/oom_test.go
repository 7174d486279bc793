package server

import (
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
)

// TestOOMKillReported deploys an app with a small memory limit, makes it
// allocate past it, and checks that the kill is reported as one: in the
// deployment's document (lastExit) and in its runtime log.
func TestOOMKillReported(t *testing.T) {
	h := startServer(t)
	h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: "hungry"}, nil)
	if code, b := h.do("PATCH", "/api/v1/projects/hungry/settings", strings.NewReader(`{"memoryBytes":67108864}`), "application/json"); code != 200 {
		t.Fatalf("setting the memory limit: %d %s", code, b)
	}
	d := h.deployApp("hungry")
	if d.LastExit != nil {
		t.Errorf("a fresh deployment has a last exit: %+v", d.LastExit)
	}
	if _, body, err := h.body("hungry.slipway.localhost", "/alloc?mb=256"); err == nil && strings.Contains(body, "allocated") {
		t.Fatalf("the app allocated 256 MiB under a 64 MiB limit")
	}
	deadline := time.Now().Add(time.Minute)
	for {
		h.call("GET", "/api/v1/deployments/"+d.ID, nil, &d)
		if d.LastExit != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lastExit a minute after the kill; runtime log:\n%s", h.runtimeLog(d.ID))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !d.LastExit.OOMKilled || d.LastExit.Code != 137 || d.LastExit.Instance == "" {
		t.Errorf("lastExit = %+v, want an OOM kill with code 137", *d.LastExit)
	}
	if log := h.runtimeLog(d.ID); !strings.Contains(log, "the app exited (out of memory: killed at its memory limit, exit code 137)") {
		t.Errorf("the runtime log does not say the app ran out of memory:\n%s", log)
	}
}

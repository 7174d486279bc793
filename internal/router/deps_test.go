package router_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: package router imports nothing but the standard
// library, so that what needs only routes (the control plane writes a
// Table) pulls in nothing else; certificates and their ACME client live in
// package certs, which imports router, never the other way round.
func TestDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg != "github.com/slipwayhq/slipway/internal/router" {
			t.Errorf("package router depends on %s; it may import only the standard library", pkg)
		}
	}
}

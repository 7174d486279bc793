package netns_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: package netns speaks to the kernel through netlink
// (vishvananda/netlink and /netns) and nftables (google/nftables, over
// mdlayher/netlink), with golang.org/x/sys, x/net and x/sync under them, and
// nothing else: no CLI tools, no other container-networking stacks.
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
		switch {
		case pkg == "github.com/slipwayhq/slipway/internal/netns",
			strings.HasPrefix(pkg, "github.com/google/nftables"),
			strings.HasPrefix(pkg, "github.com/vishvananda/netlink"),
			pkg == "github.com/vishvananda/netns",
			strings.HasPrefix(pkg, "github.com/mdlayher/netlink"),
			pkg == "github.com/mdlayher/socket",
			strings.HasPrefix(pkg, "golang.org/x/net/"),
			strings.HasPrefix(pkg, "golang.org/x/sync/"),
			strings.HasPrefix(pkg, "golang.org/x/sys/"):
		default:
			t.Errorf("package netns depends on %s; it may import only the standard library, netlink and nftables", pkg)
		}
	}
}

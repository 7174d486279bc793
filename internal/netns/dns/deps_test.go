package dns_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: package dns imports the standard library and
// github.com/miekg/dns (with what it needs of golang.org/x/net and
// golang.org/x/sys), nothing else, so that whoever serves the resolver
// pulls in no more than that.
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
		case pkg == "github.com/slipwayhq/slipway/internal/netns/dns",
			pkg == "github.com/miekg/dns",
			strings.HasPrefix(pkg, "golang.org/x/net/"),
			strings.HasPrefix(pkg, "golang.org/x/sys/"):
		default:
			t.Errorf("package dns depends on %s; it may import only the standard library and github.com/miekg/dns", pkg)
		}
	}
}

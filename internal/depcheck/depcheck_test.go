package depcheck

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/slipwayhq/slipway/"

// allowed pins the internal packages each package may import (non-test
// files), relative to the module. A package that is not listed fails the
// test: add it with what it needs, and keep the rules below true.
var allowed = map[string][]string{
	"cmd/slipway":  {"internal/cli"},
	"internal/cli": {"internal/api", "internal/build/plan", "internal/server", "internal/source"},
	"internal/api": {"internal/deploy", "internal/drain", "internal/history", "internal/notify", "internal/project", "internal/secrets", "internal/store"},
	"internal/web": {"internal/api", "internal/deploy", "internal/drain", "internal/history", "internal/notify", "internal/project", "internal/secrets", "internal/store"},
	"internal/server": {"internal/api", "internal/baseimage", "internal/build", "internal/build/buildkit", "internal/deploy", "internal/drain", "internal/notify", "internal/runtime/oci", "internal/source",
		"internal/history", "internal/metrics", "internal/netns", "internal/netns/dns", "internal/project", "internal/registry", "internal/router",
		"internal/router/certs", "internal/runtime", "internal/runtime/kubernetes", "internal/runtime/microvm", "internal/runtime/runc", "internal/secrets", "internal/source/github", "internal/source/gitserver",
		"internal/store", "internal/web"},

	// The lifecycle drives the contracts (build, runtime, the router's
	// table) and reads the project rules' types; never a builder, a
	// driver, certificates or an HTTP layer.
	"internal/deploy": {"internal/build", "internal/build/plan", "internal/project", "internal/router",
		"internal/runtime", "internal/secrets", "internal/source", "internal/store"},
	// The project rules know the store, not the lifecycle (project.Lifecycle
	// is their seam) nor the HTTP layers.
	"internal/project": {"internal/router", "internal/secrets", "internal/store"},
	"internal/store":   {},
	// The metrics history reads its samples through its own Source (the
	// server adapts the metrics to it) and keeps them in the store.
	"internal/history": {"internal/store"},
	"internal/notify":  {"internal/deploy", "internal/project", "internal/secrets", "internal/store"},
	"internal/drain":   {"internal/project", "internal/secrets", "internal/store"},
	"internal/secrets": {},

	"internal/build":             {},
	"internal/build/plan":        {},
	"internal/build/buildkit":    {"internal/build", "internal/topdir"},
	"internal/build/buildtest":   {"internal/build"},
	"internal/build/buildertest": {"internal/build"},
	// Compiled into BuildKit's module by scripts/install-buildkit.sh, not
	// imported by Slipway.
	"internal/buildkitd/nocache":   {},
	"internal/buildkitd/nogitsign": {},

	"internal/runtime":      {},
	"internal/runtime/oci":  {"internal/topdir"},
	"internal/runtime/runc": {"internal/runtime", "internal/runtime/attached", "internal/runtime/linuxns", "internal/runtime/oci", "internal/runtime/pidfd", "internal/topdir"},
	// What the drivers share besides the contract and the image layer:
	// named network namespaces, watching processes through pidfds, and
	// the instances a driver is attached to (built on both).
	"internal/runtime/linuxns":            {},
	"internal/runtime/pidfd":              {},
	"internal/runtime/attached":           {"internal/runtime", "internal/runtime/linuxns", "internal/runtime/pidfd"},
	"internal/runtime/fake":               {"internal/runtime", "internal/runtime/drivertest/testapp"},
	"internal/runtime/drivertest":         {"internal/runtime", "internal/runtime/drivertest/testapp"},
	"internal/runtime/drivertest/testapp": {},

	// The microvm driver, and its guests' init, which runs inside the VM
	// and knows nothing of the host (cmd/slipway-init is its binary).
	"internal/runtime/microvm":       {"internal/runtime", "internal/runtime/attached", "internal/runtime/linuxns", "internal/runtime/microvm/guest", "internal/runtime/oci", "internal/runtime/pidfd"},
	"internal/runtime/microvm/guest": {},
	"cmd/slipway-init":               {"internal/runtime/microvm/guest"},

	// The kubernetes driver (client-go stays inside it), and its test
	// cluster: etcd, an API server and a kubelet, with a pause program of
	// its own for the pods' sandboxes.
	"internal/runtime/kubernetes":             {"internal/runtime"},
	"internal/runtime/kubernetes/ktest":       {"internal/runtime/drivertest"},
	"internal/runtime/kubernetes/ktest/pause": {},

	// Instance networking knows the kernel, not Slipway: the server
	// adapts it to runtime.Network and project.Firewall.
	"internal/netns":     {},
	"internal/netns/dns": {},
	// The stand-in internet, for tests only.
	"internal/netns/nettest": {},

	"internal/router":       {},
	"internal/router/certs": {"internal/router"},

	// Metrics implement the router's and read the runtime's and the
	// builder's contracts; the server feeds them from the lifecycle, so
	// they know neither the store nor the lifecycle.
	"internal/metrics": {"internal/build", "internal/router", "internal/runtime"},

	"internal/registry":                          {},
	"internal/baseimage":                         {},
	"internal/baseimage/cmd/slipway-base-images": {"internal/baseimage"},
	"internal/source":                            {},
	"internal/source/github":                     {"internal/source"},
	"internal/source/gitserver":                  {"internal/source"},
	"internal/topdir":                            {},
	"internal/depcheck":                          {},
}

// thirdParty pins, for the packages whose weight matters to whoever
// imports them, the modules outside the standard library they may depend
// on (transitively), by import path prefix.
var thirdParty = map[string][]string{
	// Whatever needs only routes (the lifecycle writes a Table) pulls in
	// nothing; certificates and ACME live in router/certs.
	"internal/router": {},
	// The kernel through netlink and nftables; no CLI tools, no other
	// container-networking stack.
	"internal/netns": {"github.com/google/nftables", "github.com/vishvananda/netlink", "github.com/vishvananda/netns",
		"github.com/mdlayher/netlink", "github.com/mdlayher/socket", "golang.org/x/net/", "golang.org/x/sync/", "golang.org/x/sys/"},
	// The drivers' shared host parts: the kernel only.
	"internal/runtime/linuxns":  {"golang.org/x/sys/"},
	"internal/runtime/pidfd":    {"golang.org/x/sys/"},
	"internal/runtime/attached": {"golang.org/x/sys/"},
	// The guests' init, in every guest's initramfs: netlink and the kernel.
	"internal/runtime/microvm/guest": {"github.com/vishvananda/netlink", "github.com/vishvananda/netns", "golang.org/x/sys/"},
	// A resolver: miekg/dns and what it needs.
	"internal/netns/dns": {"github.com/miekg/dns", "golang.org/x/net/", "golang.org/x/sys/"},
}

// drivers are the runtime's implementations: each imports the contract
// and the shared layers (image, namespaces, pidfds, attached instances),
// never another driver.
var drivers = []string{"internal/runtime/runc", "internal/runtime/fake", "internal/runtime/microvm", "internal/runtime/kubernetes"}

// kubeClients may depend on k8s.io modules (client-go is heavy): the
// kubernetes driver, its test cluster, and what links the driver in.
var kubeClients = []string{"internal/runtime/kubernetes", "internal/runtime/kubernetes/ktest", "internal/server", "internal/cli", "cmd/slipway"}

// shared are the layers the drivers share: they must not depend on a
// driver either.
var shared = []string{"internal/runtime/oci", "internal/runtime/linuxns", "internal/runtime/pidfd", "internal/runtime/attached"}

// httpLayers may read the store (store.Reader) but not hold its writer.
var httpLayers = []string{"internal/api", "internal/web"}

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
	Standard   bool
}

// list runs go list on the module's packages.
func list(t *testing.T, want int, args ...string) []pkg {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(gobin, append([]string{"list", "-e", "-json=ImportPath,Dir,GoFiles,Imports,Deps,Standard"}, args...)...)
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		p.ImportPath = strings.TrimPrefix(p.ImportPath, module)
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < want {
		t.Fatalf("go list %s found only %d packages, want at least %d", args, len(pkgs), want)
	}
	return pkgs
}

func internalOnly(paths []string) []string {
	var out []string
	for _, p := range paths {
		if rel, ok := strings.CutPrefix(p, module); ok && (strings.HasPrefix(rel, "internal/") || strings.HasPrefix(rel, "cmd/")) {
			out = append(out, rel)
		}
	}
	return out
}

func TestImportsArePinned(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range list(t, 30, "./cmd/...", "./internal/...") {
		seen[p.ImportPath] = true
		allow, ok := allowed[p.ImportPath]
		if !ok {
			t.Errorf("%s is not in depcheck's allowed table: add it with the internal packages it may import", p.ImportPath)
			continue
		}
		for _, imp := range internalOnly(p.Imports) {
			if !slices.Contains(allow, imp) {
				t.Errorf("%s imports %s, which depcheck does not allow", p.ImportPath, imp)
			}
		}
	}
	for name := range allowed {
		if !seen[name] {
			t.Errorf("depcheck allows imports for %s, which no longer exists", name)
		}
	}
}

func TestDriversDontImportDrivers(t *testing.T) {
	for _, p := range list(t, 5, "./internal/runtime/...") {
		if !slices.Contains(drivers, p.ImportPath) && !slices.Contains(shared, p.ImportPath) {
			continue
		}
		for _, dep := range internalOnly(p.Deps) {
			if slices.Contains(drivers, dep) {
				t.Errorf("%s depends on the driver %s: drivers share internal/runtime and its shared layers, never each other", p.ImportPath, dep)
			}
		}
	}
}

// The lifecycle must not pull in ACME (certificates are the router's
// business at the server's edge) nor any HTTP layer.
func TestLifecycleStaysSmall(t *testing.T) {
	for _, p := range list(t, 2, "./internal/deploy", "./internal/project") {
		for _, dep := range p.Deps {
			for _, banned := range []string{"golang.org/x/crypto/acme", module + "internal/router/certs",
				module + "internal/api", module + "internal/web", module + "internal/runtime/runc", module + "internal/build/buildkit"} {
				if dep == banned || strings.HasPrefix(dep, banned+"/") {
					t.Errorf("%s depends on %s", p.ImportPath, dep)
				}
			}
		}
	}
}

// The HTTP layers are given a store.Reader: their non-test code names
// neither the Store type nor store.Open, so every write goes through the
// project rules or the lifecycle.
func TestHTTPLayersOnlyRead(t *testing.T) {
	for _, p := range list(t, 2, "./internal/api", "./internal/web") {
		if !slices.Contains(httpLayers, p.ImportPath) {
			continue
		}
		if len(p.GoFiles) == 0 {
			t.Fatalf("%s has no Go files", p.ImportPath)
		}
		fset := token.NewFileSet()
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "store" && (sel.Sel.Name == "Store" || sel.Sel.Name == "Open") {
					t.Errorf("%s: %s uses store.%s; the HTTP layers get a store.Reader", fset.Position(sel.Pos()), p.ImportPath, sel.Sel.Name)
				}
				return true
			})
		}
	}
}

func TestThirdPartyPinned(t *testing.T) {
	var args []string
	for name := range thirdParty {
		args = append(args, "./"+name)
	}
	pkgs := list(t, len(thirdParty), args...)
	std := map[string]bool{}
	for _, p := range list(t, 100, "std") {
		std[p.ImportPath] = true
	}
	for _, p := range pkgs {
		allow, ok := thirdParty[p.ImportPath]
		if !ok {
			continue
		}
		for _, dep := range p.Deps {
			if std[dep] || strings.HasPrefix(dep, module) {
				continue
			}
			if !slices.ContainsFunc(allow, func(prefix string) bool {
				return dep == strings.TrimSuffix(prefix, "/") || strings.HasPrefix(dep, prefix)
			}) {
				t.Errorf("%s depends on %s, which depcheck does not allow", p.ImportPath, dep)
			}
		}
	}
}

func TestKubernetesStaysInItsDriver(t *testing.T) {
	for _, p := range list(t, 30, "./cmd/...", "./internal/...") {
		if slices.Contains(kubeClients, p.ImportPath) {
			continue
		}
		for _, dep := range p.Deps {
			if strings.HasPrefix(dep, "k8s.io/") {
				t.Errorf("%s depends on %s: only the kubernetes driver (and what links it in) may use client-go", p.ImportPath, dep)
				break
			}
		}
	}
}

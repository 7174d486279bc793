package runc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// runtimeUnderTest is the runtime newDriver gives a driver whose Config
// names none: runc, or GVisor while TestGVisor runs the suite again. The
// tests of this package are not parallel, so a package variable will do.
var runtimeUnderTest = Name

// TestGVisor runs the conformance suite and this package's isolation and
// lifecycle tests again with gVisor's runsc as the runtime: the same
// bundle, network namespace, cgroup and assertions, save where a test
// says gVisor differs. It needs runsc (scripts/install-gvisor.sh); with CI
// set, a missing runsc fails it.
func TestGVisor(t *testing.T) {
	runtimeUnderTest = GVisor
	defer func() { runtimeUnderTest = Name }()
	requireSandbox(t)
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"Conformance", TestConformance},
		{"Isolation", TestIsolation},
		{"Sandbox", TestSandbox},
		{"Seccomp", TestSeccomp},
		{"User", TestUser},
		{"Limits", TestLimits},
		{"OOM", TestOOM},
		{"Whiteouts", TestWhiteouts},
		{"WritableLayerHasAQuota", TestWritableLayerHasAQuota},
		{"NetworkAttachAndScratchEtc", TestNetworkAttachAndScratchEtc},
		{"StartFailureLeavesNothing", TestStartFailureLeavesNothing},
		{"StopEscalatesToKill", TestStopEscalatesToKill},
		{"StopGraceful", TestStopGraceful},
		{"RecoverAfterServerCrash", TestRecoverAfterServerCrash},
		{"StartToFirstResponse", TestStartToFirstResponse},
		{"Snapshot", testSnapshot},
		{"PrecompiledSeccomp", testPrecompiledSeccomp},
	} {
		t.Run(tc.name, tc.test)
	}
}

// testPrecompiledSeccomp (run by TestGVisor) checks that the installed
// runsc has its Sentry's and gofer's seccomp programs precompiled for the
// flags this driver passes (scripts/install-gvisor.sh builds it so):
// without them every sandbox start, cold or restored, builds both
// filters, a few hundred milliseconds of CPU. Both processes log which
// way they went when runsc's debug log is on.
func testPrecompiledSeccomp(t *testing.T) {
	runsc, err := exec.LookPath("runsc")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logs := filepath.Join(dir, "log") + "/"
	args := append(append([]string{"--root", filepath.Join(dir, "root")}, gvisorArgs...),
		"--debug", "--debug-log="+logs, "do", "true")
	if out, err := exec.Command(runsc, args...).CombinedOutput(); err != nil {
		t.Fatalf("runsc do true: %v\n%s", err, out)
	}
	for _, process := range []string{"boot", "gofer"} {
		files, _ := filepath.Glob(filepath.Join(logs, "*."+process+".txt"))
		if len(files) != 1 {
			t.Fatalf("want one %s log in %s, found %v", process, logs, files)
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("Loaded precompiled seccomp instructions")) {
			line := "(no seccomp line)"
			if i := bytes.Index(b, []byte("No precompiled program found")); i >= 0 {
				line = string(b[i:min(len(b), i+300)])
			}
			t.Errorf("runsc's %s built its seccomp filter at start instead of loading a precompiled one (reinstall runsc with scripts/install-gvisor.sh): %s", process, line)
		}
	}
}

package runc

import "testing"

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
	} {
		t.Run(tc.name, tc.test)
	}
}

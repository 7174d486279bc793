package microvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
)

// requireVM skips the test when it cannot run VMs here (not root, no
// QEMU, no cloud kernel), unless CI is set: there a missing piece is a
// failure.
func requireVM(t *testing.T) {
	t.Helper()
	var missing string
	if os.Geteuid() != 0 {
		missing = "root"
	} else if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing = "qemu-system-x86_64 in PATH (scripts/install-microvm.sh)"
	} else if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		missing = "mkfs.ext4 in PATH"
	} else if _, _, err := findKernel(kernelDirs); err != nil {
		missing = "a Debian cloud kernel (scripts/install-microvm.sh)"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("this test needs %s (CI is set, so it may not skip)", missing)
	}
	t.Skipf("this test needs %s", missing)
}

// testRootPrefix starts the roots of test drivers: each run's root holds
// its process id, so that a later run stops the VMs of a run that was
// killed before its cleanup (see sweepStale).
const testRootPrefix = "slipway-microvm-test-"

// fixture holds what every test shares: the guest init, the test app and
// a registry on loopback with the app image in it, and the run's root.
var fixture struct {
	once sync.Once
	dir  string
	init string
	ref  string
	err  error
}

func TestMain(m *testing.M) {
	// A guest boots in about 2 s under TCG on an idle machine and in 10 to
	// 20 s on one as loaded as CI's (the package runs beside others): the
	// suites' 20 s would fail a slow start, not a broken one.
	drivertest.Timeout = time.Minute
	sweepStale()
	code := m.Run()
	if fixture.dir != "" {
		sweepRoot(fixture.dir)
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

// sweepStale stops the VMs that killed test runs left and removes their
// roots.
func sweepStale() {
	roots, _ := filepath.Glob(filepath.Join(os.TempDir(), testRootPrefix+"*"))
	for _, root := range roots {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(root), testRootPrefix))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			continue // still running
		}
		sweepRoot(root)
		os.RemoveAll(root)
	}
}

// sweepRoot stops every instance under each driver root in dir.
func sweepRoot(dir string) {
	roots, _ := filepath.Glob(filepath.Join(dir, "*", "instances"))
	for _, inst := range roots {
		d := &Driver{cfg: Config{Root: filepath.Dir(inst), NetnsDir: "/run/netns", StopGrace: time.Second}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		d.Sweep(ctx, func(string) bool { return false })
		cancel()
	}
}

type onceTB struct {
	testing.TB
	dir string
}

func (o onceTB) TempDir() string {
	d, err := os.MkdirTemp(o.dir, "")
	if err != nil {
		o.Fatal(err)
	}
	return d
}
func (o onceTB) Cleanup(func()) {}

// setup returns the shared fixture, building it on first use.
func setup(t *testing.T) (initPath, ref string) {
	t.Helper()
	requireVM(t)
	fixture.once.Do(func() {
		fixture.dir = filepath.Join(os.TempDir(), testRootPrefix+strconv.Itoa(os.Getpid()))
		if fixture.err = os.MkdirAll(fixture.dir, 0o700); fixture.err != nil {
			return
		}
		tb := onceTB{TB: t, dir: fixture.dir}
		fixture.init = filepath.Join(fixture.dir, "slipway-init")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", fixture.init,
			"github.com/slipwayhq/slipway/cmd/slipway-init")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			fixture.err = fmt.Errorf("building slipway-init: %v\n%s", err, b)
			return
		}
		bin := drivertest.BuildApp(tb)
		host := drivertest.Registry(tb)
		img := drivertest.Image(t, drivertest.AppConfig(), drivertest.Layer(t, drivertest.AppFiles(t, bin)...))
		fixture.ref = drivertest.Push(t, host, "testapp", img)
	})
	if fixture.err != nil {
		t.Fatal(fixture.err)
	}
	if fixture.ref == "" {
		t.Fatal("building the fixture failed in an earlier test")
	}
	return fixture.init, fixture.ref
}

// newRoot returns a new driver root inside the run's directory.
func newRoot(t *testing.T) string {
	t.Helper()
	root, err := os.MkdirTemp(fixture.dir, "root-")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// newDriver returns a driver on cfg.Root; at the end of the test it stops
// whatever instance is left there.
func newDriver(t *testing.T, cfg Config) *Driver {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := d.Sweep(ctx, func(string) bool { return false }); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		d.Close()
	})
	return d
}

func TestConformance(t *testing.T) {
	initPath, ref := setup(t)
	cfg := Config{Root: newRoot(t), Init: initPath, StopGrace: 2 * time.Second}
	drivertest.Run(t, drivertest.Harness{
		New:   func(t *testing.T) runtime.Driver { return newDriver(t, cfg) },
		Image: ref,
		CheckFreed: func(t *testing.T, h *runtime.Handle) {
			checkFreed(t, cfg.Root, h.ID)
		},
	})
}

// TestIsolation runs the drivers' isolation suite (drivertest.RunIsolation)
// on microVMs. The guest's processes are not limited in number: they run
// on the guest's own kernel in the guest's own memory, which its memory
// limit bounds (README, "microvm").
func TestIsolation(t *testing.T) {
	initPath, ref := setup(t)
	cfg := Config{Root: newRoot(t), Init: initPath, StopGrace: 2 * time.Second}
	drivertest.RunIsolation(t, drivertest.Harness{
		New:            func(t *testing.T) runtime.Driver { return newDriver(t, cfg) },
		Image:          ref,
		PidsNotLimited: true,
	})
}

// checkFreed checks that nothing of instance id is left: its directory,
// its network namespace, its QEMU.
func checkFreed(t *testing.T, root, id string) {
	t.Helper()
	for _, p := range []string{filepath.Join(root, "instances", id), filepath.Join("/run/netns", "slipway-"+id)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left after Stop (%v)", p, err)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), filepath.Join(root, "instances", id)+"/") {
			t.Errorf("a QEMU of %s is left after Stop: %s", id, p)
		}
	}
}

// TestStartToFirstResponse logs how long a start takes to the first 200
// (a measurement, not an assertion: the machine is shared). With
// SLIPWAY_MICROVM_DEBUG set, the guest's init logs its boot steps into the
// stderr file, which the test prints.
func TestStartToFirstResponse(t *testing.T) {
	initPath, ref := setup(t)
	d := newDriver(t, Config{Root: newRoot(t), Init: initPath, StopGrace: time.Second})
	logs := t.TempDir()
	for i := range 3 {
		spec := runtime.Spec{ID: drivertest.NewID(t), Image: ref,
			StdoutPath: filepath.Join(logs, fmt.Sprint(i, ".out")), StderrPath: filepath.Join(logs, fmt.Sprint(i, ".err"))}
		ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
		t0 := time.Now()
		h, err := d.Start(ctx, spec)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		started := time.Since(t0)
		var st state
		json.Unmarshal(h.State, &st)
		drivertest.WaitHTTP(t, d, h, 3000)
		first := time.Since(t0)
		t0 = time.Now()
		if err := d.Stop(context.Background(), h); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(spec.StderrPath)
		t.Logf("start %d (%s; unpack and disk first: %v): Start returned after %v, first 200 after %v, Stop took %v\n%s",
			i, st.Accel, i == 0, started.Round(time.Millisecond), first.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), b)
	}
}

// TestKVMProbeIsBounded plays a host where a KVM guest hangs (nested KVM
// here): the probe gives up, kills QEMU and reports it, so the driver
// falls back to TCG instead of hanging its first start.
func TestKVMProbeIsBounded(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	qemu := filepath.Join(dir, "qemu")
	if err := os.WriteFile(qemu, []byte("#!/bin/sh\necho $$ >"+pidFile+"\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "instances"), 0o700); err != nil {
		t.Fatal(err)
	}
	d := &Driver{cfg: Config{Root: dir, Kernel: "/nonexistent"}, qemu: qemu}
	err := d.probeKVM(context.Background(), &baseInitrd{})
	if err == nil || !strings.Contains(err.Error(), "did not boot") {
		t.Fatalf("probe of a hanging guest = %v, want a timeout", err)
	}
	b, _ := os.ReadFile(pidFile)
	if pid := strings.TrimSpace(string(b)); pid == "" {
		t.Fatal("the fake QEMU never ran")
	} else if st, err := os.ReadFile("/proc/" + pid + "/stat"); err == nil && !strings.Contains(string(st), ") Z") {
		t.Errorf("the hanging QEMU (pid %s) still runs after the probe", pid)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "instances")); len(left) > 0 {
		t.Errorf("the probe left %s", left[0].Name())
	}
}

// TestBootTimeout plays a guest that never starts its app in time (one
// boot stalled past a minute under a loaded CI machine): Start gives up
// after Config.BootTimeout, says how far the guest got, and leaves no VM,
// directory or namespace behind.
func TestBootTimeout(t *testing.T) {
	initPath, ref := setup(t)
	// No guest boots to its app in 50 ms, under TCG or KVM.
	d := newDriver(t, Config{Root: newRoot(t), Init: initPath, StopGrace: time.Second, BootTimeout: 50 * time.Millisecond})
	logs := t.TempDir()
	spec := runtime.Spec{ID: drivertest.NewID(t), Image: ref,
		StdoutPath: filepath.Join(logs, "out"), StderrPath: filepath.Join(logs, "err")}
	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
	defer cancel()
	h, err := d.Start(ctx, spec)
	if err == nil {
		d.Stop(context.Background(), h)
		t.Fatal("Start returned a running instance within a 50 ms boot timeout")
	}
	if !strings.Contains(err.Error(), "did not start the app within 50ms") || !strings.Contains(err.Error(), "boot steps the guest reported") {
		t.Errorf("Start = %v, want the boot timeout and the guest's steps", err)
	}
	checkFreed(t, d.cfg.Root, spec.ID)
}

func TestLastLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 2000 { // more than the 4 KiB read
		fmt.Fprintf(&b, "line %d\n\n", i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := lastLines(path, 3), "line 1997 | line 1998 | line 1999"; got != want {
		t.Errorf("lastLines = %q, want %q", got, want)
	}
	if got := lastLines(filepath.Join(t.TempDir(), "missing"), 3); got != "" {
		t.Errorf("lastLines of a missing file = %q, want none", got)
	}
}

// TestKernelStallBootsAgain plays a guest whose kernel stalls before its
// init runs (no guest reaches its first step in 1 ms): Start boots it
// again, once, says so in the instance's log, and the second boot serves.
func TestKernelStallBootsAgain(t *testing.T) {
	initPath, ref := setup(t)
	defer func(old time.Duration) { kernelStall = old }(kernelStall)
	kernelStall = time.Millisecond
	d := newDriver(t, Config{Root: newRoot(t), Init: initPath, StopGrace: time.Second})
	logs := t.TempDir()
	spec := runtime.Spec{ID: drivertest.NewID(t), Image: ref,
		StdoutPath: filepath.Join(logs, "out"), StderrPath: filepath.Join(logs, "err")}
	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
	defer cancel()
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	drivertest.WaitHTTP(t, d, h, 3000)
	b, _ := os.ReadFile(spec.StderrPath)
	if n := strings.Count(string(b), "booting the VM again"); n != 1 {
		t.Errorf("the instance's log says %d times that the VM was booted again, want once:\n%s", n, b)
	}
	if err := d.Stop(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	checkFreed(t, d.cfg.Root, spec.ID)
}

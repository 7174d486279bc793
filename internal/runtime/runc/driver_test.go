package runc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/netns/nettest"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
	"github.com/slipwayhq/slipway/internal/runtime/oci"
)

// requireSandbox skips the test when it cannot run containers here (not
// root, or no runc), unless CI is set: there a missing piece is a failure.
func requireSandbox(t *testing.T) {
	t.Helper()
	var missing string
	bin := "runc"
	if runtimeUnderTest == GVisor {
		bin = "runsc"
	}
	if os.Geteuid() != 0 {
		missing = "root"
	} else if _, err := exec.LookPath(bin); err != nil {
		missing = bin + " in PATH"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("this test needs %s (CI is set, so it may not skip)", missing)
	}
	t.Skipf("this test needs %s", missing)
}

// fixture holds what every test shares: the test app binary and a
// registry on loopback with the app image in it.
var fixture struct {
	once sync.Once
	dir  string
	bin  string
	host string
	ref  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.dir != "" {
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

// onceTB lets the shared fixture be built with the helpers of drivertest
// from whichever test asks first, and outlive it.
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
func (o onceTB) Cleanup(func()) {} // the registry lives for the whole run

// app returns the shared fixture, building it on first use.
func app(t testing.TB) (host, ref string) {
	t.Helper()
	fixture.once.Do(func() {
		fixture.dir, fixture.err = os.MkdirTemp("", "slipway-runc-test-")
		if fixture.err != nil {
			return
		}
		tb := onceTB{TB: t, dir: fixture.dir}
		fixture.bin = drivertest.BuildApp(tb)
		fixture.host = drivertest.Registry(tb)
		img := drivertest.Image(t, drivertest.AppConfig(), drivertest.Layer(t, drivertest.AppFiles(t, fixture.bin)...))
		fixture.ref = drivertest.Push(t, fixture.host, "testapp", img)
	})
	if fixture.err != nil {
		t.Fatal(fixture.err)
	}
	if fixture.ref == "" {
		t.Fatal("building the test app fixture failed in an earlier test")
	}
	return fixture.host, fixture.ref
}

// pushImage pushes an image of the test app with extra layers and config
// changes to the shared registry.
func pushImage(t *testing.T, repo string, cfg func(*v1.Config), extra ...v1.Layer) string {
	t.Helper()
	host, _ := app(t)
	c := drivertest.AppConfig()
	if cfg != nil {
		cfg(&c)
	}
	layers := append([]v1.Layer{drivertest.Layer(t, drivertest.AppFiles(t, fixture.bin)...)}, extra...)
	return drivertest.Push(t, host, repo, drivertest.Image(t, c, layers...))
}

// newDriver returns a driver on root (a new temp dir if empty). At the end
// of the test it stops whatever instance is left under root.
func newDriver(t *testing.T, cfg Config) *Driver {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	if cfg.Runtime == "" {
		cfg.Runtime = runtimeUnderTest
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir(d.cfg.RunDir)
		for _, e := range entries {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := d.Stop(ctx, &runtime.Handle{ID: e.Name()}); err != nil {
				t.Errorf("cleanup: stopping %s: %v", e.Name(), err)
			}
			cancel()
		}
		d.Close()
	})
	return d
}

// imageDir is the directory d unpacks the image with digest into,
// Root/images/sha256-<hex>, with a suffix naming the ID map when the
// instances run in a user namespace (the layout of oci.Cache).
func imageDir(d *Driver, digest string) string {
	dir := filepath.Join(d.cfg.Root, "images", strings.Replace(digest, ":", "-", 1))
	if ids, ok := d.UserNS(); ok {
		dir += fmt.Sprintf("-u%d-g%d-n%d", ids.HostUID, ids.HostGID, ids.Size)
	}
	return dir
}

// kernelAtLeast reports whether the running kernel is major.minor or newer.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var maj, min int
	fmt.Sscanf(rel, "%d.%d", &maj, &min)
	return maj > major || maj == major && min >= minor
}

func TestConformance(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	cfg := Config{Root: t.TempDir()}
	drivertest.Run(t, drivertest.Harness{
		New:   func(t *testing.T) runtime.Driver { return newDriver(t, cfg) },
		Image: ref,
		// Without PIDFD_INFO_EXIT (Linux 6.15) the exit code of a process
		// reaped at once by its parent is lost.
		ExitCodeMayBeUnknown: !kernelAtLeast(6, 15),
		CheckFreed: func(t *testing.T, h *runtime.Handle) {
			checkFreed(t, cfg.Root, h.ID)
		},
	})
}

// TestIsolation runs the drivers' isolation suite (drivertest.RunIsolation)
// on runc, with the instance network that deployments get.
func TestIsolation(t *testing.T) {
	requireSandbox(t)
	nettest.Require(t)
	_, ref := app(t)
	rn := openNetwork(t, "swiso", nettest.Suffix(t), "10.123.15.0/28")
	cfg := Config{Root: t.TempDir(), Network: rn}
	drivertest.RunIsolation(t, drivertest.Harness{
		New:   func(t *testing.T) runtime.Driver { return newDriver(t, cfg) },
		Image: ref,
	})
}

// checkFreed checks that nothing of instance id is left: bundle, runc
// state (runsc's is in files named after the id), overlay mount, network
// namespace, cgroups.
func checkFreed(t *testing.T, root, id string) {
	t.Helper()
	bundle := filepath.Join(DefaultRunDir(root), id)
	state, _ := filepath.Glob(filepath.Join(root, "runc", id+"*"))
	for _, p := range append([]string{
		bundle,
		filepath.Join(root, "instances", id),
		filepath.Join(root, "runc", id),
		filepath.Join("/run/netns", "slipway-"+id),
	}, state...) {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left after Stop (%v)", p, err)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), bundle+"/") || strings.Contains(string(mounts), bundle+" ") || strings.Contains(string(mounts), "/slipway-"+id+" ") {
		t.Errorf("a mount of instance %s is left after Stop", id)
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/slipway/" + id)
	if len(cgroups) > 0 {
		t.Errorf("cgroups left after Stop: %v", cgroups)
	}
}

// startApp starts an instance of ref and waits until it answers.
func startApp(t *testing.T, d *Driver, spec runtime.Spec) *runtime.Handle {
	t.Helper()
	if spec.ID == "" {
		spec.ID = drivertest.NewID(t)
	}
	if spec.StdoutPath == "" {
		dir := t.TempDir()
		spec.StdoutPath, spec.StderrPath = filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")
	}
	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
	defer cancel()
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { d.Stop(context.Background(), h) })
	drivertest.WaitHTTP(t, d, h, 3000)
	return h
}

func get(t *testing.T, d *Driver, h *runtime.Handle, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
	defer cancel()
	code, body, err := drivertest.Get(ctx, d, h, 3000, path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return code, body
}

func TestWhiteouts(t *testing.T) {
	requireSandbox(t)
	ref := pushImage(t, "whiteouts", nil,
		drivertest.Layer(t,
			drivertest.File{Name: "data", Dir: true},
			drivertest.File{Name: "data/removed.txt", Body: []byte("gone")},
			drivertest.File{Name: "data/kept.txt", Body: []byte("kept")},
			drivertest.File{Name: "data/dir", Dir: true},
			drivertest.File{Name: "data/dir/lower.txt", Body: []byte("hidden by an opaque dir")},
			drivertest.File{Name: "data/link", Symlink: "kept.txt"},
			drivertest.File{Name: "data/hard", Hardlink: "data/kept.txt"},
		),
		drivertest.Layer(t,
			drivertest.File{Name: "data", Dir: true},
			drivertest.File{Name: "data/.wh.removed.txt"},
			drivertest.File{Name: "data/dir", Dir: true},
			drivertest.File{Name: "data/dir/.wh..wh..opq"},
			drivertest.File{Name: "data/dir/upper.txt", Body: []byte("upper")},
		),
	)
	d := newDriver(t, Config{})
	h := startApp(t, d, runtime.Spec{Image: ref})
	for path, want := range map[string]int{
		"/data/removed.txt":     http.StatusNotFound,
		"/data/kept.txt":        http.StatusOK,
		"/data/dir/lower.txt":   http.StatusNotFound,
		"/data/dir/upper.txt":   http.StatusOK,
		"/data/.wh.removed.txt": http.StatusNotFound,
	} {
		if code, _ := get(t, d, h, "/stat?path="+path); code != want {
			t.Errorf("stat %s in the instance: %d, want %d", path, code, want)
		}
	}
	for path, want := range map[string]string{"/data/link": "kept", "/data/hard": "kept"} {
		if code, body := get(t, d, h, "/read?path="+path); code != http.StatusOK || body != want {
			t.Errorf("read %s: %d %q, want %q", path, code, body, want)
		}
	}
	// Writes land in the instance's layer, never in the shared image.
	if code, _ := get(t, d, h, "/write?path=/data/kept.txt&data=changed"); code != http.StatusOK {
		t.Fatalf("writing /data/kept.txt: %d", code)
	}
	if _, body := get(t, d, h, "/read?path=/data/kept.txt"); body != "changed" {
		t.Errorf("read back %q, want %q", body, "changed")
	}
	b, err := os.ReadFile(filepath.Join(imageDir(d, ref[strings.Index(ref, "@")+1:]), "rootfs", "data", "kept.txt"))
	if err != nil || string(b) != "kept" {
		t.Errorf("the unpacked image changed: %q, %v", b, err)
	}
}

func TestSandbox(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	d := newDriver(t, Config{})
	id := drivertest.NewID(t)
	h := startApp(t, d, runtime.Spec{ID: id, Image: ref})

	if code, body := get(t, d, h, "/env?name=IMAGE_ENV"); code != http.StatusOK || body != "from-image" {
		t.Errorf("image env: %d %q", code, body)
	}
	if _, body := get(t, d, h, "/env?name=HOSTNAME"); body != id {
		t.Errorf("HOSTNAME = %q, want %q", body, id)
	}
	if _, body := get(t, d, h, "/read?path=/etc/hosts"); !strings.Contains(body, id) {
		t.Errorf("/etc/hosts does not name the instance:\n%s", body)
	}
	if _, body := get(t, d, h, "/read?path=/proc/net/dev"); strings.Count(body, ":") != 1 || !strings.Contains(body, "lo:") {
		t.Errorf("the instance sees network interfaces other than lo:\n%s", body)
	}
	_, status := get(t, d, h, "/read?path=/proc/self/status")
	for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want) {
			t.Errorf("/proc/self/status lacks %q", want)
		}
	}
	// The root filesystem grants nothing through setuid files or device
	// nodes, whatever the app writes over its image.
	_, mountinfo := get(t, d, h, "/read?path=/proc/self/mountinfo")
	rootOpts := ""
	for line := range strings.Lines(mountinfo) {
		if f := strings.Fields(line); len(f) > 5 && f[4] == "/" {
			rootOpts = f[5]
		}
	}
	// gVisor's root is its gofer's and shows "rw" only: runsc ignores
	// setuid bits and opens no host device through a node instead (see
	// gvisorArgs).
	if o := strings.Split(rootOpts, ","); runtimeUnderTest != GVisor && (!slices.Contains(o, "nosuid") || !slices.Contains(o, "nodev")) {
		t.Errorf("root mounted %q, want nosuid and nodev", rootOpts)
	}
	// A masked file reads as empty (or not at all).
	if code, body := get(t, d, h, "/read?path=/proc/kcore"); code == http.StatusOK && body != "" {
		t.Errorf("/proc/kcore is readable")
	}
	if code, _ := get(t, d, h, "/write?path=/proc/sys/kernel/hostname&data=x"); code == http.StatusOK {
		t.Errorf("/proc/sys is writable")
	}
	if code, _ := get(t, d, h, "/write?path=/sys/kernel/x&data=x"); code == http.StatusOK {
		t.Errorf("/sys is writable")
	}
}

// TestSeccomp checks that the instance's filter is an allowlist: the
// system calls outside it fail with EPERM, and one through the x32 ABI is
// refused, while the app itself (a Go server, which forks a child for each probe)
// runs.
func TestSeccomp(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	d := newDriver(t, Config{})
	h := startApp(t, d, runtime.Spec{Image: ref})
	x32 := "thread killed"
	if runtimeUnderTest == GVisor {
		x32 = "EPERM" // gVisor has no x32 ABI: refused, the thread lives
	}
	for _, tc := range []struct{ probe, want string }{
		{"getpid", "ok"},
		{"getrandom", "ok"},
		{"io_uring_setup", "EPERM"},
		{"ptrace", "EPERM"},
		// runc's filter kills the thread of a call through a foreign
		// ABI; a kernel without x32 would say ENOSYS.
		{"getpid-x32", x32},
	} {
		if code, body := get(t, d, h, "/syscall?name="+tc.probe); code != http.StatusOK || body != tc.want {
			t.Errorf("%s in the instance: %d %q, want %q", tc.probe, code, body, tc.want)
		}
	}
}

func TestUser(t *testing.T) {
	requireSandbox(t)
	d := newDriver(t, Config{})
	for _, tc := range []struct{ user, id, home string }{
		{"", "uid=0 gid=0 groups=", "/root"},
		{"app", "uid=1000 gid=1000 groups=2000", "/home/app"},
		{"1234:5678", "uid=1234 gid=5678 groups=", "/"},
		{"app:extra", "uid=1000 gid=2000 groups=", "/home/app"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			ref := pushImage(t, "user", func(c *v1.Config) { c.User = tc.user })
			h := startApp(t, d, runtime.Spec{Image: ref})
			if _, body := get(t, d, h, "/id"); strings.TrimSpace(body) != tc.id {
				t.Errorf("GET /id = %q, want %q", body, tc.id)
			}
			if _, body := get(t, d, h, "/env?name=HOME"); body != tc.home {
				t.Errorf("HOME = %q, want %q", body, tc.home)
			}
			_, status := get(t, d, h, "/read?path=/proc/self/status")
			capEff := "CapEff:\t0000000000000000"
			if tc.user == "" && strings.Contains(status, capEff) {
				t.Errorf("root in the instance has no capabilities")
			}
			if tc.user != "" && !strings.Contains(status, capEff) {
				t.Errorf("a non-root user has effective capabilities")
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		ref := pushImage(t, "user", func(c *v1.Config) { c.User = "nobody" })
		id := drivertest.NewID(t)
		_, err := d.Start(context.Background(), runtime.Spec{ID: id, Image: ref})
		if err == nil || !strings.Contains(err.Error(), "nobody") {
			t.Errorf("Start with an unknown user = %v, want an error naming it", err)
		}
		checkFreed(t, d.cfg.Root, id)
	})
}

// cgroupFile returns the content of a file of the instance's cgroup for a
// v1 controller (or the v2 unified hierarchy if there is no v1 one).
func cgroupFile(t *testing.T, pid int, controller, v1file, v2file string) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var unified string
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			unified = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", parts[1], parts[2], v1file))
				if err != nil {
					t.Fatal(err)
				}
				return strings.TrimSpace(string(b))
			}
		}
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", unified, v2file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestLimits(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	d := newDriver(t, Config{})
	for _, tc := range []struct {
		name                string
		limits              runtime.Limits
		memory, quota, pids int64
	}{
		{"defaults", runtime.Limits{}, DefaultMemoryBytes, DefaultCPUMillis * 100, DefaultPids},
		{"set", runtime.Limits{MemoryBytes: 64 << 20, CPUMillis: 250, Pids: 64}, 64 << 20, 25000, 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := drivertest.NewID(t)
			h := startApp(t, d, runtime.Spec{ID: id, Image: ref, Limits: tc.limits})
			pid := inspectPID(t, d, h)
			cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			if !strings.Contains(string(cg), "/slipway/"+id) {
				t.Errorf("process not in cgroup /slipway/%s:\n%s", id, cg)
			}
			mem := cgroupFile(t, pid, "memory", "memory.limit_in_bytes", "memory.max")
			if mem != strconv.FormatInt(tc.memory, 10) {
				t.Errorf("memory limit = %s, want %d", mem, tc.memory)
			}
			quota := cgroupFile(t, pid, "cpu", "cpu.cfs_quota_us", "cpu.max")
			if strings.Fields(quota)[0] != strconv.FormatInt(tc.quota, 10) {
				t.Errorf("cpu quota = %s, want %d", quota, tc.quota)
			}
			// Under gVisor the cgroup holds the Sentry, with room above
			// the app's limit (RLIMIT_NPROC inside, see hostPids).
			pids := cgroupFile(t, pid, "pids", "pids.max", "pids.max")
			if want := hostPids(tc.pids, d.gvisor()); pids != strconv.FormatInt(want, 10) {
				t.Errorf("pids limit = %s, want %d", pids, want)
			}
		})
	}
}

// TestOOM checks that an instance killed for reaching its memory limit is
// reported as such, and that an instance that ends otherwise is not.
func TestOOM(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	d := newDriver(t, Config{})
	wait := func(h *runtime.Handle) runtime.Status {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
		defer cancel()
		st, err := d.Wait(ctx, h)
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
		return st
	}

	h := startApp(t, d, runtime.Spec{Image: ref, Limits: runtime.Limits{MemoryBytes: 48 << 20}})
	// No swap to spill into: the limit holds memory and swap together.
	pid := inspectPID(t, d, h)
	if swap := cgroupFile(t, pid, "memory", "memory.memsw.limit_in_bytes", "memory.swap.max"); swap != strconv.Itoa(48<<20) && swap != "0" {
		t.Errorf("swap limit = %s, want none beyond the memory limit", swap)
	}
	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
	defer cancel()
	if code, _, err := drivertest.Get(ctx, d, h, 3000, "/alloc?mb=96"); err == nil {
		t.Fatalf("GET /alloc?mb=96 with a 48 MiB limit answered %d", code)
	}
	if st := wait(h); !st.OOMKilled || st.ExitCode != 137 {
		t.Errorf("after allocating past its limit: OOMKilled %v, exit code %d; want true, 137", st.OOMKilled, st.ExitCode)
	}

	h = startApp(t, d, runtime.Spec{Image: ref, Limits: runtime.Limits{MemoryBytes: 48 << 20}})
	get(t, d, h, "/alloc?mb=8")
	get(t, d, h, "/exit?code=3")
	if st := wait(h); st.OOMKilled || st.ExitCode != 3 {
		t.Errorf("after exiting: OOMKilled %v, exit code %d; want false, 3", st.OOMKilled, st.ExitCode)
	}
}

func inspectPID(t *testing.T, d *Driver, h *runtime.Handle) int {
	t.Helper()
	st, err := d.Inspect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	return st.PID
}

func TestConcurrentStartsUnpackOnce(t *testing.T) {
	requireSandbox(t)
	// A layer of its own gives the image a digest no other test unpacked.
	ref := pushImage(t, "concurrent", nil, drivertest.Layer(t, drivertest.File{Name: "marker", Body: []byte(drivertest.NewID(t))}))
	d := newDriver(t, Config{})
	var wg sync.WaitGroup
	handles := make([]*runtime.Handle, 4)
	for i := range handles {
		wg.Go(func() {
			h, err := d.Start(context.Background(), runtime.Spec{ID: drivertest.NewID(t), Image: ref})
			if err != nil {
				t.Errorf("Start #%d: %v", i, err)
				return
			}
			handles[i] = h
		})
	}
	wg.Wait()
	for _, h := range handles {
		if h != nil {
			drivertest.WaitHTTP(t, d, h, 3000)
		}
	}
	if n := d.images.Unpacks(); n != 1 {
		t.Errorf("image unpacked %d times, want once", n)
	}
}

func TestRemoveImage(t *testing.T) {
	requireSandbox(t)
	ref := pushImage(t, "remove", nil, drivertest.Layer(t, drivertest.File{Name: "marker", Body: []byte(drivertest.NewID(t))}))
	digest := ref[strings.Index(ref, "@")+1:]
	d := newDriver(t, Config{})
	h := startApp(t, d, runtime.Spec{Image: ref})
	if err := d.RemoveImage(digest); !errors.Is(err, oci.ErrInUse) {
		t.Errorf("RemoveImage of an image in use = %v, want oci.ErrInUse", err)
	}
	if err := d.Stop(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveImage(digest); err != nil {
		t.Fatalf("RemoveImage: %v", err)
	}
	if _, err := os.Stat(imageDir(d, digest)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("image directory left: %v", err)
	}
	if err := d.RemoveImage(digest); err != nil {
		t.Errorf("RemoveImage of a removed image: %v", err)
	}
	startApp(t, d, runtime.Spec{Image: ref}) // unpacked again
	if n := d.images.Unpacks(); n != 2 {
		t.Errorf("unpacks = %d, want 2", n)
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	requireSandbox(t)
	ref := pushImage(t, "broken", func(c *v1.Config) { c.Entrypoint = []string{"/no/such/binary"} })
	d := newDriver(t, Config{})
	id := drivertest.NewID(t)
	stderr := filepath.Join(t.TempDir(), "stderr")
	_, err := d.Start(context.Background(), runtime.Spec{ID: id, Image: ref, StderrPath: stderr})
	if err == nil {
		t.Fatal("Start of a missing entrypoint succeeded")
	}
	if !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Start error does not say why: %v", err)
	}
	checkFreed(t, d.cfg.Root, id)
	// A unique id: "slipway-x" would match the netns mount of any other
	// instance whose id starts with x.
	id = drivertest.NewID(t)
	if _, err := d.Start(context.Background(), runtime.Spec{ID: id, Image: "127.0.0.1:1/none@sha256:" + strings.Repeat("0", 64)}); err == nil {
		t.Errorf("Start of an image that cannot be pulled succeeded")
	}
	checkFreed(t, d.cfg.Root, id)
}

func TestStopEscalatesToKill(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	d := newDriver(t, Config{StopGrace: 200 * time.Millisecond})
	h := startApp(t, d, runtime.Spec{Image: ref, Env: []string{"TESTAPP_IGNORE_TERM=1"}})
	if err := d.Stop(context.Background(), h); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	checkFreed(t, d.cfg.Root, h.ID)

	// A context that ends before the grace period cuts it short, and the
	// instance is still removed completely.
	d = newDriver(t, Config{StopGrace: time.Hour})
	h = startApp(t, d, runtime.Spec{Image: ref, Env: []string{"TESTAPP_IGNORE_TERM=1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := d.Stop(ctx, h); err != nil {
		t.Fatalf("Stop with a short context: %v", err)
	}
	checkFreed(t, d.cfg.Root, h.ID)
}

func TestStopGraceful(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	d := newDriver(t, Config{})
	h := startApp(t, d, runtime.Spec{Image: ref})
	in := d.instances.Get(h.ID)
	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
	defer cancel()
	if err := d.Stop(ctx, h); err != nil {
		t.Fatal(err)
	}
	// The app exits 0 on SIGTERM.
	if s := in.Status(); s.Running || s.ExitCode != 0 {
		t.Errorf("status after a graceful stop = %+v, want exit code 0", s)
	}
}

// TestStartToFirstResponse measures (and logs; it asserts nothing about
// time) how long an instance takes from Start to its first HTTP 200, with
// the image already unpacked, and what a Dial costs.
func TestStartToFirstResponse(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	d := newDriver(t, Config{})
	startApp(t, d, runtime.Spec{Image: ref}) // unpacks the image
	var runs []time.Duration
	for range 5 {
		t0 := time.Now()
		h, err := d.Start(context.Background(), runtime.Spec{ID: drivertest.NewID(t), Image: ref})
		if err != nil {
			t.Fatal(err)
		}
		started := time.Since(t0)
		for {
			code, _, err := drivertest.Get(context.Background(), d, h, 3000, "/")
			if err == nil && code == http.StatusOK {
				break
			}
			if time.Since(t0) > drivertest.Timeout {
				t.Fatalf("no answer: %v", err)
			}
			time.Sleep(500 * time.Microsecond)
		}
		runs = append(runs, time.Since(t0))
		t.Logf("Start returned after %v, first 200 after %v", started, runs[len(runs)-1])
		d.Stop(context.Background(), h)
	}
	h := startApp(t, d, runtime.Spec{Image: ref})
	const dials = 2000
	t0 := time.Now()
	for range dials {
		c, err := d.Dial(context.Background(), h, 3000)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	t.Logf("Dial: %v per connection (%d dials)", time.Since(t0)/dials, dials)
}

// TestRecoverAfterServerCrash starts an instance from another process
// (the "server"), kills that process with SIGKILL, and recovers the
// instance here: the app must survive its server, keep logging into the
// same files, and its exit must still be noticed.
func TestRecoverAfterServerCrash(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	root := t.TempDir()
	d := newDriver(t, Config{Root: root})
	logs := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServer$")
	cmd.Env = append(os.Environ(), "SLIPWAY_HELPER_SERVER=1", "HELPER_ROOT="+root, "HELPER_IMAGE="+ref, "HELPER_LOGS="+logs,
		"HELPER_RUNTIME="+runtimeUnderTest)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var h runtime.Handle
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "HANDLE "); ok {
			if err := json.Unmarshal([]byte(rest), &h); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if h.ID == "" {
		t.Fatalf("the helper server printed no handle")
	}
	cmd.Process.Kill()
	cmd.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
	defer cancel()
	if err := d.Recover(ctx, &h); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if body := drivertest.WaitHTTP(t, d, &h, 3000); body != "hello from orphan\n" {
		t.Errorf("GET / = %q", body)
	}
	get(t, d, &h, "/log?msg=still-logging")
	stdout := filepath.Join(logs, "stdout")
	deadline := time.Now().Add(drivertest.Timeout)
	for b, _ := os.ReadFile(stdout); !strings.Contains(string(b), "still-logging"); b, _ = os.ReadFile(stdout) {
		if time.Now().After(deadline) {
			t.Fatalf("the app's output after the crash never reached %s:\n%s", stdout, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	go drivertest.Get(ctx, d, &h, 3000, "/exit?code=9")
	st, err := d.Wait(ctx, &h)
	if err != nil {
		t.Fatal(err)
	}
	if st.Running || (st.ExitCode != 9 && kernelAtLeast(6, 15)) {
		t.Errorf("status after exit = %+v, want exit code 9", st)
	}
	if err := d.Stop(ctx, &h); err != nil {
		t.Fatal(err)
	}
	checkFreed(t, root, h.ID)
}

// TestHelperServer is the "server" process of TestRecoverAfterServerCrash.
func TestHelperServer(t *testing.T) {
	if os.Getenv("SLIPWAY_HELPER_SERVER") != "1" {
		t.Skip("runs only as the helper process of TestRecoverAfterServerCrash")
	}
	d, err := New(Config{Root: os.Getenv("HELPER_ROOT"), Runtime: os.Getenv("HELPER_RUNTIME")})
	if err != nil {
		t.Fatal(err)
	}
	logs := os.Getenv("HELPER_LOGS")
	h, err := d.Start(context.Background(), runtime.Spec{
		ID: drivertest.NewID(t), Image: os.Getenv("HELPER_IMAGE"), Env: []string{"APP_ID=orphan"},
		StdoutPath: filepath.Join(logs, "stdout"), StderrPath: filepath.Join(logs, "stderr"),
	})
	if err != nil {
		t.Fatal(err)
	}
	drivertest.WaitHTTP(t, d, h, 3000)
	b, _ := json.Marshal(h)
	fmt.Printf("HANDLE %s\n", b)
	select {} // until killed
}

// TestThreadsStayInHostNetns checks that creating namespaces and dialling
// into them leaves every thread of the process in the host's network
// namespace: a thread left behind would put unrelated sockets of the
// server inside an app's sandbox.
func TestThreadsStayInHostNetns(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	d := newDriver(t, Config{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			h := startApp(t, d, runtime.Spec{Image: ref})
			for range 50 {
				if c, err := d.Dial(context.Background(), h, 3000); err == nil {
					c.Close()
				}
			}
		})
	}
	wg.Wait()
	host, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, task := range tasks {
		if ns, err := os.Readlink(task); err == nil && ns != host {
			t.Errorf("%s is in %s, not the host's %s", task, ns, host)
		}
	}
}

func TestWritableLayerHasAQuota(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	d := newDriver(t, Config{})
	h := startApp(t, d, runtime.Spec{Image: ref, Limits: runtime.Limits{DiskBytes: 64 << 10}})
	ctx := context.Background()
	dir := "/tmp"
	if runtimeUnderTest == GVisor {
		// runsc mounts a tmpfs of the sandbox's own memory on an empty
		// /tmp (charged to the memory limit, not to the disk quota).
		dir = ""
	}
	small := strings.Repeat("a", 16<<10)
	if code, body, err := drivertest.Get(ctx, d, h, 3000, "/write?path="+dir+"/small&data="+small); err != nil || code != 200 {
		t.Fatalf("a write under the quota: %d %q %v", code, body, err)
	}
	big := strings.Repeat("b", 128<<10)
	code, body, err := drivertest.Get(ctx, d, h, 3000, "/write?path="+dir+"/big&data="+big)
	if err != nil || code != http.StatusInternalServerError || !strings.Contains(body, "no space left on device") {
		t.Errorf("a write over the 64 KiB quota: %d %q %v", code, body, err)
	}
}

// network records the driver's side of the runtime.Network seam; the
// kernel side is internal/netns's (and the fault suite's) to prove.
type network struct {
	mu       sync.Mutex
	attached map[string]string // id → "group nsPath"
	detached []string
}

func (n *network) Attach(_ context.Context, id, group, nsPath string) (runtime.Lease, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.attached[id] = group + " " + nsPath
	gw := netip.MustParseAddr("10.88.0.1")
	return runtime.Lease{Addr: netip.MustParseAddr("10.88.0.9"), Gateway: gw, DNS: []netip.Addr{gw}}, nil
}

func (n *network) Claim(_ context.Context, from, id, group string) (runtime.Lease, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.attached[id] = group + " " + n.attached[from]
	delete(n.attached, from)
	gw := netip.MustParseAddr("10.88.0.1")
	return runtime.Lease{Addr: netip.MustParseAddr("10.88.0.9"), Gateway: gw, DNS: []netip.Addr{gw}}, nil
}

func (n *network) Detach(_ context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.detached = append(n.detached, id)
	return nil
}

// An instance is attached to the driver's Network once its namespace
// exists, its resolv.conf names the lease's resolvers even when the image
// has no /etc (FROM scratch), and Stop detaches it.
func TestNetworkAttachAndScratchEtc(t *testing.T) {
	requireSandbox(t)
	host, _ := app(t)
	var files []drivertest.File
	for _, f := range drivertest.AppFiles(t, fixture.bin) {
		if f.Name != "etc" && !strings.HasPrefix(f.Name, "etc/") {
			files = append(files, f)
		}
	}
	cfg := drivertest.AppConfig()
	cfg.User = ""
	ref := drivertest.Push(t, host, "scratchapp", drivertest.Image(t, cfg, drivertest.Layer(t, files...)))
	nw := &network{attached: map[string]string{}}
	d := newDriver(t, Config{Network: nw})
	id := drivertest.NewID(t)
	h := startApp(t, d, runtime.Spec{ID: id, Image: ref, Group: "proj1"})
	nw.mu.Lock()
	got := nw.attached[id]
	nw.mu.Unlock()
	if got != "proj1 "+d.netnsPath(id) {
		t.Errorf("attached as %q, want group proj1 in %s", got, d.netnsPath(id))
	}
	if _, body := get(t, d, h, "/read?path=/etc/resolv.conf"); body != "nameserver 10.88.0.1\n" {
		t.Errorf("resolv.conf in a scratch image = %q", body)
	}
	if _, body := get(t, d, h, "/read?path=/etc/hosts"); !strings.Contains(body, "10.88.0.9\t"+id) {
		t.Errorf("/etc/hosts = %q", body)
	}
	if err := d.Stop(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if len(nw.detached) == 0 || nw.detached[0] != id {
		t.Errorf("detached %v, want %s", nw.detached, id)
	}
}

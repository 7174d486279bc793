// Package drivertest is the conformance suite every runtime.Driver passes,
// plus helpers to build and push the test app image it runs.
//
// A driver's test calls Run with a Harness:
//
//	drivertest.Run(t, drivertest.Harness{
//		New:   func(t *testing.T) runtime.Driver { return newDriver(t, cfg) },
//		Image: ref, // runs the test app (package testapp)
//	})
//
// The suite starts instances of the test app and checks, over real HTTP
// through Driver.Dial: serving on port 3000, logs in the stdout and stderr
// files, two instances on the same port side by side, Spec.Env and PORT,
// a per-instance writable filesystem, exits noticed by Wait, Stop being
// idempotent and freeing the instance, and Recover from a new driver value
// (as after a restart of the server). For a driver that implements
// runtime.Preparer it also checks that a prepared instance serves nothing
// until StartPrepared, then serves as a started one; that Stop frees it;
// and that a new driver value can start or stop it.
//
// RunIsolation (isolation.go) is the isolation suite, which every driver
// but the in-process fake passes: from inside an instance, no host file,
// process or service is reached, and the limits on processes, disk and
// memory hold.
//
// The suites bound every wait with a generous deadline so that a broken
// driver fails instead of hanging; it asserts no timings.
package drivertest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest/testapp"
)

// Harness is what the suite needs from a driver's test.
type Harness struct {
	// New returns a driver. The suite calls it more than once; all values
	// must see the same instances, as a restarted server sees the instances
	// its previous process started. If a value implements io.Closer, the
	// suite closes it when it plays a restart (and at the end of the test).
	New func(t *testing.T) runtime.Driver
	// Image is a reference to an image whose entrypoint runs the test app.
	Image string
	// ExitCodeMayBeUnknown accepts -1 for the exit code of an instance
	// whose process exited (for drivers that cannot always know it).
	ExitCodeMayBeUnknown bool
	// CheckFreed, if set, is called after Stop to check that the driver
	// freed everything the instance used (mounts, namespaces, files).
	CheckFreed func(t *testing.T, h *runtime.Handle)
	// PidsNotLimited skips the isolation suite's check of Limits.Pids, for
	// a driver whose boundary makes a process limit moot (a VM's processes
	// run on its own kernel, in its own memory).
	PidsNotLimited bool
	// NodePidsLimit, if set, says that the driver cannot hold an instance
	// to its Limits.Pids, and that the node holds every instance to this
	// many processes instead: a Kubernetes pod spec has no process limit,
	// only the kubelet's podPidsLimit, the same for every pod of the node.
	// The isolation suite then checks that limit.
	NodePidsLimit int
	// DiskLimitEvicts says that the driver's disk limit does not fail a
	// write past it: the instance is ended instead, a moment later
	// (Kubernetes' ephemeral-storage limit is enforced by the kubelet's
	// eviction, which measures each pod's usage periodically; a pod's
	// writable layer has no quota that would fail the write). The
	// isolation suite then checks that the instance ends.
	DiskLimitEvicts bool
	// HostAddressesByPolicy says that the driver does not itself keep
	// instances from the host's own addresses, but leaves it to a network
	// policy that the platform enforces (the kubernetes driver's
	// NetworkPolicy, which only a policy-enforcing network plugin applies,
	// and the test cluster's plain bridge plugin does not). The isolation
	// suite then checks only that the host's loopback is not the
	// instance's; the driver's own tests check the policy.
	HostAddressesByPolicy bool
}

// Timeout bounds each wait of the suites. It is a deadline for failure, not
// a timing requirement. A driver whose sandbox is slower to start by
// nature (a VM whose CPU is emulated, as microvm's under TCG) raises it in
// its test's TestMain, saying why.
var Timeout = 20 * time.Second

// Run runs the conformance suite against the driver of h.
func Run(t *testing.T, h Harness) {
	s := &suite{h: h}
	t.Run("StartDialServe", s.startDialServe)
	t.Run("Logs", s.logs)
	t.Run("SideBySide", s.sideBySide)
	t.Run("EnvAndPort", s.envAndPort)
	t.Run("WritableLayerPerInstance", s.writableLayer)
	t.Run("ExitNoticed", s.exitNoticed)
	t.Run("ExitAtStart", s.exitAtStart)
	t.Run("WaitHonoursContext", s.waitContext)
	t.Run("StopIdempotent", s.stopIdempotent)
	t.Run("StopAfterExit", s.stopAfterExit)
	t.Run("Recover", s.recover)
	t.Run("RecoverExited", s.recoverExited)
	t.Run("RecoverStopped", s.recoverStopped)
	t.Run("PrepareStart", s.prepareStart)
	t.Run("PrepareStop", s.prepareStop)
	t.Run("PrepareRecoverStart", s.prepareRecoverStart)
	t.Run("PrepareRecoverStop", s.prepareRecoverStop)
}

type suite struct{ h Harness }

// driver returns a new driver value, closed at the end of the test.
func (s *suite) driver(t *testing.T) runtime.Driver {
	t.Helper()
	d := s.h.New(t)
	if c, ok := d.(io.Closer); ok {
		t.Cleanup(func() { c.Close() })
	}
	return d
}

// restart plays a restart of the server: it closes d if it can be closed
// and returns a new driver value and h as the new server reloads it.
func (s *suite) restart(t *testing.T, d runtime.Driver, h *runtime.Handle) (runtime.Driver, *runtime.Handle) {
	t.Helper()
	if c, ok := d.(io.Closer); ok {
		if err := c.Close(); err != nil {
			t.Fatalf("closing driver: %v", err)
		}
	}
	return s.driver(t), persisted(t, h)
}

// checkFreed calls the harness's CheckFreed, if any, for a stopped instance.
func (s *suite) checkFreed(t *testing.T, h *runtime.Handle) {
	t.Helper()
	if s.h.CheckFreed != nil {
		s.h.CheckFreed(t, h)
	}
}

// NewID returns a fresh instance ID, safe as a DNS label.
func NewID(t testing.TB) string {
	b := make([]byte, 5)
	rand.Read(b)
	return "dt-" + hex.EncodeToString(b)
}

// spec returns a spec for the test app with log files in a temp dir.
func (s *suite) spec(t *testing.T, env ...string) runtime.Spec {
	dir := t.TempDir()
	return runtime.Spec{
		ID:         NewID(t),
		Image:      s.h.Image,
		Env:        env,
		StdoutPath: filepath.Join(dir, "stdout.log"),
		StderrPath: filepath.Join(dir, "stderr.log"),
	}
}

// start starts spec on d and stops the instance at the end of the test.
func start(t *testing.T, d runtime.Driver, spec runtime.Spec) *runtime.Handle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	h, err := d.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start(%s): %v", spec.ID, err)
	}
	if h.ID != spec.ID {
		t.Errorf("handle ID = %q, want %q", h.ID, spec.ID)
	}
	if h.Driver != d.Name() {
		t.Errorf("handle driver = %q, want %q", h.Driver, d.Name())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		if err := d.Stop(ctx, h); err != nil {
			t.Errorf("cleanup: Stop(%s): %v", h.ID, err)
		}
	})
	return h
}

// Get sends GET path to port inside the instance through d.Dial and
// returns the status code and body.
func Get(ctx context.Context, d runtime.Driver, h *runtime.Handle, port int, path string) (int, string, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.Dial(ctx, h, port)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://app"+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// get is Get that fails the test on a transport error.
func get(t *testing.T, d runtime.Driver, h *runtime.Handle, port int, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	code, body, err := Get(ctx, d, h, port, path)
	if err != nil {
		t.Fatalf("GET %s on port %d of %s: %v", path, port, h.ID, err)
	}
	return code, body
}

// WaitHTTP polls GET / on port until it answers 200 and returns the body.
// Start returns once the process runs, so the app may not listen yet.
func WaitHTTP(t testing.TB, d runtime.Driver, h *runtime.Handle, port int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var last error
	for {
		code, body, err := Get(ctx, d, h, port, "/")
		if err == nil && code == http.StatusOK {
			return body
		}
		if err == nil {
			err = fmt.Errorf("status %d", code)
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("instance %s never answered GET / on port %d: %v", h.ID, port, last)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitFile polls path until it holds a line equal to line.
func waitFile(t *testing.T, path, line string) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		if hasLine(path, line) {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(path)
			t.Fatalf("%s never held the line %q; it holds:\n%s", path, line, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasLine(path, line string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sc.Text() == line {
			return true
		}
	}
	return false
}

func wait(t *testing.T, d runtime.Driver, h *runtime.Handle) runtime.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	st, err := d.Wait(ctx, h)
	if err != nil {
		t.Fatalf("Wait(%s): %v", h.ID, err)
	}
	return st
}

func (s *suite) checkExit(t *testing.T, st runtime.Status, code int) {
	t.Helper()
	if st.Running {
		t.Errorf("status after exit: Running = true")
	}
	if st.ExitCode != code && !(s.h.ExitCodeMayBeUnknown && st.ExitCode == -1) {
		t.Errorf("exit code = %d, want %d", st.ExitCode, code)
	}
}

func inspect(t *testing.T, d runtime.Driver, h *runtime.Handle) runtime.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	st, err := d.Inspect(ctx, h)
	if err != nil {
		t.Fatalf("Inspect(%s): %v", h.ID, err)
	}
	return st
}

func (s *suite) startDialServe(t *testing.T) {
	d := s.driver(t)
	spec := s.spec(t, "APP_ID=one")
	h := start(t, d, spec)
	if body := WaitHTTP(t, d, h, 3000); body != "hello from one\n" {
		t.Errorf("GET / = %q, want %q", body, "hello from one\n")
	}
	st := inspect(t, d, h)
	if !st.Running || st.PID <= 0 || st.StartedAt.IsZero() {
		t.Errorf("Inspect of a running instance = %+v, want Running with a PID and a start time", st)
	}
	if _, err := d.Dial(context.Background(), h, 3001); err == nil {
		t.Errorf("Dial to port 3001 where nothing listens succeeded")
	}
}

func (s *suite) logs(t *testing.T) {
	d := s.driver(t)
	spec := s.spec(t)
	// Log files are appended to, never truncated.
	if err := os.WriteFile(spec.StdoutPath, []byte("earlier line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, d, spec)
	WaitHTTP(t, d, h, 3000)
	waitFile(t, spec.StdoutPath, testapp.StartLine)
	waitFile(t, spec.StderrPath, testapp.StartLine)
	if code, _ := get(t, d, h, 3000, "/log?msg=to-stdout-1"); code != http.StatusOK {
		t.Fatalf("GET /log: status %d", code)
	}
	if code, _ := get(t, d, h, 3000, "/log?msg=to-stderr-1&stream=stderr"); code != http.StatusOK {
		t.Fatalf("GET /log: status %d", code)
	}
	waitFile(t, spec.StdoutPath, "to-stdout-1")
	waitFile(t, spec.StderrPath, "to-stderr-1")
	if !hasLine(spec.StdoutPath, "earlier line") {
		t.Errorf("the stdout file lost the line written before Start")
	}
	if hasLine(spec.StdoutPath, "to-stderr-1") {
		t.Errorf("stderr output went to the stdout file")
	}
}

func (s *suite) sideBySide(t *testing.T) {
	d := s.driver(t)
	a := start(t, d, s.spec(t, "APP_ID=left"))
	b := start(t, d, s.spec(t, "APP_ID=right"))
	if body := WaitHTTP(t, d, a, 3000); body != "hello from left\n" {
		t.Errorf("instance a: GET / = %q", body)
	}
	if body := WaitHTTP(t, d, b, 3000); body != "hello from right\n" {
		t.Errorf("instance b: GET / = %q", body)
	}
	if inspect(t, d, a).PID == inspect(t, d, b).PID {
		t.Errorf("two instances report the same PID")
	}
}

func (s *suite) envAndPort(t *testing.T) {
	d := s.driver(t)
	spec := s.spec(t, "GREETING=hi there", "PORT=1") // PORT is the driver's to set
	spec.Port = 8080
	h := start(t, d, spec)
	WaitHTTP(t, d, h, 8080)
	for k, want := range map[string]string{"GREETING": "hi there", "PORT": "8080"} {
		code, body := get(t, d, h, 8080, "/env?name="+k)
		if code != http.StatusOK || body != want {
			t.Errorf("env %s = %d %q, want %q", k, code, body, want)
		}
	}
	if _, err := d.Dial(context.Background(), h, 3000); err == nil {
		t.Errorf("Dial to port 3000 succeeded although the app listens on 8080")
	}
}

func (s *suite) writableLayer(t *testing.T) {
	d := s.driver(t)
	a := start(t, d, s.spec(t))
	b := start(t, d, s.spec(t))
	WaitHTTP(t, d, a, 3000)
	WaitHTTP(t, d, b, 3000)
	if code, body := get(t, d, a, 3000, "/write?path=/tmp/dt/written&data=x"); code != http.StatusOK {
		t.Fatalf("writing a file in instance a: %d %s", code, body)
	}
	if code, body := get(t, d, a, 3000, "/read?path=/tmp/dt/written"); code != http.StatusOK || body != "x" {
		t.Errorf("reading back in instance a: %d %q", code, body)
	}
	if code, _ := get(t, d, b, 3000, "/stat?path=/tmp/dt/written"); code != http.StatusNotFound {
		t.Errorf("instance b sees the file instance a wrote (status %d)", code)
	}
}

func (s *suite) exitNoticed(t *testing.T) {
	d := s.driver(t)
	h := start(t, d, s.spec(t))
	WaitHTTP(t, d, h, 3000)
	before := inspect(t, d, h)
	done := make(chan runtime.Status, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		st, err := d.Wait(ctx, h)
		if err != nil {
			t.Errorf("Wait: %v", err)
		}
		done <- st
	}()
	if code, _ := get(t, d, h, 3000, "/exit?code=3"); code != http.StatusOK {
		t.Fatalf("GET /exit: status %d", code)
	}
	st := <-done
	s.checkExit(t, st, 3)
	if st.PID != before.PID || !st.StartedAt.Equal(before.StartedAt) {
		t.Errorf("status after exit = %+v, want PID %d and start time %v kept", st, before.PID, before.StartedAt)
	}
	if !st.ExitedAt.IsZero() && st.ExitedAt.Before(st.StartedAt) {
		t.Errorf("exited at %v, before the start at %v", st.ExitedAt, st.StartedAt)
	}
	s.checkExit(t, inspect(t, d, h), 3)
	// Wait on an exited instance returns at once.
	s.checkExit(t, wait(t, d, h), 3)
}

func (s *suite) exitAtStart(t *testing.T) {
	d := s.driver(t)
	spec := s.spec(t, testapp.EnvExit+"=7")
	h := start(t, d, spec)
	s.checkExit(t, wait(t, d, h), 7)
	waitFile(t, spec.StdoutPath, testapp.StartLine)
}

func (s *suite) waitContext(t *testing.T) {
	d := s.driver(t)
	h := start(t, d, s.spec(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Wait(ctx, h); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a cancelled context = %v, want context.Canceled", err)
	}
	if !inspect(t, d, h).Running {
		t.Errorf("instance not running after a cancelled Wait")
	}
}

func (s *suite) stopIdempotent(t *testing.T) {
	d := s.driver(t)
	h := start(t, d, s.spec(t))
	WaitHTTP(t, d, h, 3000)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	// A Wait racing with Stop returns the final status, or ErrNotFound if
	// it began after Stop had removed the instance.
	waited := make(chan runtime.Status, 1)
	go func() {
		st, err := d.Wait(ctx, h)
		if errors.Is(err, runtime.ErrNotFound) {
			err = nil
		}
		if err != nil {
			t.Errorf("Wait during Stop: %v", err)
		}
		waited <- st
	}()
	for i := range 2 {
		if err := d.Stop(ctx, h); err != nil {
			t.Fatalf("Stop #%d: %v", i+1, err)
		}
	}
	if st := <-waited; st.Running {
		t.Errorf("Wait during Stop returned a running status")
	}
	if c, err := d.Dial(ctx, h, 3000); err == nil {
		c.Close()
		t.Errorf("Dial after Stop succeeded")
	}
	if _, err := d.Inspect(ctx, h); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Inspect after Stop = %v, want ErrNotFound", err)
	}
	s.checkFreed(t, h)
	// A new driver value can stop it too.
	if err := s.driver(t).Stop(ctx, h); err != nil {
		t.Errorf("Stop from a new driver value: %v", err)
	}
}

func (s *suite) stopAfterExit(t *testing.T) {
	d := s.driver(t)
	h := start(t, d, s.spec(t))
	WaitHTTP(t, d, h, 3000)
	get(t, d, h, 3000, "/exit?code=0")
	s.checkExit(t, wait(t, d, h), 0)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := d.Stop(ctx, h); err != nil {
		t.Fatalf("Stop after exit: %v", err)
	}
	s.checkFreed(t, h)
}

// persisted returns a copy of h as the control plane stores and reloads it.
func persisted(t *testing.T, h *runtime.Handle) *runtime.Handle {
	t.Helper()
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatalf("encoding handle: %v", err)
	}
	var out runtime.Handle
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("decoding handle: %v", err)
	}
	return &out
}

func (s *suite) recover(t *testing.T) {
	d1 := s.driver(t)
	spec := s.spec(t, "APP_ID=survivor")
	h1 := start(t, d1, spec)
	WaitHTTP(t, d1, h1, 3000)
	before := inspect(t, d1, h1)

	d2, h2 := s.restart(t, d1, h1)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := d2.Recover(ctx, h2); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	t.Cleanup(func() { d2.Stop(context.Background(), h2) })
	if body := WaitHTTP(t, d2, h2, 3000); body != "hello from survivor\n" {
		t.Errorf("GET / after Recover = %q", body)
	}
	after := inspect(t, d2, h2)
	if !after.Running || after.PID != before.PID {
		t.Errorf("Inspect after Recover = %+v, want running with PID %d", after, before.PID)
	}
	// The logs still flow into the same files.
	get(t, d2, h2, 3000, "/log?msg=after-recover")
	waitFile(t, spec.StdoutPath, "after-recover")
	// Exits are still noticed.
	done := make(chan runtime.Status, 1)
	go func() {
		st, err := d2.Wait(ctx, h2)
		if err != nil {
			t.Errorf("Wait after Recover: %v", err)
		}
		done <- st
	}()
	get(t, d2, h2, 3000, "/exit?code=4")
	s.checkExit(t, <-done, 4)
	if err := d2.Stop(ctx, h2); err != nil {
		t.Errorf("Stop after Recover: %v", err)
	}
	s.checkFreed(t, h2)
}

func (s *suite) recoverExited(t *testing.T) {
	d1 := s.driver(t)
	h1 := start(t, d1, s.spec(t))
	WaitHTTP(t, d1, h1, 3000)
	get(t, d1, h1, 3000, "/exit?code=5")
	wait(t, d1, h1)

	d2, h2 := s.restart(t, d1, h1)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := d2.Recover(ctx, h2); err != nil {
		t.Fatalf("Recover of an exited instance: %v", err)
	}
	if st := inspect(t, d2, h2); st.Running {
		t.Errorf("Inspect after Recover of an exited instance: Running = true")
	}
	if st := wait(t, d2, h2); st.Running {
		t.Errorf("Wait after Recover of an exited instance: Running = true")
	}
	if err := d2.Stop(ctx, h2); err != nil {
		t.Errorf("Stop: %v", err)
	}
	s.checkFreed(t, h2)
}

func (s *suite) recoverStopped(t *testing.T) {
	d1 := s.driver(t)
	h1 := start(t, d1, s.spec(t))
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := d1.Stop(ctx, h1); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	d2, h2 := s.restart(t, d1, h1)
	if err := d2.Recover(ctx, h2); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Recover of a stopped instance = %v, want ErrNotFound", err)
	}
	if _, err := d2.Inspect(ctx, h2); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Inspect of a stopped instance = %v, want ErrNotFound", err)
	}
	if err := d2.Stop(ctx, h2); err != nil {
		t.Errorf("Stop of a stopped instance: %v", err)
	}
}

// preparer returns a new driver value as a runtime.Preparer, or skips the
// test for a driver that does not prepare instances ahead.
func (s *suite) preparer(t *testing.T) (runtime.Driver, runtime.Preparer) {
	t.Helper()
	d := s.driver(t)
	p, ok := d.(runtime.Preparer)
	if !ok {
		t.Skipf("%s does not implement runtime.Preparer", d.Name())
	}
	return d, p
}

// prepare prepares spec on p and stops the instance at the end of the
// test.
func prepare(t *testing.T, d runtime.Driver, p runtime.Preparer, spec runtime.Spec) *runtime.Handle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	h, err := p.Prepare(ctx, spec)
	if err != nil {
		t.Fatalf("Prepare(%s): %v", spec.ID, err)
	}
	if h.ID != spec.ID || h.Driver != d.Name() {
		t.Errorf("handle = %s/%s, want %s/%s", h.Driver, h.ID, d.Name(), spec.ID)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		if err := d.Stop(ctx, h); err != nil {
			t.Errorf("cleanup: Stop(%s): %v", h.ID, err)
		}
	})
	return h
}

// startPrepared starts a prepared instance and checks the handle.
func startPrepared(t *testing.T, p runtime.Preparer, h *runtime.Handle) *runtime.Handle {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	h2, err := p.StartPrepared(ctx, h)
	if err != nil {
		t.Fatalf("StartPrepared(%s): %v", h.ID, err)
	}
	if h2.ID != h.ID || h2.Driver != h.Driver {
		t.Errorf("StartPrepared returned a handle of %s/%s, want %s/%s", h2.Driver, h2.ID, h.Driver, h.ID)
	}
	return persisted(t, h2)
}

func (s *suite) prepareStart(t *testing.T) {
	d, p := s.preparer(t)
	spec := s.spec(t, "APP_ID=ahead")
	h := prepare(t, d, p, spec)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if code, _, err := Get(ctx, d, h, 3000, "/"); err == nil {
		t.Errorf("a prepared instance answered GET / (status %d) before StartPrepared", code)
	}
	if hasLine(spec.StdoutPath, testapp.StartLine) {
		t.Errorf("a prepared instance's app wrote to stdout before StartPrepared")
	}
	h2 := startPrepared(t, p, persisted(t, h))
	if body := WaitHTTP(t, d, h2, 3000); body != "hello from ahead\n" {
		t.Errorf("GET / = %q, want %q", body, "hello from ahead\n")
	}
	waitFile(t, spec.StdoutPath, testapp.StartLine)
	if st := inspect(t, d, h2); !st.Running || st.PID <= 0 {
		t.Errorf("Inspect after StartPrepared = %+v, want running with a PID", st)
	}
	if _, err := p.StartPrepared(ctx, h2); err == nil {
		t.Errorf("StartPrepared of a started instance succeeded")
	}
	if code, body := get(t, d, h2, 3000, "/"); code != http.StatusOK || body != "hello from ahead\n" {
		t.Errorf("after a second StartPrepared: GET / = %d %q", code, body)
	}
	if err := d.Stop(ctx, h2); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	s.checkFreed(t, h2)
}

func (s *suite) prepareStop(t *testing.T) {
	d, p := s.preparer(t)
	h := prepare(t, d, p, s.spec(t))
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := d.Stop(ctx, h); err != nil {
		t.Fatalf("Stop of a prepared instance: %v", err)
	}
	if _, err := d.Inspect(ctx, h); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Inspect after Stop = %v, want ErrNotFound", err)
	}
	if _, err := p.StartPrepared(ctx, h); err == nil {
		t.Errorf("StartPrepared after Stop succeeded")
	}
	s.checkFreed(t, h)
}

func (s *suite) prepareRecoverStart(t *testing.T) {
	d1, p1 := s.preparer(t)
	h1 := prepare(t, d1, p1, s.spec(t, "APP_ID=adopted"))
	d2, h2 := s.restart(t, d1, h1)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := d2.Recover(ctx, h2); err != nil {
		t.Fatalf("Recover of a prepared instance: %v", err)
	}
	h3 := startPrepared(t, d2.(runtime.Preparer), h2)
	t.Cleanup(func() { d2.Stop(context.Background(), h3) })
	if body := WaitHTTP(t, d2, h3, 3000); body != "hello from adopted\n" {
		t.Errorf("GET / = %q", body)
	}
	if err := d2.Stop(ctx, h3); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	s.checkFreed(t, h3)
}

func (s *suite) prepareRecoverStop(t *testing.T) {
	d1, p1 := s.preparer(t)
	h1 := prepare(t, d1, p1, s.spec(t))
	d2, h2 := s.restart(t, d1, h1)
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := d2.Stop(ctx, h2); err != nil {
		t.Fatalf("Stop of a prepared instance from a new driver value: %v", err)
	}
	if _, err := d2.Inspect(ctx, h2); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Inspect after Stop = %v, want ErrNotFound", err)
	}
	s.checkFreed(t, h2)
}

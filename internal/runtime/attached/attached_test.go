package attached

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/runtime/pidfd"
)

// sleeper starts `sleep 60` and returns an instance of it, a pidfd open
// on it, not yet adopted. The process is the test's child, as a driver's
// never is: the test reaps it with cmd.Wait (as a container's parent, runc
// or init, would).
func sleeper(t *testing.T, id string) (*Instance, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	st, err := pidfd.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	in := New(id, cmd.Process.Pid, time.Now(), false)
	if found, err := in.OpenProcess(st.Start); err != nil || !found {
		t.Fatalf("OpenProcess = %v, %v", found, err)
	}
	return in, cmd
}

// checkRuns fails the test if cmd's process no longer runs.
func checkRuns(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the process no longer runs: %v", err)
	}
}

// waitCtx bounds a test's wait for an exit generously: the test asserts
// that it comes, not how fast.
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestWaitSeesExit: a watched process's exit is recorded, with its code
// (128+N for a signal), and completed by OnExit, which runs once.
func TestWaitSeesExit(t *testing.T) {
	var s Set
	in, cmd := sleeper(t, "a")
	var calls []Exit
	in.OnExit = func(e *Exit) {
		calls = append(calls, *e)
		e.OOMKilled = true
	}
	s.Adopt(in)
	if st := in.Status(); !st.Running || st.PID != cmd.Process.Pid {
		t.Fatalf("Status before the exit = %+v", st)
	}
	if in.Exited() {
		t.Fatal("Exited before the process ended")
	}
	// Signalled through the pidfd; its parent (the test) reaps it later.
	if err := in.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	st, err := in.Wait(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Running || st.ExitCode != 128+int(syscall.SIGTERM) || st.ExitedAt.IsZero() || !st.OOMKilled {
		t.Errorf("Wait = %+v, want exit code %d, a time, and OnExit's OOMKilled", st, 128+int(syscall.SIGTERM))
	}
	if len(calls) != 1 || calls[0].OOMKilled {
		t.Errorf("OnExit saw %+v, want one call with the pidfd's exit", calls)
	}
	if got := in.Status(); got != st {
		t.Errorf("Status after Wait = %+v, want %+v", got, st)
	}
}

// TestAdoptExitedProcess: a process that exited before it was adopted (a
// zombie its parent has not reaped) is recorded exited at once, with its
// code, and no time (the exit was not seen happening).
func TestAdoptExitedProcess(t *testing.T) {
	cmd := exec.Command("sh", "-c", "exit 3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	st, err := pidfd.ReadStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	in := New("z", pid, time.Now(), false)
	if _, err := in.OpenProcess(st.Start); err != nil {
		t.Fatal(err)
	}
	// Wait, without reaping it, until it is a zombie.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	var s Set
	s.Adopt(in)
	if !in.Exited() {
		t.Fatal("an exited process is not recorded exited at once")
	}
	if got := in.Status(); got.Running || got.ExitCode != 3 || !got.ExitedAt.IsZero() {
		t.Errorf("Status = %+v, want exit code 3 and no exit time", got)
	}
}

// TestAdoptGoneProcess: a process that is gone (or a pid another process
// took) leaves the instance without a pidfd, exited, its code unknown.
func TestAdoptGoneProcess(t *testing.T) {
	in, cmd := sleeper(t, "g")
	in.Close()
	st, _ := pidfd.ReadStat(cmd.Process.Pid)
	in = New("g", cmd.Process.Pid, time.Now(), false)
	if found, err := in.OpenProcess(st.Start + 1); err != nil || found {
		t.Fatalf("OpenProcess with another start time = %v, %v; want false, nil", found, err)
	}
	var s Set
	s.Adopt(in)
	if got := in.Status(); got.Running || got.ExitCode != -1 {
		t.Errorf("Status = %+v, want exited with code -1", got)
	}
	if err := in.Signal(unix.SIGKILL); err != nil {
		t.Errorf("Signal without a pidfd = %v", err)
	}
	checkRuns(t, cmd)
}

// TestTerminate: a process that exits on term is not killed; one that
// does not is killed once ctx ends (here before the grace period could);
// term's error stops Terminate while ctx lasts; an exited process gets
// neither.
func TestTerminate(t *testing.T) {
	var s Set
	in, _ := sleeper(t, "t")
	s.Adopt(in)
	term := func() error { return in.Signal(unix.SIGTERM) }
	kill := func() error { t.Error("killed a process that exits on SIGTERM"); return nil }
	if err := in.Terminate(waitCtx(t), waitCtx(t), time.Hour, term, kill); err != nil {
		t.Fatal(err)
	}
	if st := in.Status(); st.Running || st.ExitCode != 128+int(syscall.SIGTERM) {
		t.Errorf("after SIGTERM: %+v", st)
	}
	if err := in.Terminate(waitCtx(t), waitCtx(t), time.Hour, nil, nil); err != nil {
		t.Errorf("Terminate of an exited process = %v", err)
	}

	in, _ = sleeper(t, "k")
	s.Adopt(in)
	errTerm := errors.New("no SIGTERM")
	noTerm := func() error { return errTerm }
	if err := in.Terminate(waitCtx(t), waitCtx(t), time.Hour, noTerm, kill); !errors.Is(err, errTerm) {
		t.Errorf("Terminate with a failing term = %v", err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	kill = func() error { return in.Signal(unix.SIGKILL) }
	if err := in.Terminate(ended, waitCtx(t), time.Hour, noTerm, kill); err != nil {
		t.Fatal(err)
	}
	if st := in.Status(); st.Running || st.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("after SIGKILL: %+v", st)
	}
}

// TestCloseDetachesWait: letting go of an instance ends a Wait in progress
// with ErrDetached; the process runs on.
func TestCloseDetachesWait(t *testing.T) {
	var s Set
	in, cmd := sleeper(t, "d")
	s.Adopt(in)
	errc := make(chan error, 1)
	go func() {
		_, err := in.Wait(waitCtx(t))
		errc <- err
	}()
	s.Close()
	if err := <-errc; !errors.Is(err, ErrDetached) {
		t.Errorf("Wait after Close = %v, want ErrDetached", err)
	}
	if s.Get("d") != nil {
		t.Error("Get after Close found the instance")
	}
	checkRuns(t, cmd)
}

// TestWaitEndsWithContext: Wait returns ctx's error when it ends first.
func TestWaitEndsWithContext(t *testing.T) {
	var s Set
	in, _ := sleeper(t, "c")
	s.Adopt(in)
	defer s.Remove("c")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := in.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait = %v, want context.Canceled", err)
	}
}

// TestAttach: Attach loads an instance once, under its ID's lock, and
// then finds it; a failed load attaches nothing; Remove lets go of it.
func TestAttach(t *testing.T) {
	var s Set
	in, _ := sleeper(t, "x")
	loads := 0
	load := func() (*Instance, error) { loads++; return in, nil }
	for range 2 {
		got, err := s.Attach("x", load)
		if err != nil || got != in {
			t.Fatalf("Attach = %v, %v", got, err)
		}
	}
	if loads != 1 {
		t.Errorf("load ran %d times, want 1", loads)
	}
	errGone := errors.New("gone")
	if _, err := s.Attach("y", func() (*Instance, error) { return nil, errGone }); !errors.Is(err, errGone) {
		t.Errorf("Attach with a failing load = %v", err)
	}
	if s.Get("y") != nil {
		t.Error("a failed load attached an instance")
	}
	s.Remove("x")
	if s.Get("x") != nil {
		t.Error("Get after Remove found the instance")
	}
	if _, err := in.Wait(waitCtx(t)); !errors.Is(err, ErrDetached) {
		t.Errorf("Wait after Remove = %v, want ErrDetached", err)
	}
}

// TestLockSerializesAnID: while one holds an ID's lock, another waits
// for it; other IDs are free; no lock is kept once all are unlocked.
func TestLockSerializesAnID(t *testing.T) {
	var s Set
	unlock := s.Lock("a")
	s.Lock("b")() // another ID: not blocked
	got := make(chan struct{})
	go func() {
		u := s.Lock("a")
		close(got)
		u()
	}()
	// Until the other one waits on the lock.
	for {
		s.mu.Lock()
		refs := s.locks["a"].refs
		s.mu.Unlock()
		if refs == 2 {
			break
		}
		runtime.Gosched()
	}
	select {
	case <-got:
		t.Fatal("the lock was taken twice")
	default:
	}
	unlock()
	<-got
	s.Lock("a")()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.locks) != 0 {
		t.Errorf("%d locks kept after every unlock", len(s.locks))
	}
}

// TestStartedAndDial: a prepared instance's start is recorded; Dial
// connects from inside the namespace held open (here the test's own) and
// fails without one.
func TestStartedAndDial(t *testing.T) {
	in := New("p", os.Getpid(), time.Unix(1, 0), true)
	if !in.Prepared() {
		t.Fatal("not prepared")
	}
	in.Started(time.Unix(2, 0))
	if in.Prepared() || !in.Status().StartedAt.Equal(time.Unix(2, 0)) {
		t.Errorf("after Started: prepared %v, status %+v", in.Prepared(), in.Status())
	}
	if _, err := in.Dial(context.Background(), "127.0.0.1:1"); err == nil {
		t.Error("Dial without a network namespace succeeded")
	}
	if err := in.OpenNetns("/nonexistent"); err == nil {
		t.Error("OpenNetns of a missing path succeeded")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := in.OpenNetns("/proc/self/ns/net"); err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	c, err := in.Dial(waitCtx(t), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

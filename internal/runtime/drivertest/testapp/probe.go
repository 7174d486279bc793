package testapp

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// probeArg, as the first argument of the app, runs one probe (see Probe)
// and exits instead of serving.
const probeArg = "-probe"

// Probes are the system calls /syscall can try, each in a child process of
// its own (a seccomp filter may kill it). Each returns the errno of the
// call, or nil if it succeeded.
var Probes = map[string]func() error{
	// getpid always works: the control.
	"getpid": func() error { _, _, e := syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0); return errnoOrNil(e) },
	// getrandom(buf, 16, 0): what every TLS library seeds from (Node
	// aborts at start without it).
	"getrandom": func() error {
		_, err := unix.Getrandom(make([]byte, 16), 0)
		return err
	},
	// io_uring_setup(1, &params): a large kernel surface apps do not need.
	"io_uring_setup": func() error {
		var params [120]byte
		r, _, e := syscall.RawSyscall(425, 1, uintptr(unsafe.Pointer(&params)), 0)
		if e == 0 {
			syscall.Close(int(r))
		}
		return errnoOrNil(e)
	},
	// ptrace(PTRACE_TRACEME): succeeds unless a filter denies it.
	"ptrace": func() error {
		_, _, e := syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0)
		return errnoOrNil(e)
	},
	// getpid of the x32 ABI (32-bit pointers on x86_64): the number with
	// __X32_SYSCALL_BIT set. A kernel without x32 answers ENOSYS; a filter
	// says EPERM, or kills the thread (seccomp's action for a foreign ABI).
	// (The i386 entry, int $0x80, cannot be probed on every host: some
	// kernels fault on it before any filter runs.)
	"getpid-x32": func() error { return inThread(0x40000000 | syscall.SYS_GETPID) },
}

// errThreadKilled reports that the thread making a system call was killed.
var errThreadKilled = errors.New("thread killed")

// inThread makes system call trap with no arguments in a thread of its
// own and returns its errno, or errThreadKilled if the thread vanished
// during the call (a seccomp filter may kill the thread alone, which would
// leave a Go program waiting forever).
func inThread(trap uintptr) error {
	tid, done := make(chan int, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		tid <- syscall.Gettid()
		_, _, e := syscall.Syscall(trap, 0, 0, 0)
		done <- errnoOrNil(e)
	}()
	// A thread that exited is gone from /proc/self/task, or a zombie
	// there if it led the process.
	stat := fmt.Sprintf("/proc/self/task/%d/stat", <-tid)
	for {
		select {
		case err := <-done:
			return err
		default:
		}
		if b, err := os.ReadFile(stat); err != nil || bytes.Contains(b, []byte(") Z ")) {
			select {
			case err := <-done:
				return err
			default:
				return errThreadKilled
			}
		}
		time.Sleep(time.Millisecond)
	}
}

func errnoOrNil(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// runProbe runs probe name in this process and prints its outcome: "ok"
// or the errno's name.
func runProbe(name string) {
	p, ok := Probes[name]
	if !ok {
		fmt.Println("unknown probe")
		os.Exit(2)
	}
	fmt.Println(probeOutcome(p()))
	os.Exit(0)
}

func probeOutcome(err error) string {
	var e syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &e) && e == syscall.EPERM:
		return "EPERM"
	case errors.As(err, &e) && e == syscall.ENOSYS:
		return "ENOSYS"
	case err == errThreadKilled:
		return "thread killed"
	}
	return err.Error()
}

// probe runs probe name in a child process and returns its outcome, or
// how the child died.
func probe(name string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(exe, probeArg, name).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + ws.Signal().String(), nil
		}
	}
	if err != nil {
		return "", err
	}
	return string(out[:len(out)-min(len(out), 1)]), nil
}

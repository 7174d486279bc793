package serverproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/build/buildkit"
	"github.com/slipwayhq/slipway/internal/runtime/runc"
	"github.com/slipwayhq/slipway/internal/server"
)

// NetnsDir is where the runc driver names its instances' network
// namespaces: <NetnsDir>/slipway-<instance id>.
const NetnsDir = "/run/netns"

// DialInstance connects to port inside an instance's network namespace, as
// the router does, without the server: it shows whether an app answers
// while the control plane is down.
func DialInstance(ctx context.Context, instance string, port int) (net.Conn, error) {
	ns, err := os.Open(filepath.Join(NetnsDir, "slipway-"+instance))
	if err != nil {
		return nil, fmt.Errorf("opening the network namespace of instance %s: %w", instance, err)
	}
	defer ns.Close()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			goruntime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer host.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			goruntime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("entering network namespace: %w", err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port))
		if unix.Setns(int(host.Fd()), unix.CLONE_NEWNET) == nil {
			goruntime.UnlockOSThread()
		} // else the thread ends with this goroutine, still locked
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// Sweep removes what a server on dataDir may have left behind once it is
// gone: its buildkitd, every runc container (killed and deleted), every
// mount below dataDir, the network namespaces of its instances, and its
// networks (server.RemoveNetwork). It is
// meant for cleanup after tests and benchmarks, including failed ones.
func Sweep(dataDir string) error {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	var errs []error
	killMatching(dataDir + "/buildkit")

	runcRoot := filepath.Join(dataDir, "runtime", "runc")
	if _, err := os.Stat(runcRoot); err == nil {
		out, _ := exec.Command("runc", "--root", runcRoot, "list", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			exec.Command("runc", "--root", runcRoot, "kill", id, "KILL").Run()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if out, err := exec.CommandContext(ctx, "runc", "--root", runcRoot, "delete", "--force", id).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("runc delete %s: %v: %s", id, err, out))
			}
			cancel()
		}
	}
	// Instances' bundles: in the runc driver's run directory, or under the
	// data directory where an older Slipway kept them.
	runDir := runc.DefaultRunDir(filepath.Join(dataDir, "runtime"))
	for _, dir := range []string{runDir, filepath.Join(dataDir, "runtime", "instances")} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			ns := filepath.Join(NetnsDir, "slipway-"+e.Name())
			if err := unix.Unmount(ns, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("unmounting %s: %w", ns, err))
			}
			if err := os.Remove(ns); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := buildkit.UnmountUnder(dataDir); err != nil {
		errs = append(errs, err)
	}
	if err := buildkit.UnmountUnder(runDir); err != nil {
		errs = append(errs, err)
	} else if err := os.RemoveAll(runDir); err != nil { // never through a live mount
		errs = append(errs, err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "network")); err == nil {
		if err := server.RemoveNetwork(dataDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killMatching kills processes whose command line holds s.
func killMatching(s string) {
	for _, pid := range Processes() {
		if pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		if strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Processes lists the ids of all processes.
func Processes() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// Environ returns a process's environment, or nil.
func Environ(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// AppProcesses maps each deployment id to the host pids of the processes
// whose environment carries SLIPWAY_DEPLOYMENT_ID=<id>: the app processes
// that instances of that deployment run.
func AppProcesses() map[string][]int {
	out := map[string][]int{}
	for _, pid := range Processes() {
		for _, kv := range Environ(pid) {
			if id, ok := strings.CutPrefix(kv, "SLIPWAY_DEPLOYMENT_ID="); ok {
				out[id] = append(out[id], pid)
				break
			}
		}
	}
	return out
}

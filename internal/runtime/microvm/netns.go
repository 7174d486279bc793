package microvm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// This file holds the host side of an instance's network namespace: made
// and removed as the runc driver does (named, bind-mounted under
// Config.NetnsDir), entered to start QEMU and to dial the guest.

// createNetns creates a network namespace with lo up and bind-mounts it
// at path, as `ip netns add` does, so that it outlives every process (and
// the server) until deleteNetns.
func createNetns(path string) error {
	if err := prepareNetnsDir(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("creating network namespace file: %w", err)
	}
	f.Close()
	err = inNewNetns(func() error {
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting network namespace at %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
	}
	return err
}

// inNewNetns runs fn on a thread in a new network namespace, then returns
// the thread to the host's.
func inNewNetns(fn func() error) error {
	host, err := hostNetns()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		var err error
		if err = unix.Unshare(unix.CLONE_NEWNET); err != nil {
			err = fmt.Errorf("unshare: %w", err)
		} else {
			err = fn()
		}
		if setns(host) == nil {
			goruntime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine
		done <- err
	}()
	return <-done
}

// inNetns runs fn on a thread inside the namespace ns, then returns the
// thread to the host's. Processes fn starts are born in ns.
func inNetns(ns syscall.RawConn, fn func() error) error {
	host, err := hostNetns()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		if err := setns(ns); err != nil {
			goruntime.UnlockOSThread() // still in the host namespace
			done <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		err := fn()
		if setns(host) == nil {
			goruntime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

var netnsDirs sync.Map // dir → struct{}: prepared

// prepareNetnsDir creates dir and makes it a shared mount point, as
// ip-netns(8) does.
func prepareNetnsDir(dir string) error {
	if _, ok := netnsDirs.Load(dir); ok {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err = unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("making %s a shared mount: %w", dir, err)
	}
	netnsDirs.Store(dir, struct{}{})
	return nil
}

// deleteNetns unmounts and removes a namespace made by createNetns. A
// missing namespace is not an error.
func deleteNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing network namespace %s: %w", path, err)
	}
	return nil
}

// hostNetns is the process's own network namespace, read from the calling
// thread (an unlocked one is always in the host namespace).
var hostNetns = sync.OnceValues(func() (syscall.RawConn, error) {
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("opening the host network namespace: %w", err)
	}
	return f.SyscallConn() // f is kept open for the life of the process
})

// setns moves the calling (locked) thread into the network namespace ns.
func setns(ns syscall.RawConn) error {
	var err error
	if cerr := ns.Control(func(fd uintptr) { err = unix.Setns(int(fd), unix.CLONE_NEWNET) }); cerr != nil {
		return cerr
	}
	return err
}

// dialIn opens a TCP connection to addr from inside the namespace ns; the
// connection can be used from any goroutine.
func dialIn(ctx context.Context, ns syscall.RawConn, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(ns, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return conn, err
}

// Package linuxns makes, enters and removes the named network namespaces
// of instances — files bind-mounted under a directory such as /run/netns,
// as ip-netns(8) makes them, so that a namespace outlives every process
// (and the server) until it is deleted — and dials into them. The runc
// and microvm drivers share it.
//
// Entering a namespace is per thread: a function runs on a locked thread
// that enters the namespace and returns to the host's after; a thread
// that cannot return is never reused.
package linuxns

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

// Create creates a network namespace with its loopback interface up and
// bind-mounts it at path.
func Create(path string) error {
	ns, err := New()
	if err != nil {
		return fmt.Errorf("creating network namespace %s: %w", path, err)
	}
	defer ns.Close()
	return Bind(ns, path)
}

// New creates a network namespace with its loopback interface up and
// returns it open: it lives as long as the file (or a mount of it, see
// Bind, or a process in it).
func New() (*os.File, error) {
	host, err := Host()
	if err != nil {
		return nil, err
	}
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		var r result
		if r.err = unix.Unshare(unix.CLONE_NEWNET); r.err != nil {
			r.err = fmt.Errorf("unshare: %w", r.err)
		} else if r.f, r.err = os.Open("/proc/thread-self/ns/net"); r.err == nil {
			if r.err = loopbackUp(); r.err != nil {
				r.f.Close()
				r.f = nil
			}
		}
		if setns(host) == nil {
			goruntime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine
		done <- r
	}()
	r := <-done
	return r.f, r.err
}

// Bind bind-mounts the namespace ns at path (a new file), in a directory
// made a shared mount point first.
func Bind(ns *os.File, path string) error {
	if err := prepareDir(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("creating network namespace file: %w", err)
	}
	f.Close()
	if err := unix.Mount(FdPath(ns), path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("bind-mounting network namespace at %s: %w", path, err)
	}
	return nil
}

// FdPath names an open file by its descriptor, for those who take a path.
func FdPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }

// loopbackUp sets the flag IFF_UP on "lo" of the calling thread's network
// namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	return nil
}

var preparedDirs sync.Map // dir → struct{}

// prepareDir creates dir and makes it a shared mount point, as ip-netns(8)
// does, so that namespace mounts made later propagate to mount namespaces
// that copied it.
func prepareDir(dir string) error {
	if _, ok := preparedDirs.Load(dir); ok {
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
	preparedDirs.Store(dir, struct{}{})
	return nil
}

// Delete unmounts and removes a namespace made by Create or Bind. The
// namespace itself ends when no process uses it any more. A missing
// namespace is not an error.
func Delete(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing network namespace %s: %w", path, err)
	}
	return nil
}

// Host returns the process's own network namespace, to return to after
// entering an instance's. It is read from the calling thread, not from
// /proc/self (the main thread), which the Go runtime may have retired in
// another namespace: a goroutine that ends while locked to the main thread
// wedges it instead of ending it. Threads that run goroutines unlocked are
// always in the host namespace.
var Host = sync.OnceValues(func() (syscall.RawConn, error) {
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

// Do runs fn on a thread inside the namespace ns, then returns the thread
// to the host's. Sockets fn opens belong to ns for their whole life and
// can be used from any goroutine; processes fn starts are born in ns.
func Do(ns syscall.RawConn, fn func() error) error {
	host, err := Host()
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
		} // else the thread stays locked and ends with this goroutine
		done <- err
	}()
	return <-done
}

// Dial opens a TCP connection to addr from inside the namespace ns.
func Dial(ctx context.Context, ns syscall.RawConn, addr string) (net.Conn, error) {
	var conn net.Conn
	err := Do(ns, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return conn, err
}

package runc

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

// createNetns creates a network namespace with its loopback interface up
// and bind-mounts it at path, as `ip netns add` does, so that it outlives
// every process (and the server) until deleteNetns.
func createNetns(path string) error {
	ns, err := newNetns()
	if err != nil {
		return fmt.Errorf("creating network namespace %s: %w", path, err)
	}
	defer ns.Close()
	return bindNetns(ns, path)
}

// newNetns creates a network namespace with its loopback interface up and
// returns it open: it lives as long as the file (or a mount of it, see
// bindNetns, or a process in it).
func newNetns() (*os.File, error) {
	host, err := hostNetns()
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

// bindNetns bind-mounts the namespace ns at path (a new file).
func bindNetns(ns *os.File, path string) error {
	if err := prepareNetnsDir(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("creating network namespace file: %w", err)
	}
	f.Close()
	if err := unix.Mount(fdPath(ns), path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("bind-mounting network namespace at %s: %w", path, err)
	}
	return nil
}

// fdPath names an open file by its descriptor, for those who take a path.
func fdPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }

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

var netnsDirs sync.Map // dir → struct{}: prepared

// prepareNetnsDir creates dir and makes it a shared mount point, as
// ip-netns(8) does, so that namespace mounts made later propagate to mount
// namespaces that copied it.
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

// deleteNetns unmounts and removes a namespace made by createNetns. The
// namespace itself ends when no process uses it any more. A missing
// namespace is not an error.
func deleteNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing network namespace %s: %w", path, err)
	}
	return nil
}

// hostNetns is the process's own network namespace, to return to after
// entering an instance's. It is read from the calling thread, not from
// /proc/self (the main thread), which the Go runtime may have retired in
// another namespace: a goroutine that ends while locked to the main thread
// wedges it instead of ending it. Threads that run goroutines unlocked are
// always in the host namespace.
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

// dialIn opens a TCP connection to addr from inside the network namespace
// ns. The socket is created on a thread that enters ns and then returns to
// the host namespace; the connection belongs to ns for its whole life and
// can be used from any goroutine.
func dialIn(ctx context.Context, ns syscall.RawConn, addr string) (net.Conn, error) {
	host, err := hostNetns()
	if err != nil {
		return nil, err
	}
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		var r result
		if err := setns(ns); err != nil {
			r.err = fmt.Errorf("entering network namespace: %w", err)
			goruntime.UnlockOSThread() // still in the host namespace
			ch <- r
			return
		}
		var d net.Dialer
		r.conn, r.err = d.DialContext(ctx, "tcp", addr)
		if setns(host) == nil {
			goruntime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine
		ch <- r
	}()
	r := <-ch
	return r.conn, r.err
}

// prepareUserNetns readies the network namespace at nsPath for an
// instance in a user namespace of its own, which owns no capability over
// it: it mounts a sysfs of the namespace on sysfs, read-only (its
// class/net lists that namespace's interfaces, as a sysfs mounted inside
// the instance would; the mount holds the namespace, so it is unmounted
// before the namespace is deleted), and lets every user bind ports below
// 1024 there (net.ipv4.ip_unprivileged_port_start=0), as the instance's
// root could in the host's user namespace.
func prepareUserNetns(nsPath, sysfs string) error {
	host, err := hostNetns()
	if err != nil {
		return err
	}
	f, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("preparing the network namespace: %w", err)
	}
	defer f.Close()
	ns, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("preparing the network namespace: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		if err := setns(ns); err != nil {
			goruntime.UnlockOSThread() // still in the host namespace
			done <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		err := unix.Mount("sysfs", sysfs, "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		if err != nil {
			err = fmt.Errorf("mounting sysfs on %s: %w", sysfs, err)
		} else if werr := os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte("0\n"), 0); werr != nil {
			err = fmt.Errorf("opening the ports below 1024: %w", werr)
		}
		if setns(host) == nil {
			goruntime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine
		done <- err
	}()
	return <-done
}

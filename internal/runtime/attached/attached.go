// Package attached keeps the instances a driver is attached to: each one's
// process (a container's, a VM's QEMU), which is not the server's child,
// watched through a pidfd (see runtime/pidfd) so that its exit is noticed
// the moment it happens, and its network namespace held open for Dial
// (see runtime/linuxns). A Set holds a driver's attached instances and
// serializes the work on each instance ID (start, stop, attaching).
//
// The lifecycle of an Instance: New, OpenProcess and OpenNetns (a process
// that is gone, or a namespace that is missing, leave it without), then
// Set.Adopt, which starts the watch. Its exit is recorded once, with what
// the pidfd tells (the exit code while the process's status can still be
// read, else -1) completed by the driver's OnExit. Set.Remove or
// Set.Close let go of it: the process runs on.
package attached

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/linuxns"
	"github.com/slipwayhq/slipway/internal/runtime/pidfd"
)

// Exit is how an instance's process ended.
type Exit struct {
	// Code is the exit code, 128+N for an exit by signal N, or -1 if it
	// cannot be known.
	Code int
	// At is when the exit was seen; zero if the process had exited
	// before it was watched (while the server was down).
	At time.Time
	// OOMKilled: the out-of-memory killer ended the instance.
	OOMKilled bool
}

// Instance is an attached instance. Its fields are set before Set.Adopt
// and not changed after.
type Instance struct {
	ID string
	// PID is the process's pid, as Status reports it.
	PID int
	// OnExit, if set, completes the exit the pidfd told with what the
	// driver knows besides (an out-of-memory kill in its cgroup, the exit
	// code its guest reported). It runs once, before Done is closed.
	OnExit func(*Exit)

	pidStart uint64          // of PID, tells a reused pid apart
	proc     *os.File        // pidfd; nil if the process was gone
	ns       *os.File        // network namespace; nil if missing
	nsConn   syscall.RawConn // of ns
	done     chan struct{}   // closed when the process has exited
	detached chan struct{}   // closed when the driver let go

	mu        sync.Mutex
	startedAt time.Time
	prepared  bool // its process waits to start the app (runtime.Preparer)
	exit      Exit
}

// New returns an instance whose process is pid, started at startedAt:
// its app's start or, if prepared, the start of its sandbox, whose
// process waits to start the app (see Started).
func New(id string, pid int, startedAt time.Time, prepared bool) *Instance {
	return &Instance{ID: id, PID: pid, startedAt: startedAt, prepared: prepared,
		done: make(chan struct{}), detached: make(chan struct{})}
}

// OpenProcess opens a pidfd of the instance's process, which started at
// start (clock ticks after boot, pidfd.Stat's Start), and reports whether
// it found it: a process of that pid that started at another time (the
// pid reused), or none, leaves the instance without a pidfd, exited, its
// exit code unknown.
func (in *Instance) OpenProcess(start uint64) (found bool, err error) {
	proc, err := pidfd.Open(in.PID, start)
	if err != nil {
		return false, err
	}
	in.pidStart, in.proc = start, proc
	return proc != nil, nil
}

// OpenNetns holds the network namespace at path open, for Dial.
func (in *Instance) OpenNetns(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening network namespace: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening network namespace: %w", err)
	}
	in.ns, in.nsConn = f, rc
	return nil
}

// Done is closed when the instance's process has exited.
func (in *Instance) Done() <-chan struct{} { return in.done }

// Exited reports whether the instance's process has exited.
func (in *Instance) Exited() bool { return !in.Status().Running }

// Prepared reports whether the instance's app has yet to be started.
func (in *Instance) Prepared() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.prepared
}

// Started records that the app of a prepared instance started at at.
func (in *Instance) Started(at time.Time) {
	in.mu.Lock()
	in.prepared, in.startedAt = false, at
	in.mu.Unlock()
}

// Status reports the instance's status.
func (in *Instance) Status() runtime.Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	st := runtime.Status{Running: true, PID: in.PID, StartedAt: in.startedAt}
	select {
	case <-in.done: // closed once the exit is recorded
		st.Running, st.ExitCode, st.ExitedAt, st.OOMKilled = false, in.exit.Code, in.exit.At, in.exit.OOMKilled
	default:
	}
	return st
}

// ErrDetached reports that the driver let go of an instance while a Wait
// was in progress (Close, or Stop that could not wait for the exit).
var ErrDetached = errors.New("driver detached from the instance")

// Wait waits for the exit of the instance's process and reports its final
// status. It fails with ErrDetached if the driver lets go of the instance
// first.
func (in *Instance) Wait(ctx context.Context) (runtime.Status, error) {
	select {
	case <-in.done:
		return in.Status(), nil
	case <-in.detached:
		return runtime.Status{}, fmt.Errorf("waiting for instance %s: %w", in.ID, ErrDetached)
	case <-ctx.Done():
		return runtime.Status{}, ctx.Err()
	}
}

// Dial connects to address (host:port) from inside the instance's network
// namespace.
func (in *Instance) Dial(ctx context.Context, address string) (net.Conn, error) {
	if in.nsConn == nil {
		return nil, fmt.Errorf("dialling instance %s: no network namespace", in.ID)
	}
	c, err := linuxns.Dial(ctx, in.nsConn, address)
	if err != nil {
		return nil, fmt.Errorf("dialling instance %s: %w", in.ID, err)
	}
	return c, nil
}

// Terminate ends the instance's process, if it has not exited: term (a
// SIGTERM, or the driver's gentler way), then kill if it has not exited
// after grace or once ctx ends, then it waits for the exit until finish
// ends. An error of term is returned only while ctx has not ended (kill
// is then not tried).
func (in *Instance) Terminate(ctx, finish context.Context, grace time.Duration, term, kill func() error) error {
	if in.Exited() {
		return nil
	}
	if err := term(); err != nil && ctx.Err() == nil {
		return err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-in.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	if in.Exited() {
		return nil
	}
	if err := kill(); err != nil {
		return err
	}
	select {
	case <-in.done:
		return nil
	case <-finish.Done():
		return fmt.Errorf("no exit after SIGKILL: %w", finish.Err())
	}
}

// Signal sends sig to the instance's process through its pidfd (never to
// a process that reused its pid). An instance without one is not
// signalled.
func (in *Instance) Signal(sig unix.Signal) error {
	if in.proc == nil {
		return nil
	}
	rc, err := in.proc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return err
	}
	return serr
}

// setExited records the exit, completed by OnExit.
func (in *Instance) setExited(e Exit) {
	if in.OnExit != nil {
		in.OnExit(&e)
	}
	in.mu.Lock()
	in.exit = e
	in.mu.Unlock()
	close(in.done)
}

// watch starts watching the instance's process. One that has already
// exited (a zombie not yet reaped by its parent, which runsc still
// reports running) or is gone is recorded exited at once, so that Status
// right after attaching tells the truth.
func (in *Instance) watch() {
	if in.proc == nil {
		in.setExited(Exit{Code: -1})
		return
	}
	rc, err := in.proc.SyscallConn()
	if err != nil {
		close(in.detached)
		return
	}
	exited := false
	rc.Control(func(fd uintptr) {
		if exited = pidfd.Exited(int(fd)); exited {
			in.setExited(Exit{Code: pidfd.ExitCode(int(fd), in.PID, in.pidStart)})
		}
	})
	if !exited {
		go in.wait(rc)
	}
}

// wait waits, parked in Go's poller, until the pidfd reports the exit.
func (in *Instance) wait(rc syscall.RawConn) {
	exited := false
	rc.Read(func(fd uintptr) bool {
		exited = pidfd.Exited(int(fd))
		return exited
	})
	if !exited { // the pidfd was closed: the driver let go
		close(in.detached)
		return
	}
	at := time.Now()
	code := -1
	rc.Control(func(fd uintptr) { code = pidfd.ExitCode(int(fd), in.PID, in.pidStart) })
	in.setExited(Exit{Code: code, At: at})
}

// Close lets go of the instance's file descriptors. The process runs on.
// A Wait in progress fails with ErrDetached (unless the exit came first).
func (in *Instance) Close() {
	if in.proc != nil {
		in.proc.Close()
	} else {
		select {
		case <-in.detached:
		default:
			close(in.detached)
		}
	}
	if in.ns != nil {
		in.ns.Close()
	}
}

// Set holds a driver's attached instances, by ID, and serializes the work
// on each ID. The zero value is an empty set. It is safe for concurrent
// use.
type Set struct {
	mu        sync.Mutex
	instances map[string]*Instance
	locks     map[string]*idLock
}

type idLock struct {
	mu   sync.Mutex
	refs int
}

// Lock serializes work on one instance ID (its start, its stop, attaching
// to it) and returns the function that unlocks it.
func (s *Set) Lock(id string) (unlock func()) {
	s.mu.Lock()
	if s.locks == nil {
		s.locks = make(map[string]*idLock)
	}
	l, ok := s.locks[id]
	if !ok {
		l = &idLock{}
		s.locks[id] = l
	}
	l.refs++
	s.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.locks, id)
		}
		s.mu.Unlock()
	}
}

// Get returns the attached instance id, or nil.
func (s *Set) Get(id string) *Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.instances[id]
}

// Adopt starts watching in's process and adds in to the set. The caller
// holds in.ID's lock, and the set has no instance of that ID.
func (s *Set) Adopt(in *Instance) {
	in.watch()
	s.mu.Lock()
	if s.instances == nil {
		s.instances = make(map[string]*Instance)
	}
	s.instances[in.ID] = in
	s.mu.Unlock()
}

// Attach returns the attached instance id, attaching to it first with
// load (under id's lock) if the set has none: after a restart of the
// server, a driver attaches to its instances on first use.
func (s *Set) Attach(id string, load func() (*Instance, error)) (*Instance, error) {
	if in := s.Get(id); in != nil {
		return in, nil
	}
	unlock := s.Lock(id)
	defer unlock()
	return s.AttachLocked(id, load)
}

// AttachLocked is Attach for a caller that holds id's lock.
func (s *Set) AttachLocked(id string, load func() (*Instance, error)) (*Instance, error) {
	if in := s.Get(id); in != nil {
		return in, nil
	}
	in, err := load()
	if err != nil {
		return nil, err
	}
	s.Adopt(in)
	return in, nil
}

// Remove lets go of the instance id, if attached, and removes it from the
// set.
func (s *Set) Remove(id string) {
	s.mu.Lock()
	in := s.instances[id]
	delete(s.instances, id)
	s.mu.Unlock()
	if in != nil {
		in.Close()
	}
}

// Close lets go of every instance, leaving the set empty. Their processes
// run on.
func (s *Set) Close() {
	s.mu.Lock()
	instances := s.instances
	s.instances = nil
	s.mu.Unlock()
	for _, in := range instances {
		in.Close()
	}
}

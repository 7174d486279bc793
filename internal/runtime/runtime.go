// Package runtime defines the contract between Slipway's control plane and
// the sandboxes that run app instances.
//
// A Driver starts an instance from an image in the embedded registry, lets
// the router dial a port inside the instance's own network namespace, and
// hands back an opaque Handle that the control plane persists before it acts
// on it. After a restart of the server, Recover re-attaches to an instance
// from that persisted handle instead of starting it again.
//
// Lifecycle of one instance, in order:
//
//	h, err := d.Start(ctx, spec)   // persist h (h.State is opaque JSON)
//	st, err := d.Wait(ctx, h)      // blocks until the process exits
//	conn, err := d.Dial(ctx, h, 3000)
//	err = d.Stop(ctx, h)           // stops the process and frees its resources
//
// and after a restart of the server: d.Recover(ctx, h) and then the same.
//
// Implementations live in sub-packages (runc, fake) and all pass the shared
// conformance suite in runtime/drivertest.
package runtime

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

// ErrNotFound reports that the instance a handle names no longer exists
// (for example it was removed while the server was down).
var ErrNotFound = errors.New("instance not found")

// ErrSnapshot reports that an instance could not resume from its
// Spec.Snapshot: the snapshot is stale (saved from another spec, image or
// runtime) or restoring it failed.
var ErrSnapshot = errors.New("snapshot unusable")

// Limits bounds what one instance may use. A zero field means "the driver's
// default", never "unlimited".
type Limits struct {
	// MemoryBytes caps the instance's memory; it gets no swap where the
	// host can cap swap. If zero, 512 MiB.
	MemoryBytes int64
	CPUMillis   int64 // Thousandths of a CPU. If zero, 1000 (one CPU).
	Pids        int64 // If zero, 512.
	// DiskBytes caps the instance's writable layer (what it writes over
	// its image); writes beyond fail with "no space left on device". If
	// zero, 256 MiB.
	DiskBytes int64
}

// Spec describes an instance to start.
type Spec struct {
	// ID names the instance; it is lowercase, DNS-label safe and unique
	// among live instances of a driver.
	ID string
	// Image is a reference to the image, preferably by digest
	// (host/name@sha256:...), in the embedded registry.
	Image string
	// Command, if set, replaces the image's entrypoint and command.
	Command []string
	// Env holds KEY=VALUE pairs added to (and overriding) the image's
	// environment. The driver always sets PORT to the value of Port.
	Env []string
	// Port is the port the app listens on inside its sandbox. If zero, 3000.
	Port int
	// Group is the tenant the instance belongs to (a project id): its
	// Network applies that group's egress policy. May be empty.
	Group string
	// Limits bounds memory, CPU and processes.
	Limits Limits
	// StdoutPath and StderrPath are files (created or appended to) that
	// receive the app's output. They outlive the server process.
	StdoutPath string
	StderrPath string
	// Snapshot, if set, is a directory that the driver's Snapshot filled
	// from a running instance of the same deployment: the instance
	// resumes the app saved there (its memory, its files) instead of
	// starting it. A snapshot that does not match the spec, the image or
	// the runtime any more fails Start or Prepare, and one that does not
	// resume fails Start or StartPrepared, with an error wrapping
	// ErrSnapshot: the caller then discards it and starts without. A
	// driver that is no Snapshotter ignores it.
	Snapshot string
	// RestoreAhead, with Snapshot, has Prepare restore the snapshot too
	// and leave the app paused, so that StartPrepared only resumes it:
	// the prepared instance then holds the app's memory while it waits.
	// Without it the snapshot is restored by StartPrepared. Start
	// ignores it.
	RestoreAhead bool
}

// Network gives an instance's network namespace its way out: an address
// on a bridge, a default route, and the egress policy of its group. A
// driver that runs instances in network namespaces of the host calls
// Attach once the namespace exists, before the app starts, and Detach
// when it removes the namespace. Both are idempotent for an id. A driver
// that wires namespaces ahead attaches each under an id of its own with
// no group, and Claims it for the instance that gets it.
type Network interface {
	Attach(ctx context.Context, id, group, nsPath string) (Lease, error)
	Claim(ctx context.Context, from, id, group string) (Lease, error)
	Detach(ctx context.Context, id string) error
}

// Lease is an instance's place on its Network.
type Lease struct {
	Addr    netip.Addr   // the instance's address
	Gateway netip.Addr   // its default route
	DNS     []netip.Addr // the resolvers its resolv.conf names
}

// Handle identifies a started instance. State is opaque to everything but
// the driver that produced it and is persisted by the control plane.
type Handle struct {
	ID     string `json:"id"`
	Driver string `json:"driver"`
	State  []byte `json:"state"`
}

// Status is a point-in-time view of an instance.
type Status struct {
	Running   bool
	PID       int
	StartedAt time.Time
	ExitCode  int       // Valid when !Running.
	ExitedAt  time.Time // Valid when !Running; zero if unknown.
	// OOMKilled, valid when !Running, reports that the kernel's
	// out-of-memory killer killed a process of the instance: it reached
	// its memory limit (the exit code is then usually 137, SIGKILL).
	OOMKilled bool
}

// Driver runs instances in sandboxes.
type Driver interface {
	// Name returns the driver's name as stored in Handle.Driver.
	Name() string
	// Start creates and starts an instance. It returns once the process is
	// running, not once it is healthy.
	Start(ctx context.Context, spec Spec) (*Handle, error)
	// Inspect reports the instance's status.
	Inspect(ctx context.Context, h *Handle) (Status, error)
	// Wait blocks until the instance's process exits (or ctx ends) and
	// reports its final status. It notices the exit at once, not by polling
	// at long intervals.
	Wait(ctx context.Context, h *Handle) (Status, error)
	// Dial opens a TCP connection to port inside the instance's sandbox.
	Dial(ctx context.Context, h *Handle, port int) (net.Conn, error)
	// Stop stops the instance (SIGTERM, then SIGKILL after a grace period)
	// and removes everything Start created except the log files. Stopping
	// an instance that is already gone is not an error.
	Stop(ctx context.Context, h *Handle) error
	// Recover re-attaches to an instance after a restart of the server. It
	// returns ErrNotFound when the instance no longer exists; an instance
	// whose process has exited is recovered and reported by Inspect.
	Recover(ctx context.Context, h *Handle) error
}

// Preparer is implemented by drivers that can prepare an instance ahead
// of its start, so that starting it later costs little more than the
// app's own start (a wake from zero):
//
//	h, err := p.Prepare(ctx, spec) // persist h; the app does not run yet
//	h, err = p.StartPrepared(ctx, h) // persist the new h; as after Start
//
// A prepared instance holds everything Start would have made (filesystem,
// network namespace and lease, cgroup, the sandbox's own process waiting)
// and counts against its limits. Stop discards it, as it stops a started
// one, without waiting a grace period; Recover re-attaches to it after a
// restart of the server.
type Preparer interface {
	// Prepare does all that Start does except running the app. If it
	// fails it leaves nothing behind but the log files.
	Prepare(ctx context.Context, spec Spec) (*Handle, error)
	// StartPrepared runs the app of an instance Prepare made and returns
	// its handle, which replaces h. It fails if the instance is gone or
	// was started already; the caller then stops it and starts afresh.
	StartPrepared(ctx context.Context, h *Handle) (*Handle, error)
}

// Snapshotter is implemented by drivers that can save a running instance
// and resume later instances of the same deployment from that save (see
// Spec.Snapshot) instead of starting their app: a wake then costs the
// restore, not the app's own start.
//
//	err := s.Snapshot(ctx, h, dir)    // h keeps running
//	spec.Snapshot = dir
//	h2, err := d.Start(ctx, spec)     // or Prepare, then StartPrepared
//
// A restored instance has the saved instance's memory and written files;
// its connections at the time of the save are gone (listening sockets are
// listening again), and it keeps the saved environment, which a snapshot
// is valid for only while the spec's is the same.
type Snapshotter interface {
	// Snapshot saves running instance h into dir (made, or replaced
	// whole), pausing h while it does. It returns errors.ErrUnsupported
	// when the driver's runtime cannot save instances; dir is then not
	// made.
	Snapshot(ctx context.Context, h *Handle, dir string) error
}

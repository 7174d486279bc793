package runc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/attached"
)

// Prepare implements runtime.Preparer: it does all that Start does — the
// image unpacked, the overlay filesystem mounted, the network namespace
// claimed and wired, the cgroup made with its limits — and `runc create`,
// which leaves the container's process in runc's init, inside every
// namespace and the cgroup, waiting to exec the app. StartPrepared lets
// it. A prepared instance costs the memory of that waiting process and of
// the kernel objects (see README), and none of the app's.
func (d *Driver) Prepare(ctx context.Context, spec runtime.Spec) (*runtime.Handle, error) {
	return d.start(ctx, spec, true)
}

// StartPrepared implements runtime.Preparer: what `runc start` does (see
// startByFifo), after which the instance is as Start leaves one; or, for
// an instance made from a snapshot (Spec.Snapshot), `runsc restore` into
// its sandbox. It also works on an instance that a previous server
// prepared (after Recover, or attaching on first use).
func (d *Driver) StartPrepared(ctx context.Context, h *runtime.Handle) (*runtime.Handle, error) {
	if !idRE.MatchString(h.ID) {
		return nil, fmt.Errorf("starting prepared instance %q: %w", h.ID, runtime.ErrNotFound)
	}
	unlock := d.instances.Lock(h.ID)
	defer unlock()
	return d.startPreparedLocked(ctx, h)
}

// startPreparedLocked is StartPrepared for a caller that holds h.ID's lock.
func (d *Driver) startPreparedLocked(ctx context.Context, h *runtime.Handle) (*runtime.Handle, error) {
	in, err := d.attachLocked(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("starting prepared instance %s: %w", h.ID, err)
	}
	if !in.Prepared() {
		return nil, fmt.Errorf("starting prepared instance %s: it was started already", h.ID)
	}
	if in.Exited() {
		return nil, fmt.Errorf("starting prepared instance %s: its sandbox's process exited", h.ID)
	}
	var st state
	if len(h.State) == 0 || json.Unmarshal(h.State, &st) != nil {
		if st, err = readState(d.bundleDir(h.ID)); err != nil {
			return nil, fmt.Errorf("starting prepared instance %s: %w", h.ID, err)
		}
	}
	switch {
	case st.Restored:
		err = d.runtimeCmd(ctx, "resume", h.ID)
	case st.Snapshot != "":
		err = d.runtimeRestore(ctx, h.ID, st.Snapshot)
	default:
		// What `runc start` does, without the cost of starting runc
		// (several milliseconds on a quiet machine, tens on a busy one):
		// see startByFifo.
		err = d.startByFifo(ctx, in)
		if errors.Is(err, errNoFifo) {
			err = d.runcStart(ctx, h.ID)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("starting prepared instance %s: %w", h.ID, err)
	}
	now := time.Now()
	in.Started(now)
	st.Prepared, st.Restored, st.StartedAt = false, false, now
	started, err := d.writeState(h.ID, st)
	if err != nil {
		return nil, fmt.Errorf("starting prepared instance %s: %w", h.ID, err)
	}
	return started, nil
}

// restoreAheadLocked restores the snapshot of prepared instance h (made
// from a Spec with Snapshot and RestoreAhead) into its sandbox and pauses
// the app at once: `runsc restore`, then `runsc pause`. The app runs for
// the moment between the two, in its own network namespace, where nothing
// routes to it yet; its memory goes on loading while it is paused.
// StartPrepared then only resumes it. The caller holds h.ID's lock.
func (d *Driver) restoreAheadLocked(ctx context.Context, h *runtime.Handle) (*runtime.Handle, error) {
	var st state
	if err := json.Unmarshal(h.State, &st); err != nil {
		return nil, fmt.Errorf("restoring instance %s ahead: %w", h.ID, err)
	}
	if err := d.runtimeRestore(ctx, h.ID, st.Snapshot); err != nil {
		return nil, fmt.Errorf("restoring instance %s ahead: %w", h.ID, err)
	}
	if err := d.runtimeCmd(ctx, "pause", h.ID); err != nil {
		return nil, fmt.Errorf("restoring instance %s ahead: %w", h.ID, err)
	}
	st.Restored = true
	restored, err := d.writeState(h.ID, st)
	if err != nil {
		return nil, fmt.Errorf("restoring instance %s ahead: %w", h.ID, err)
	}
	return restored, nil
}

// writeState records st as instance id's state.json (unless its bundle is
// gone) and returns the handle that carries it.
func (d *Driver) writeState(id string, st state) (*runtime.Handle, error) {
	raw, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(d.bundleDir(id), "state.json"), raw, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return &runtime.Handle{ID: id, Driver: d.Name(), State: raw}, nil
}

var _ runtime.Preparer = (*Driver)(nil)

// execFifo is the FIFO in runc's state directory of a created container
// that its process (runc's init, waiting) opens for writing; reading it
// lets the process exec the app, and removing it marks the container
// running (runc 1.0 to 1.2 alike: libcontainer's exec.fifo).
const execFifo = "exec.fifo"

// startByFifo does what `runc start` does for a created container, without
// starting a runc process: it reads the container's exec FIFO (the waiting
// process writes one byte and execs the app, which closes its end) and
// removes it. The blocking open of the FIFO is undone by opening its
// writing end ourselves if the waiting process exits or ctx ends. It
// returns errNoFifo when the FIFO is not where runc keeps it.
func (d *Driver) startByFifo(ctx context.Context, in *attached.Instance) error {
	path := filepath.Join(d.runcRoot(), in.ID, execFifo)
	if fi, err := os.Stat(path); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return errNoFifo
	}
	type opened struct {
		f   *os.File
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		ch <- opened{f, err}
	}()
	var o opened
	select {
	case o = <-ch:
	case <-in.Done():
	case <-ctx.Done():
	}
	if o.f == nil && o.err == nil { // unblock the open, and read nothing
		if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		o = <-ch
	}
	if o.err != nil {
		return fmt.Errorf("opening the container's exec FIFO: %w", o.err)
	}
	defer o.f.Close()
	b, err := io.ReadAll(o.f)
	if err != nil {
		return fmt.Errorf("reading the container's exec FIFO: %w", err)
	}
	if len(b) == 0 {
		return errors.New("the container's process did not start the app")
	}
	return os.Remove(path)
}

var errNoFifo = errors.New("no exec FIFO")

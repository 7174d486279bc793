package runc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
)

// Snapshots (gVisor only): runtime.Snapshotter and Spec.Snapshot.
//
// Snapshot pauses the instance (`runsc pause`), copies its writable
// layer (the overlay's upper directory: what the app wrote over its
// image, whiteouts included) to DIR/upper, saves the Sentry's state —
// the app's memory, its processes, its open files, the kernel's — with
// `runsc checkpoint --leave-running` to DIR/image, and resumes it. The
// two are taken at the same paused moment, so the files the saved kernel
// knows are the files saved beside it. DIR/snapshot.json records the key
// of what the save is valid for (snapshotKey).
//
// An instance started from a snapshot gets a fresh writable layer filled
// with DIR/upper before its overlay is mounted, its sandbox made with
// `runsc create` as for any prepared instance, and then, instead of
// `runsc start`, `runsc restore --background --image-path DIR/image` into
// that sandbox: the app runs again once the kernel's state is loaded,
// while its memory (tens of megabytes) goes on loading behind it (a page
// the app touches before then is waited for; this needs the save
// uncompressed, as --compression=none makes it). If that loading fails
// later, runsc kills the sandbox: the wake's health check fails and the
// app is started cold. Listening sockets are re-created in the new instance's network
// namespace (gVisor's host network re-binds them at restore); the
// connections of the saved instance are reset.
//
// Passthrough networking (--network=host) is what makes this work in
// a namespace of Slipway's: with gVisor's own netstack the restored
// sandbox found no interface to bind to.

// snapshotFormat changes whenever what a snapshot holds, or how it is
// restored, does: snapshots of another format are stale.
const snapshotFormat = "slipway-gvisor-snapshot/1"

// snapshotMeta is DIR/snapshot.json.
type snapshotMeta struct {
	Key      string    `json:"key"`      // snapshotKey of the instance saved
	Instance string    `json:"instance"` // its ID
	SavedAt  time.Time `json:"savedAt"`
}

// Snapshot implements runtime.Snapshotter, with gVisor only (see above).
func (d *Driver) Snapshot(ctx context.Context, h *runtime.Handle, dir string) error {
	if !d.gvisor() {
		return fmt.Errorf("snapshots need gVisor's runsc, not %s: %w", d.tool(), errors.ErrUnsupported)
	}
	if !idRE.MatchString(h.ID) {
		return fmt.Errorf("saving instance %q: %w", h.ID, runtime.ErrNotFound)
	}
	start := time.Now()
	unlock := d.instances.Lock(h.ID)
	defer unlock()
	in, err := d.attachLocked(ctx, h)
	if err != nil {
		return fmt.Errorf("saving instance %s: %w", h.ID, err)
	}
	if in.Prepared() || in.Exited() {
		return fmt.Errorf("saving instance %s: it is not running", h.ID)
	}
	bundle := d.bundleDir(h.ID)
	st, err := readState(bundle)
	if err != nil {
		return fmt.Errorf("saving instance %s: %w", h.ID, err)
	}
	config, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return fmt.Errorf("saving instance %s: %w", h.ID, err)
	}
	key, err := d.snapshotKey(h.ID, st.Digest, config)
	if err != nil {
		return fmt.Errorf("saving instance %s: %w", h.ID, err)
	}
	tmp := dir + ".saving"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // gone once renamed
	if err := d.runtimeCmd(ctx, "pause", h.ID); err != nil {
		return fmt.Errorf("saving instance %s: %w", h.ID, err)
	}
	err = copyTree(filepath.Join(bundle, "layer", "upper"), filepath.Join(tmp, "upper"))
	if err == nil {
		err = d.runtimeCmd(ctx, "checkpoint", "--leave-running", "--compression=none", "--image-path", filepath.Join(tmp, "image"), h.ID)
	}
	// Resumed whatever happened, even if ctx has ended.
	finish, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if rerr := d.runtimeCmd(finish, "resume", h.ID); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("saving instance %s: %w", h.ID, err)
	}
	meta, _ := json.Marshal(snapshotMeta{Key: key, Instance: h.ID, SavedAt: start})
	if err := os.WriteFile(filepath.Join(tmp, "snapshot.json"), meta, 0o600); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

var _ runtime.Snapshotter = (*Driver)(nil)

// readSnapshot returns the key of the snapshot in dir, wrapping
// runtime.ErrSnapshot if there is none.
func readSnapshot(dir string) (snapshotMeta, error) {
	var m snapshotMeta
	b, err := os.ReadFile(filepath.Join(dir, "snapshot.json"))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		return m, fmt.Errorf("%w: reading %s: %v", runtime.ErrSnapshot, dir, err)
	}
	return m, nil
}

// snapshotKey is what a snapshot of instance id is valid for: the
// instance's OCI spec with its ID taken out (the same command,
// environment, user, limits, mounts and seccomp filter; the saved
// environment is the one the restored app keeps), its image's digest,
// the runtime's binary (its identity on disk: a new runsc is a new
// key) and flags, and snapshotFormat.
func (d *Driver) snapshotKey(id, digest string, config []byte) (string, error) {
	fi, err := os.Stat(d.runcPath)
	if err != nil {
		return "", err
	}
	var ino uint64
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s %d %d %d\n%s\n%s\n", snapshotFormat, d.runcPath, ino, fi.Size(), fi.ModTime().UnixNano(),
		strings.Join(d.args, " "), digest)
	h.Write(bytes.ReplaceAll(config, []byte(id), []byte("\x00id\x00")))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// restoreLayer fills a new instance's writable layer (upper, not yet
// under an overlay) from the snapshot in dir, after checking that the
// snapshot has a key (create checks that it is this instance's).
func restoreLayer(dir, upper string) (snapshotMeta, error) {
	m, err := readSnapshot(dir)
	if err != nil {
		return m, err
	}
	if err := copyTree(filepath.Join(dir, "upper"), upper); err != nil {
		return m, fmt.Errorf("%w: copying its files: %v", runtime.ErrSnapshot, err)
	}
	return m, nil
}

// runtimeRestore resumes the app saved in the snapshot dir in the sandbox
// of created instance id (`runsc restore` into it).
func (d *Driver) runtimeRestore(ctx context.Context, id, dir string) error {
	err := d.runtimeCmd(ctx, "restore", "--detach", "--background", "--image-path", filepath.Join(dir, "image"), "--bundle", d.bundleDir(id), id)
	if err != nil {
		return fmt.Errorf("%w: %v", runtime.ErrSnapshot, err)
	}
	return nil
}

// copyTree copies the directory src into dst (made if missing) with
// everything an overlay's upper directory holds: owners, modes, times,
// extended attributes (trusted.overlay.opaque), symbolic links and the
// character devices that are whiteouts.
func copyTree(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("cp", "-a", "--", src+"/.", dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("copying %s: %w: %s", src, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// readState reads an instance's state.json from its bundle.
func readState(bundle string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(bundle, "state.json"))
	if err == nil {
		err = json.Unmarshal(b, &st)
	}
	if err != nil {
		return st, fmt.Errorf("reading its state: %w", err)
	}
	return st, nil
}

// Package runc runs app instances as OCI containers with runc, or with
// gVisor's runsc behind the same code (Config.Runtime, see gvisor.go).
//
// Each image is pulled from its registry and unpacked once per digest into
// Root/images/<digest>/rootfs, by an oci.Cache. Each instance gets an OCI
// bundle in RunDir/<id>: an overlay filesystem whose lower layer is
// the unpacked image (never written) and whose upper layer is the
// instance's own, a config.json, and a state file. It runs in a user
// namespace of its own (see userns.go): the image's root is an
// unprivileged user of the host, and the image's files are owned on disk
// by the host IDs its IDs map to. It runs in its own
// network namespace (a named one, /run/netns/slipway-<id>, so that
// `ip netns exec slipway-<id> ...` works for debugging) that has only a
// loopback interface, and the router reaches the app with Driver.Dial. Each
// instance has its own PID, IPC, UTS and mount namespaces, a cgroup
// (/slipway/<id>) limiting memory, CPU and processes, Docker's default
// capabilities minus NET_RAW, no new privileges, Docker's masked and
// read-only paths, a root filesystem mounted nosuid,nodev, and a seccomp
// filter that allows a list of system calls (see seccompProfile) and
// refuses the rest, io_uring, ptrace and the 32-bit ABIs among them.
//
// The app's stdout and stderr are the files named in the spec, held open by
// the app itself, so logs keep flowing while the server is down. The
// app's process is not the server's child (runc runs it detached); the
// driver watches it with a pidfd, which notices an exit at once, and reads
// the exit code from the process's zombie or, on Linux 6.15 and later, from
// the pidfd. An exit code that cannot be known (the process exited while
// the server was down) is reported as -1. An exit by signal N is 128+N.
//
// The driver needs root, runc (1.1 works, with cgroups v1, v2 or hybrid),
// overlayfs, and Linux 5.10 or later (pidfd_open with PIDFD_NONBLOCK).
package runc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/attached"
	"github.com/slipwayhq/slipway/internal/runtime/linuxns"
	"github.com/slipwayhq/slipway/internal/runtime/oci"
	"github.com/slipwayhq/slipway/internal/runtime/pidfd"
)

// Name is the driver's name, as stored in Handle.Driver, with the runc
// runtime; with gVisor's it is GVisor.
const Name = "runc"

// Config configures a Driver. The zero value works.
type Config struct {
	// Root holds unpacked images (Root/images) and runc's state
	// (Root/runc); instance bundles are in RunDir. If empty,
	// /var/lib/slipway/runtime. Its path must not hold commas, colons or
	// white space (they would break overlay mount options).
	Root string
	// Runtime is the OCI runtime that runs the instances: Runc (if
	// empty) or GVisor (gVisor's runsc, see gvisor.go). It is also the
	// driver's Name.
	Runtime string
	// RuncPath is the runtime's binary. If empty, "runc" (for GVisor,
	// "runsc") is looked up in PATH.
	RuncPath string
	// RemoteOptions are passed to go-containerregistry's remote.Image when
	// pulling an image (authentication, transport). If empty, images are
	// pulled anonymously. References are parsed with name.Insecure: plain
	// HTTP is allowed, as the embedded registry on loopback speaks it.
	RemoteOptions []remote.Option
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL. If
	// zero, 5 seconds.
	StopGrace time.Duration
	// NetnsDir holds the instances' named network namespaces. If empty,
	// /run/netns, where ip-netns(8) finds them.
	NetnsDir string
	// CgroupParent is the cgroup under which each instance gets one named
	// after its ID. If empty, /slipway.
	CgroupParent string
	// Network, if set, wires each instance's network namespace (an
	// address, a default route, egress policy) and its resolv.conf names
	// the lease's resolvers. If nil, instances have loopback only.
	Network runtime.Network
	// NetworkPool is how many network namespaces are kept wired ahead
	// for starts and wakes (with a Network), so that those do no network
	// setup of their own while one is ready. If zero, none.
	NetworkPool int
	// IDs is the range of host user and group IDs that the IDs
	// 0–(IDs.Size-1) of every instance map to, each instance in a user
	// namespace of its own. If zero, DefaultIDs().
	IDs oci.IDMap
	// NoUserNS runs instances in the host's user namespace, as the IDs
	// their image names: an image without USER runs as the host's root.
	// For hosts where user namespaces cannot work; IDs is then unused.
	NoUserNS bool
	// RunDir holds the instances' bundles, RunDir/<id>. The instances'
	// root, an unprivileged host user, must be able to reach it (Root
	// may be under a data directory that only the host's root enters).
	// Like Root, its path must not hold commas, colons or white space. If
	// empty, DefaultRunDir(Root).
	RunDir string
}

// DefaultRunDir is where a driver on root keeps its instances' bundles if
// Config.RunDir is empty: a directory of /run/slipway named after root (a
// hash of its absolute path), so that drivers on different roots keep
// apart.
func DefaultRunDir(root string) string {
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	h := sha256.Sum256([]byte(root))
	return filepath.Join("/run/slipway", "runc-"+hex.EncodeToString(h[:6]))
}

// Driver runs instances with runc. It is safe for concurrent use.
type Driver struct {
	cfg       Config
	runcPath  string
	args      []string // the runtime's global flags, before each command
	swapLimit bool
	ids       oci.IDMap  // the identity without a user namespace
	images    *oci.Cache // Root/images

	pool      *netnsPool   // nil without Network or NetworkPool
	instances attached.Set // attached instances
}

// New returns a driver. It creates Root if needed and fails if runc cannot
// be found.
func New(cfg Config) (*Driver, error) {
	if cfg.Root == "" {
		cfg.Root = "/var/lib/slipway/runtime"
	}
	var args []string
	switch cfg.Runtime {
	case "", Name:
		cfg.Runtime = Name
		if cfg.RuncPath == "" {
			cfg.RuncPath = "runc"
		}
	case GVisor:
		if cfg.RuncPath == "" {
			cfg.RuncPath = "runsc"
		}
		args = gvisorArgs
	default:
		return nil, fmt.Errorf("runc driver: unknown runtime %q (want %q or %q)", cfg.Runtime, Name, GVisor)
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 5 * time.Second
	}
	if cfg.NetnsDir == "" {
		cfg.NetnsDir = "/run/netns"
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "/slipway"
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("runc driver: %w", err)
	}
	if strings.ContainsAny(root, ",: \t\n") {
		return nil, fmt.Errorf("runc driver: root %q holds a comma, colon or space", root)
	}
	cfg.Root = root
	if cfg.RunDir == "" {
		cfg.RunDir = DefaultRunDir(root)
	}
	if cfg.RunDir, err = filepath.Abs(cfg.RunDir); err != nil {
		return nil, fmt.Errorf("runc driver: %w", err)
	}
	if strings.ContainsAny(cfg.RunDir, ",: \t\n") {
		return nil, fmt.Errorf("runc driver: run directory %q holds a comma, colon or space", cfg.RunDir)
	}
	var ids oci.IDMap
	if !cfg.NoUserNS {
		if ids = cfg.IDs; ids.Identity() {
			if ids, err = DefaultIDs(); err != nil {
				return nil, fmt.Errorf("runc driver: %w", err)
			}
		} else if err := checkIDs(ids); err != nil {
			return nil, fmt.Errorf("runc driver: ID range %s: %w", ids, err)
		}
	}
	runcPath, err := exec.LookPath(cfg.RuncPath)
	if err != nil {
		return nil, fmt.Errorf("%s driver: finding %s: %w", cfg.Runtime, cfg.RuncPath, err)
	}
	images, err := oci.NewMappedCache(filepath.Join(root, "images"), ids, cfg.RemoteOptions...)
	if err != nil {
		return nil, fmt.Errorf("runc driver: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, "runc"), 0o711); err != nil {
		return nil, fmt.Errorf("runc driver: %w", err)
	}
	// Searchable by all: the instances' root reaches its bundle through it.
	if err := os.MkdirAll(cfg.RunDir, 0o711); err != nil {
		return nil, fmt.Errorf("runc driver: %w", err)
	}
	d := &Driver{
		cfg:       cfg,
		runcPath:  runcPath,
		args:      args,
		swapLimit: swapAccounting(cgroupRoot),
		ids:       ids,
		images:    images,
	}
	if cfg.Network != nil && cfg.NetworkPool > 0 {
		d.pool = newNetnsPool(cfg.Network, cfg.NetworkPool)
	}
	return d, nil
}

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// swapAccounting reports whether the cgroups mounted at root can cap an
// instance's swap, as runc would use them: cgroup v1's memory controller
// with swap accounting (memory.memsw.*), or cgroup v2 mounted on root
// itself (unified mode; runc uses v1 in hybrid mode) whose cgroups have
// memory.swap.max. Without it only memory is capped, and runc would fail
// to set what the kernel does not have.
func swapAccounting(root string) bool {
	if _, err := os.Stat(filepath.Join(root, "memory", "memory.memsw.limit_in_bytes")); err == nil {
		return true
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		return false
	}
	// The root cgroup has no memory.swap.max; any other does.
	m, _ := filepath.Glob(filepath.Join(root, "*", "memory.swap.max"))
	return len(m) > 0
}

// oomKills returns how many processes of cgroup path (relative to the
// hierarchies at root) the out-of-memory killer has killed: the oom_kill
// counter of memory.oom_control (cgroup v1) or memory.events (v2).
func oomKills(root, path string) (int, bool) {
	for _, f := range []string{
		filepath.Join(root, "memory", path, "memory.oom_control"),
		filepath.Join(root, path, "memory.events"),
	} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "oom_kill "); ok {
				n, err := strconv.Atoi(v)
				return n, err == nil
			}
		}
	}
	return 0, false
}

func (d *Driver) runcRoot() string             { return filepath.Join(d.cfg.Root, "runc") }
func (d *Driver) bundleDir(id string) string   { return filepath.Join(d.cfg.RunDir, id) }
func (d *Driver) netnsPath(id string) string   { return filepath.Join(d.cfg.NetnsDir, "slipway-"+id) }
func (d *Driver) cgroupsPath(id string) string { return filepath.Join(d.cfg.CgroupParent, id) }

// legacyBundleDir is where Slipway kept bundles before RunDir: Stop still
// removes what an instance started then left there.
func (d *Driver) legacyBundleDir(id string) string { return filepath.Join(d.cfg.Root, "instances", id) }

// UserNS returns the range of host IDs that the instances' IDs map to,
// and false if instances run in the host's user namespace.
func (d *Driver) UserNS() (oci.IDMap, bool) { return d.ids, !d.ids.Identity() }

// state is Handle.State, also kept as RunDir/<id>/state.json.
type state struct {
	Bundle    string    `json:"bundle"`
	Netns     string    `json:"netns"`
	PID       int       `json:"pid"`
	PIDStart  uint64    `json:"pidStart"` // clock ticks after boot; tells a reused PID apart
	Image     string    `json:"image"`
	Digest    string    `json:"digest"`
	Port      int       `json:"port"`
	StartedAt time.Time `json:"startedAt"`
	// Prepared: made by Prepare, its app not started yet (runc's
	// container is "created", its process waiting in runc's init).
	Prepared bool `json:"prepared,omitempty"`
	// Snapshot is the snapshot its app resumes from (Spec.Snapshot,
	// gVisor only) instead of starting: its writable layer holds the
	// snapshot's files; StartPrepared restores the rest.
	Snapshot string `json:"snapshot,omitempty"`
	// Restored: a prepared instance whose app Prepare restored from
	// Snapshot and paused (Spec.RestoreAhead); StartPrepared resumes it.
	Restored bool `json:"restored,omitempty"`
}

// newInstance returns an instance to attach to (see attached.New). Its
// cgroup is still there when its exit is recorded (the driver removes it
// only once it has seen the exit), so its count of out-of-memory kills
// tells whether one ended the instance.
func (d *Driver) newInstance(id string, pid int, startedAt time.Time, prepared bool) *attached.Instance {
	in := attached.New(id, pid, startedAt, prepared)
	cgroup := d.cgroupsPath(id)
	in.OnExit = func(e *attached.Exit) {
		n, _ := oomKills(cgroupRoot, cgroup)
		e.OOMKilled = n > 0
	}
	return in
}

var idRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Name implements runtime.Driver.
func (d *Driver) Name() string { return d.cfg.Runtime }

// gvisor reports whether the driver runs instances with gVisor's runsc.
func (d *Driver) gvisor() bool { return d.cfg.Runtime == GVisor }

// Start implements runtime.Driver. It pulls and unpacks the image if this
// digest has not been unpacked yet, builds the instance's bundle, network
// namespace and cgroup, and runs the process. It returns once the process
// runs. If Start fails it leaves nothing behind but the log files.
func (d *Driver) Start(ctx context.Context, spec runtime.Spec) (*runtime.Handle, error) {
	return d.start(ctx, spec, false)
}

// start is Start, or with prepare Prepare (see prepare.go).
func (d *Driver) start(ctx context.Context, spec runtime.Spec, prepare bool) (*runtime.Handle, error) {
	if !idRE.MatchString(spec.ID) {
		return nil, fmt.Errorf("starting instance: bad ID %q (want a lowercase DNS label)", spec.ID)
	}
	if spec.Port == 0 {
		spec.Port = 3000
	}
	unlock := d.instances.Lock(spec.ID)
	defer unlock()
	for _, b := range []string{d.bundleDir(spec.ID), d.legacyBundleDir(spec.ID)} {
		if _, err := os.Lstat(b); err == nil {
			return nil, fmt.Errorf("starting instance %s: it already exists", spec.ID)
		}
	}
	img, release, err := d.images.Get(ctx, spec.Image)
	if err != nil {
		return nil, fmt.Errorf("starting instance %s: %w", spec.ID, err)
	}
	if !d.gvisor() {
		spec.Snapshot = "" // runc cannot resume one
	}
	// An instance that resumes a snapshot is made as a prepared one, and
	// Start then restores it as StartPrepared does.
	h, err := d.create(ctx, spec, img, prepare || spec.Snapshot != "")
	release()
	if err == nil && spec.Snapshot != "" {
		if !prepare {
			h, err = d.startPreparedLocked(ctx, h)
		} else if spec.RestoreAhead {
			h, err = d.restoreAheadLocked(ctx, h)
		}
	}
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		d.teardown(cctx, spec.ID)
		return nil, fmt.Errorf("starting instance %s: %w", spec.ID, err)
	}
	return h, nil
}

func (d *Driver) create(ctx context.Context, spec runtime.Spec, img *oci.Unpacked, prepare bool) (*runtime.Handle, error) {
	id, bundle := spec.ID, d.bundleDir(spec.ID)
	// Searchable by all until the container runs: runc's init mounts the
	// root filesystem and the files of /etc and /sys from here as the
	// instance's root (an unprivileged host user); then 0700.
	if err := os.MkdirAll(d.cfg.RunDir, 0o711); err != nil { // Close may have removed it
		return nil, err
	}
	if err := os.Mkdir(bundle, 0o711); err != nil {
		return nil, err
	}
	// The network namespace is made and wired while the filesystem is
	// mounted and the spec prepared: neither needs the other until the
	// lease is written into /etc/hosts. It is always joined before
	// create returns, so a teardown after an error finds it finished.
	netns := d.netnsPath(id)
	var lease *runtime.Lease
	var netErr error
	netDone := make(chan struct{})
	go func() {
		defer close(netDone)
		lease, netErr = d.wireNetns(ctx, id, spec.Group, netns)
	}()
	defer func() { <-netDone }()
	// The writable layer lives on a tmpfs of its own, so an app that fills
	// its disk hits its own quota (and its memory limit, which tmpfs pages
	// are charged to), never the host's disk.
	rootfs, layer := filepath.Join(bundle, "rootfs"), filepath.Join(bundle, "layer")
	for _, dir := range []string{rootfs, layer} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
	}
	disk := spec.Limits.DiskBytes
	if disk <= 0 {
		disk = DefaultDiskBytes
	}
	if err := unix.Mount("tmpfs", layer, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", disk)); err != nil {
		return nil, fmt.Errorf("mounting the writable layer: %w", err)
	}
	for _, dir := range []string{filepath.Join(layer, "upper"), filepath.Join(layer, "work")} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
	}
	// The instance's / is the upper layer's directory: it gets the owner
	// and mode of the image's.
	var top unix.Stat_t
	if err := unix.Stat(img.Rootfs, &top); err != nil {
		return nil, err
	}
	if err := os.Chown(filepath.Join(layer, "upper"), int(top.Uid), int(top.Gid)); err != nil {
		return nil, err
	}
	if err := unix.Chmod(filepath.Join(layer, "upper"), top.Mode&0o7777); err != nil {
		return nil, err
	}
	// A snapshot's files go in before the overlay is mounted over them.
	var snap snapshotMeta
	if spec.Snapshot != "" {
		var err error
		if snap, err = restoreLayer(spec.Snapshot, filepath.Join(layer, "upper")); err != nil {
			return nil, err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", img.Rootfs, layer, layer)
	// nosuid and nodev: the image holds no setuid file or device node
	// (oci.Unpack leaves them out), and whatever the app writes over it
	// grants nothing either; runc's bind mount of the root keeps the flags.
	if err := unix.Mount("overlay", rootfs, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return nil, fmt.Errorf("mounting overlay filesystem: %w", err)
	}
	cfg := img.Config.Config
	args, err := oci.Args(spec.Command, cfg)
	if err != nil {
		return nil, err
	}
	usr, err := oci.ResolveUser(img.Rootfs, cfg.User)
	if err != nil {
		return nil, err
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	<-netDone
	if netErr != nil {
		return nil, netErr
	}
	var sysfs string
	if !d.ids.Identity() {
		// In its own user namespace, the instance owns no capability
		// over its network namespace (made ahead, in the host's): runc
		// could not mount a sysfs of it, and root could not bind port 80.
		// The driver mounts one here, for runc to bind read-only on
		// /sys (the same view as a sysfs of the instance's own: its
		// interfaces, not the host's, nothing mounted under it), and
		// opens the ports below 1024 to every user of the namespace.
		sysfs = filepath.Join(bundle, "sys")
		if err := os.Mkdir(sysfs, 0o755); err != nil {
			return nil, err
		}
		if err := prepareUserNetns(netns, sysfs); err != nil {
			return nil, err
		}
	}
	p := specParams{
		id:           id,
		rootfs:       rootfs,
		netns:        netns,
		cgroupsPath:  d.cgroupsPath(id),
		args:         args,
		env:          oci.Env(cfg.Env, spec.Env, spec.Port, id, usr.Home),
		cwd:          cwd,
		user:         usr,
		limits:       spec.Limits,
		swapLimit:    d.swapLimit,
		maxOpenFiles: openFilesLimit(),
		ids:          d.ids,
		sysfs:        sysfs,
		gvisor:       d.gvisor(),
	}
	// /etc/hosts, hostname and resolv.conf are bind-mounted; where the
	// image has no /etc (FROM scratch), runc makes the mount points in the
	// writable layer, so such an app resolves names too. An /etc that is
	// not a directory (a symlink) gets nothing.
	if fi, err := os.Lstat(filepath.Join(img.Rootfs, "etc")); errors.Is(err, fs.ErrNotExist) || (err == nil && fi.IsDir()) {
		p.etcDir = filepath.Join(bundle, "etc")
		if err := os.Mkdir(p.etcDir, 0o755); err != nil {
			return nil, err
		}
		resolv, _ := os.ReadFile("/etc/resolv.conf")
		for name, b := range etcFiles(id, resolv, lease) {
			f := filepath.Join(p.etcDir, name)
			if err := os.WriteFile(f, b, 0o644); err != nil {
				return nil, err
			}
			// Root's in the instance, as in an image.
			if err := os.Chown(f, d.ids.UID(0), d.ids.GID(0)); err != nil {
				return nil, err
			}
		}
	}
	config, err := json.MarshalIndent(ociSpec(p), "", "\t")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), config, 0o600); err != nil {
		return nil, err
	}
	if spec.Snapshot != "" {
		key, err := d.snapshotKey(id, img.Digest, config)
		if err != nil {
			return nil, err
		}
		if key != snap.Key {
			return nil, fmt.Errorf("%w: it was saved from another spec, image or %s", runtime.ErrSnapshot, d.tool())
		}
	}

	stdout, err := openLog(spec.StdoutPath)
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := openLog(spec.StderrPath)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	if err := d.runcRun(ctx, id, bundle, stdout, stderr, prepare); err != nil {
		return nil, err
	}
	startedAt := time.Now()
	// The container's mounts are made: no user of the host reaches them
	// through the bundle any more, the instances' root included.
	if err := os.Chmod(bundle, 0o700); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(bundle, "pid"))
	if err != nil {
		return nil, fmt.Errorf("reading runc's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("reading runc's pid file: %w", err)
	}
	st := state{
		Bundle: bundle, Netns: netns, PID: pid, Image: spec.Image, Digest: img.Digest,
		Port: spec.Port, StartedAt: startedAt, Prepared: prepare, Snapshot: spec.Snapshot,
	}
	in := d.newInstance(id, pid, startedAt, prepare)
	if ps, err := pidfd.ReadStat(pid); err == nil {
		st.PIDStart = ps.Start
		if _, err := in.OpenProcess(ps.Start); err != nil {
			return nil, err
		}
	}
	if err := in.OpenNetns(netns); err != nil {
		in.Close()
		return nil, err
	}
	raw, err := json.Marshal(st)
	if err != nil {
		in.Close()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "state.json"), raw, 0o600); err != nil {
		in.Close()
		return nil, err
	}
	d.instances.Adopt(in)
	return &runtime.Handle{ID: id, Driver: d.Name(), State: raw}, nil
}

// wireNetns creates the instance's network namespace at path and, with
// a Network, attaches it (or claims one wired ahead, see netnsPool); the
// lease is nil without a Network.
func (d *Driver) wireNetns(ctx context.Context, id, group, path string) (*runtime.Lease, error) {
	if d.pool != nil {
		if pn, ok := d.pool.take(); ok {
			l, err := d.pool.claim(ctx, pn, id, group, path)
			if err != nil {
				return nil, err
			}
			return &l, nil
		}
	}
	if err := linuxns.Create(path); err != nil {
		return nil, err
	}
	if d.cfg.Network == nil {
		return nil, nil
	}
	l, err := d.cfg.Network.Attach(ctx, id, group, path)
	if err != nil {
		return nil, fmt.Errorf("attaching the instance's network: %w", err)
	}
	return &l, nil
}

// openLog opens a log file for appending; an empty path discards output.
func openLog(path string) (*os.File, error) {
	if path == "" {
		path = os.DevNull
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening log file: %w", err)
	}
	return f, nil
}

// attach returns the attached instance h names, attaching to it first if
// this driver value has not yet (Recover, or any call after a restart).
func (d *Driver) attach(ctx context.Context, h *runtime.Handle) (*attached.Instance, error) {
	return d.instances.Attach(h.ID, func() (*attached.Instance, error) { return d.load(ctx, h) })
}

// attachLocked is attach for a caller that holds h.ID's lock.
func (d *Driver) attachLocked(ctx context.Context, h *runtime.Handle) (*attached.Instance, error) {
	return d.instances.AttachLocked(h.ID, func() (*attached.Instance, error) { return d.load(ctx, h) })
}

// load finds the instance h names, as runc knows it, for attaching to it.
// A process that has already exited (a zombie not yet reaped, which runsc
// still reports running) is recorded exited at once (see attached), so
// that Inspect right after Recover tells the truth.
func (d *Driver) load(ctx context.Context, h *runtime.Handle) (*attached.Instance, error) {
	if !idRE.MatchString(h.ID) {
		return nil, fmt.Errorf("instance %q: %w", h.ID, runtime.ErrNotFound)
	}
	rs, err := d.runcStateOf(ctx, h.ID)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", h.ID, err)
	}
	var st state
	if len(h.State) > 0 {
		if err := json.Unmarshal(h.State, &st); err != nil {
			return nil, fmt.Errorf("instance %s: reading handle state: %w", h.ID, err)
		}
	} else {
		for _, b := range []string{d.bundleDir(h.ID), d.legacyBundleDir(h.ID)} {
			if b, err := os.ReadFile(filepath.Join(b, "state.json")); err == nil {
				json.Unmarshal(b, &st)
				break
			}
		}
	}
	prepared := rs.Status == "created"
	if rs.Status == "paused" {
		if st.Prepared && st.Restored {
			// Restored ahead and paused (Spec.RestoreAhead): still
			// waiting for StartPrepared.
			prepared = true
		} else {
			// Otherwise only Snapshot pauses an instance: a server that
			// died while saving one left it so.
			if err := d.runtimeCmd(ctx, "resume", h.ID); err != nil {
				return nil, fmt.Errorf("instance %s: %w", h.ID, err)
			}
			rs.Status = "running"
		}
	}
	pid, startedAt := rs.Pid, st.StartedAt
	if startedAt.IsZero() {
		startedAt = rs.Created
	}
	if pid == 0 {
		pid = st.PID
	}
	in := d.newInstance(h.ID, pid, startedAt, prepared)
	running := false
	if rs.Status != "stopped" && rs.Pid > 0 {
		start := st.PIDStart
		if st.PID != rs.Pid || start == 0 {
			// No record of this process: trust runc, which has just
			// checked its identity.
			if ps, err := pidfd.ReadStat(rs.Pid); err == nil {
				start = ps.Start
			}
		}
		if running, err = in.OpenProcess(start); err != nil {
			return nil, fmt.Errorf("instance %s: %w", h.ID, err)
		}
	}
	netns := st.Netns
	if netns == "" {
		netns = d.netnsPath(h.ID)
	}
	if err := in.OpenNetns(netns); err != nil && running {
		in.Close()
		return nil, fmt.Errorf("instance %s: %w", h.ID, err)
	}
	return in, nil
}

// Recover implements runtime.Driver: it re-attaches to the instance h
// names (watching its process, holding its network namespace). Calling it
// is optional with this driver, which attaches on first use, but it is the
// way to learn that an instance is gone (ErrNotFound).
func (d *Driver) Recover(ctx context.Context, h *runtime.Handle) error {
	_, err := d.attach(ctx, h)
	return err
}

// Inspect implements runtime.Driver.
func (d *Driver) Inspect(ctx context.Context, h *runtime.Handle) (runtime.Status, error) {
	in, err := d.attach(ctx, h)
	if err != nil {
		return runtime.Status{}, err
	}
	return in.Status(), nil
}

// Wait implements runtime.Driver. The exit is noticed through a pidfd the
// moment it happens.
func (d *Driver) Wait(ctx context.Context, h *runtime.Handle) (runtime.Status, error) {
	in, err := d.attach(ctx, h)
	if err != nil {
		return runtime.Status{}, err
	}
	return in.Wait(ctx)
}

// Dial implements runtime.Driver: it connects to 127.0.0.1:port inside the
// instance's network namespace. It costs a goroutine and two setns calls on
// top of a plain loopback dial.
func (d *Driver) Dial(ctx context.Context, h *runtime.Handle, port int) (net.Conn, error) {
	in, err := d.attach(ctx, h)
	if err != nil {
		return nil, err
	}
	return in.Dial(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// Stop implements runtime.Driver: SIGTERM to the instance's processes,
// SIGKILL after Config.StopGrace (or as soon as ctx ends), then it deletes
// the container and removes the overlay mount, the network namespace, the
// cgroup and the bundle. The log files stay. The steps after SIGTERM run
// to completion even if ctx has ended (bounded by a minute of their own),
// so that an impatient caller does not leave a half-removed instance.
//
// Stop needs only h.ID: after a crash in the middle of Start,
// Stop(&Handle{ID: id}) removes whatever Start had made.
func (d *Driver) Stop(ctx context.Context, h *runtime.Handle) error {
	if !idRE.MatchString(h.ID) {
		return nil // Start never made such an instance
	}
	unlock := d.instances.Lock(h.ID)
	defer unlock()
	in, err := d.attachLocked(ctx, h)
	if err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return fmt.Errorf("stopping instance %s: %w", h.ID, err)
	}
	finish, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	// A prepared instance runs no app yet: teardown's forced delete kills
	// its waiting process at once (as PID 1 of its namespace, it ignores
	// SIGTERM).
	if in != nil && !in.Prepared() {
		err := in.Terminate(ctx, finish, d.cfg.StopGrace,
			func() error { return d.runcKill(ctx, h.ID, "TERM") },
			func() error { return d.runcKill(finish, h.ID, "KILL") })
		if err != nil {
			return fmt.Errorf("stopping instance %s: %w", h.ID, err)
		}
	}
	if err := d.teardown(finish, h.ID); err != nil {
		return fmt.Errorf("stopping instance %s: %w", h.ID, err)
	}
	return nil
}

// teardown deletes the container and everything Start made for it but
// the log files. Each step tolerates what is already gone.
func (d *Driver) teardown(ctx context.Context, id string) error {
	var errs []error
	if err := d.runcDelete(ctx, id); err != nil {
		errs = append(errs, err)
	}
	d.instances.Remove(id)
	// The bundle, or one an older Slipway made under Root.
	bundles := []string{d.bundleDir(id), d.legacyBundleDir(id)}
	mounted := map[string]bool{}
	for _, bundle := range bundles {
		for _, dir := range []string{"rootfs", "sys", "layer"} { // the overlay before the layer under it
			if err := unmount(filepath.Join(bundle, dir)); err != nil {
				errs = append(errs, err)
				mounted[bundle] = true
			}
		}
	}
	if d.cfg.Network != nil {
		if err := d.cfg.Network.Detach(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("detaching the instance's network: %w", err))
		}
	}
	if err := linuxns.Delete(d.netnsPath(id)); err != nil {
		errs = append(errs, err)
	}
	removeCgroups(d.cgroupsPath(id))
	for _, bundle := range bundles {
		if !mounted[bundle] { // never remove through a live mount
			if err := os.RemoveAll(bundle); err != nil {
				errs = append(errs, fmt.Errorf("removing bundle: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// unmount unmounts dir; a dir that is not mounted or missing is fine.
func unmount(dir string) error {
	err := unix.Unmount(dir, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(dir, unix.MNT_DETACH)
	}
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmounting %s: %w", dir, err)
}

// removeCgroups removes the instance's cgroup directories if runc left any
// (it does not when it deletes the container itself).
func removeCgroups(path string) {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range append(hierarchies, "/sys/fs/cgroup") {
		os.Remove(filepath.Join(h, path)) // rmdir; only empty cgroups go
	}
}

// RemoveImage frees the unpacked copy of the image with digest
// (sha256:...), for the control plane's retention of old deployments. It
// fails with oci.ErrInUse while an instance's filesystem is mounted on it
// (a stopped instance's is not). Removing an image that is not unpacked is
// not an error. A later Start unpacks it again.
func (d *Driver) RemoveImage(digest string) error { return d.images.Remove(digest) }

// Close lets go of all attached instances (their pidfds and network
// namespace handles) without stopping them, as a server does when it
// exits, and removes RunDir if no instance is left in it. Waits in
// progress return an error. It waits for the background sync of freshly
// unpacked images, if one runs. The driver stays usable and attaches
// again on the next call.
func (d *Driver) Close() error {
	defer d.images.Wait()
	defer os.Remove(d.cfg.RunDir) // only if empty
	if d.pool != nil {
		d.pool.close()
	}
	d.instances.Close()
	return nil
}

var _ runtime.Driver = (*Driver)(nil)

// Package microvm runs app instances in microVMs: QEMU's `microvm`
// machine with Debian's cloud kernel, one VM per instance.
//
// Each image is pulled and unpacked once per digest (oci.Cache, under
// Root/images) and made into a read-only ext4 disk once per digest (see
// disks). Each instance gets Root/instances/<id>: its initramfs (the
// guest init, cmd/slipway-init, with the kernel modules it loads and the
// instance's config: command, environment, user, working directory,
// addresses), QEMU's pid file, a status file and a control socket. The
// guest mounts the disk under a writable tmpfs layer as big as the
// instance's disk limit, and its RAM is the instance's memory limit.
//
// QEMU runs daemonized (not the server's child, so instances outlive the
// server) inside the instance's network namespace, /run/netns/slipway-<id>,
// made and wired by the Network as the runc driver's are: the driver then
// bridges the namespace's eth0 with a tap device for the guest and moves
// eth0's address to the guest, so the guest sits on Slipway's bridge with
// the instance's own address and the host's egress policy applies to it
// unchanged. The namespace keeps a link-local address on the bridge
// (169.254.77.1/30; the guest has 169.254.77.2 too), through which Dial
// reaches the guest's ports.
//
// The app's stdout and stderr reach the files of the spec through virtio
// serial ports that QEMU appends to the files; the guest's console (kernel
// errors only: quiet, loglevel=3) goes to the stderr file too. The guest's
// init reports the app's start and its exit code on another port, which
// QEMU writes to Root/instances/<id>/status, so the exit code is known
// even when the app exited while the server was down. Stop sends SIGTERM
// to every process of the guest through a control port, and SIGKILLs
// QEMU after the grace period.
//
// KVM is used when /dev/kvm works: a probe boots a guest once per server
// (bounded by a few seconds; nested KVM can hang) and otherwise QEMU runs
// under TCG, emulating the CPU (about 2 s to boot on a small host).
//
// The driver needs root, qemu-system-x86_64, mkfs.ext4 (e2fsprogs), a
// Debian cloud kernel and the static slipway-init: scripts/install-microvm.sh
// installs them.
package microvm

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/attached"
	"github.com/slipwayhq/slipway/internal/runtime/linuxns"
	"github.com/slipwayhq/slipway/internal/runtime/microvm/guest"
	"github.com/slipwayhq/slipway/internal/runtime/oci"
	"github.com/slipwayhq/slipway/internal/runtime/pidfd"
)

// Name is the driver's name, as stored in Handle.Driver.
const Name = "microvm"

// Defaults of the limits, as runtime.Limits documents them.
const (
	DefaultMemoryBytes = 512 << 20
	DefaultDiskBytes   = 256 << 20
	// minMemoryBytes is the least RAM a guest gets: the kernel and the
	// init need about 60 MiB of it.
	minMemoryBytes = 128 << 20
)

// Config configures a Driver. The zero value works on a host set up by
// scripts/install-microvm.sh.
type Config struct {
	// Root holds unpacked images (Root/images), their disks (Root/disks)
	// and instances (Root/instances). If empty, /var/lib/slipway/microvm.
	Root string
	// QEMU is the QEMU binary. If empty, "qemu-system-x86_64" in PATH.
	QEMU string
	// Kernel is the guests' kernel (a Debian cloud kernel, vmlinuz-V). If
	// empty, the newest vmlinuz-*-cloud-amd64 in
	// /usr/local/lib/slipway/microvm, else in /boot.
	Kernel string
	// Modules is the kernel's modules directory. If empty,
	// lib/modules/V beside Kernel, else /lib/modules/V.
	Modules string
	// Init is the guests' init, a static binary (cmd/slipway-init). If
	// empty, slipway-init beside the running executable, else
	// /usr/local/lib/slipway/microvm/slipway-init (where
	// scripts/install-microvm.sh builds it).
	Init string
	// Accel is "kvm" or "tcg". If empty, KVM when /dev/kvm works (a probe
	// boots a guest once), else TCG.
	Accel string
	// RemoteOptions are passed to go-containerregistry's remote.Image when
	// pulling an image. References may be plain HTTP.
	RemoteOptions []remote.Option
	// StopGrace is how long Stop waits after SIGTERM before killing the
	// VM. If zero, 5 seconds.
	StopGrace time.Duration
	// BootTimeout bounds how long Start waits for the guest to start the
	// app once QEMU runs: a guest that has not by then is stopped and
	// Start fails with its console's last lines. If zero, 90 seconds (a
	// guest boots in about 2 s under TCG on an idle machine, 10 s on a
	// loaded one, under 1 s with KVM).
	BootTimeout time.Duration
	// NetnsDir holds the instances' named network namespaces. If empty,
	// /run/netns.
	NetnsDir string
	// Network, if set, gives each instance an address on Slipway's bridge
	// (moved to the guest) and its group's egress policy. If nil, the
	// guest reaches nothing but its namespace's link to the host.
	Network runtime.Network
}

// Driver runs instances in microVMs. It is safe for concurrent use.
type Driver struct {
	cfg    Config
	qemu   string
	images *oci.Cache
	disks  *disks

	baseMu sync.Mutex
	base   *baseInitrd

	instances attached.Set
}

// New returns a driver. It fails if QEMU, mkfs.ext4, the kernel or the
// init cannot be found.
func New(cfg Config) (*Driver, error) {
	if cfg.Root == "" {
		cfg.Root = "/var/lib/slipway/microvm"
	}
	if cfg.QEMU == "" {
		cfg.QEMU = "qemu-system-x86_64"
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 5 * time.Second
	}
	if cfg.BootTimeout <= 0 {
		cfg.BootTimeout = 90 * time.Second
	}
	if cfg.NetnsDir == "" {
		cfg.NetnsDir = "/run/netns"
	}
	if cfg.Accel != "" && cfg.Accel != "kvm" && cfg.Accel != "tcg" {
		return nil, fmt.Errorf("microvm driver: accel %q: want kvm or tcg", cfg.Accel)
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("microvm driver: %w", err)
	}
	cfg.Root = root
	qemu, err := exec.LookPath(cfg.QEMU)
	if err != nil {
		return nil, fmt.Errorf("microvm driver: finding QEMU: %w (run scripts/install-microvm.sh)", err)
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return nil, fmt.Errorf("microvm driver: finding mkfs.ext4: %w", err)
	}
	if cfg.Kernel == "" {
		if cfg.Kernel, _, err = findKernel(kernelDirs); err != nil {
			return nil, fmt.Errorf("microvm driver: %w", err)
		}
	} else if _, err := os.Stat(cfg.Kernel); err != nil {
		return nil, fmt.Errorf("microvm driver: kernel: %w", err)
	}
	if cfg.Modules == "" {
		cfg.Modules = modulesFor(cfg.Kernel)
	}
	if cfg.Init == "" {
		cfg.Init = findInit()
	}
	if err := checkStatic(cfg.Init); err != nil {
		return nil, fmt.Errorf("microvm driver: %w", err)
	}
	images, err := oci.NewCache(filepath.Join(root, "images"), cfg.RemoteOptions...)
	if err != nil {
		return nil, fmt.Errorf("microvm driver: %w", err)
	}
	for _, dir := range []string{"instances", "disks"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o711); err != nil {
			return nil, fmt.Errorf("microvm driver: %w", err)
		}
	}
	return &Driver{
		cfg:    cfg,
		qemu:   qemu,
		images: images,
		disks:  &disks{dir: filepath.Join(root, "disks"), mkfs: mkfs, keys: map[string]*sync.Mutex{}},
	}, nil
}

// findInit returns the first slipway-init of the default places.
func findInit() string {
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), "slipway-init"))
	}
	for _, dir := range kernelDirs[:1] {
		candidates = append(candidates, filepath.Join(dir, "slipway-init"))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	return candidates[len(candidates)-1]
}

func (d *Driver) dir(id string) string       { return filepath.Join(d.cfg.Root, "instances", id) }
func (d *Driver) netnsPath(id string) string { return filepath.Join(d.cfg.NetnsDir, "slipway-"+id) }

// initrd returns the shared part of the guests' initramfs, made on first
// use.
func (d *Driver) initrd() (*baseInitrd, error) {
	d.baseMu.Lock()
	defer d.baseMu.Unlock()
	if d.base == nil {
		b, err := buildBaseInitrd(d.cfg.Init, d.cfg.Modules)
		if err != nil {
			return nil, err
		}
		d.base = b
	}
	return d.base, nil
}

// state is Handle.State, also kept as Root/instances/<id>/state.json.
type state struct {
	Dir       string    `json:"dir"`
	Netns     string    `json:"netns"`
	PID       int       `json:"pid"`
	PIDStart  uint64    `json:"pidStart"`
	Image     string    `json:"image"`
	Digest    string    `json:"digest"`
	Port      int       `json:"port"`
	Accel     string    `json:"accel"`
	StartedAt time.Time `json:"startedAt"`
}

// newInstance returns an instance to attach to (see attached.New), whose
// exit code is the app's as the guest reported it in dir's status file,
// or -1 if it did not (QEMU was killed, the guest failed); an exit that
// was not seen happening (QEMU stopped while the server was down) is
// dated by the status file.
func newInstance(id, dir string, pid int, startedAt time.Time) *attached.Instance {
	in := attached.New(id, pid, startedAt, false)
	in.OnExit = func(e *attached.Exit) {
		e.Code = -1
		b, _ := os.ReadFile(filepath.Join(dir, "status"))
		if _, exited, c := guest.ParseStatus(b); exited {
			e.Code = c
		}
		if e.At.IsZero() {
			if fi, err := os.Stat(filepath.Join(dir, "status")); err == nil && fi.ModTime().After(startedAt) {
				e.At = fi.ModTime()
			}
		}
	}
	return in
}

var idRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Name implements runtime.Driver.
func (d *Driver) Name() string { return Name }

// Start implements runtime.Driver. It makes the image's disk if this
// digest has none yet, wires the instance's network namespace, boots the
// VM and returns once the guest's init has started the app (about 2 s
// under TCG). If Start fails it leaves nothing behind but the log files.
func (d *Driver) Start(ctx context.Context, spec runtime.Spec) (*runtime.Handle, error) {
	if !idRE.MatchString(spec.ID) {
		return nil, fmt.Errorf("starting instance: bad ID %q (want a lowercase DNS label)", spec.ID)
	}
	if spec.Port == 0 {
		spec.Port = 3000
	}
	unlock := d.instances.Lock(spec.ID)
	defer unlock()
	if _, err := os.Lstat(d.dir(spec.ID)); err == nil {
		return nil, fmt.Errorf("starting instance %s: it already exists", spec.ID)
	}
	h, err := d.create(ctx, spec, kernelStall)
	if errors.Is(err, errKernelStalled) {
		// Booted again once: the stall is the emulated CPU's, not the
		// app's (seen once in many boots on a loaded machine).
		d.teardownAfterFailure(ctx, spec.ID)
		appendLine(spec.StderrPath, fmt.Sprintf("slipway: %v; booting the VM again", err))
		h, err = d.create(ctx, spec, 0)
	}
	if err != nil {
		d.teardownAfterFailure(ctx, spec.ID)
		return nil, fmt.Errorf("starting instance %s: %w", spec.ID, err)
	}
	return h, nil
}

// teardownAfterFailure removes what a failed create left, even once ctx
// has ended.
func (d *Driver) teardownAfterFailure(ctx context.Context, id string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	d.teardown(cctx, id)
}

// appendLine appends a line to the log file at path, if there is one.
func appendLine(path, line string) {
	if path == "" {
		return
	}
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
		f.WriteString(line + "\n")
		f.Close()
	}
}

// kernelStall is how long a guest's kernel may take to run the init to
// its first reported step (its serial ports found) before Start boots it
// again, once: about 1 s under TCG on an idle machine, 5 s at a load of
// 20 on two cores.
var kernelStall = 30 * time.Second

// errKernelStalled: the guest reported no boot step within kernelStall.
var errKernelStalled = errors.New("the VM's kernel did not run its init in time")

// prepared is what an instance's boot needs from its image.
type prepared struct {
	digest string
	disk   string
	args   []string
	env    []string
	dir    string
	user   oci.User
}

func (d *Driver) prepare(ctx context.Context, spec runtime.Spec) (*prepared, error) {
	img, release, err := d.images.Get(ctx, spec.Image)
	if err != nil {
		return nil, err
	}
	defer release()
	cfg := img.Config.Config
	args, err := oci.Args(spec.Command, cfg)
	if err != nil {
		return nil, err
	}
	usr, err := oci.ResolveUser(img.Rootfs, cfg.User)
	if err != nil {
		return nil, err
	}
	disk, err := d.disks.path(ctx, img.Digest, img.Rootfs)
	if err != nil {
		return nil, err
	}
	return &prepared{
		digest: img.Digest, disk: disk, args: args, user: usr, dir: cfg.WorkingDir,
		env: oci.Env(cfg.Env, spec.Env, spec.Port, spec.ID, usr.Home),
	}, nil
}

// create boots an instance; with stall above zero, a guest that reports
// no boot step within it fails with errKernelStalled.
func (d *Driver) create(ctx context.Context, spec runtime.Spec, stall time.Duration) (*runtime.Handle, error) {
	id, dir := spec.ID, d.dir(spec.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	// The namespace is wired while the image is prepared.
	netns := d.netnsPath(id)
	var (
		lease  *netLease
		tap    *os.File
		netErr error
	)
	netDone := make(chan struct{})
	go func() {
		defer close(netDone)
		lease, tap, netErr = d.wireNetns(ctx, id, spec.Group, netns)
	}()
	defer func() {
		<-netDone
		if tap != nil {
			tap.Close()
		}
	}()
	p, err := d.prepare(ctx, spec)
	if err != nil {
		return nil, err
	}
	base, err := d.initrd()
	if err != nil {
		return nil, err
	}
	accel := d.accel(ctx, base)
	<-netDone
	if netErr != nil {
		return nil, netErr
	}
	gcfg := guestConfig(spec, p, lease, base)
	config, err := json.Marshal(gcfg)
	if err != nil {
		return nil, err
	}
	if err := base.writeInitrd(filepath.Join(dir, "initrd"), config); err != nil {
		return nil, fmt.Errorf("writing the initramfs: %w", err)
	}
	for _, path := range []string{spec.StdoutPath, spec.StderrPath} {
		if err := touchLog(path); err != nil {
			return nil, err
		}
	}
	ns, err := os.Open(netns)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace: %w", err)
	}
	defer ns.Close()
	nsConn, err := ns.SyscallConn()
	if err != nil {
		return nil, err
	}
	args := d.qemuArgs(qemuParams{
		id: id, dir: dir, accel: accel, disk: p.disk, stdout: spec.StdoutPath, stderr: spec.StderrPath,
		memory: spec.Limits.MemoryBytes, cpus: spec.Limits.CPUMillis, mac: guestMAC(id),
	})
	startedAt := time.Now()
	if err := d.runQEMU(ctx, nsConn, args, tap); err != nil {
		return nil, err
	}
	pid, err := readPidFile(filepath.Join(dir, "qemu.pid"))
	if err != nil {
		return nil, err
	}
	st := state{Dir: dir, Netns: netns, PID: pid, Image: spec.Image, Digest: p.digest, Port: spec.Port,
		Accel: accel, StartedAt: startedAt}
	in := newInstance(id, dir, pid, startedAt)
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
	if err := os.WriteFile(filepath.Join(dir, "state.json"), raw, 0o600); err != nil {
		in.Close()
		return nil, err
	}
	d.instances.Adopt(in)
	if err := waitStarted(ctx, in, dir, d.cfg.BootTimeout, stall); err != nil {
		if tail := lastLines(spec.StderrPath, 5); tail != "" {
			err = fmt.Errorf("%w; the console's last lines: %s", err, tail)
		}
		return nil, err
	}
	return &runtime.Handle{ID: id, Driver: Name, State: raw}, nil
}

// guestSteps returns the boot steps the guest of dir reported, or
// "none" if it reported none (its kernel never ran its init, or the init
// never found its serial ports).
func guestSteps(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "status"))
	if steps := guest.ParseSteps(b); len(steps) > 0 {
		return strings.Join(steps, ", ")
	}
	return "none"
}

// lastLines returns the last n non-empty lines of the file at path (at
// most its last 4 KiB), joined by " | ".
func lastLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const window = 4 << 10
	if st, err := f.Stat(); err == nil && st.Size() > window {
		f.Seek(st.Size()-window, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, window))
	var lines []string
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// waitStarted waits until the guest reports the app started, or QEMU
// exits without it, for at most timeout; with stall above zero (and below
// timeout), a guest that has reported no boot step by then fails it with
// errKernelStalled.
func waitStarted(ctx context.Context, in *attached.Instance, dir string, timeout, stall time.Duration) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	limit := time.NewTimer(timeout)
	defer limit.Stop()
	var stalled <-chan time.Time
	if stall > 0 && stall < timeout {
		t := time.NewTimer(stall)
		defer t.Stop()
		stalled = t.C
	}
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "status"))
		if started, _, _ := guest.ParseStatus(b); started {
			return nil
		}
		select {
		case <-stalled:
			b, _ := os.ReadFile(filepath.Join(dir, "status"))
			if len(guest.ParseSteps(b)) == 0 {
				return fmt.Errorf("%w (%s)", errKernelStalled, stall)
			}
		case <-in.Done():
			b, _ := os.ReadFile(filepath.Join(dir, "status"))
			if started, _, _ := guest.ParseStatus(b); started {
				return nil
			}
			st := in.Status()
			return fmt.Errorf("the VM stopped before the app started (exit code %d; the stderr log says why)", st.ExitCode)
		case <-ctx.Done():
			return fmt.Errorf("waiting for the VM to boot: %w", ctx.Err())
		case <-limit.C:
			return fmt.Errorf("the VM did not start the app within %s (boot steps the guest reported: %s)", timeout, guestSteps(dir))
		case <-t.C:
		}
	}
}

// guestConfig is what the guest's init is told.
func guestConfig(spec runtime.Spec, p *prepared, lease *netLease, base *baseInitrd) guest.Config {
	disk := spec.Limits.DiskBytes
	if disk <= 0 {
		disk = DefaultDiskBytes
	}
	c := guest.Config{
		Modules: base.modules, Args: p.args, Env: p.env, Dir: p.dir,
		UID: p.user.UID, GID: p.user.GID, Groups: p.user.Groups,
		Hostname: spec.ID, DiskBytes: disk, Now: time.Now().UnixNano(),
		Addrs: []string{guestLinkAddr + "/30"},
	}
	if c.Groups == nil {
		c.Groups = []uint32{}
	}
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n", spec.ID)
	var resolv strings.Builder
	if lease != nil {
		c.Addrs = append(c.Addrs, lease.Addr.String()+"/"+strconv.Itoa(lease.bits))
		if lease.Gateway.IsValid() {
			c.Gateway = lease.Gateway.String()
		}
		for _, a := range lease.DNS {
			fmt.Fprintf(&resolv, "nameserver %s\n", a)
		}
		hosts += fmt.Sprintf("%s\t%s\n", lease.Addr, spec.ID)
	}
	c.Etc = map[string]string{"hosts": hosts, "hostname": spec.ID + "\n", "resolv.conf": resolv.String()}
	return c
}

// touchLog creates a log file if needed, as the runc driver opens it
// (QEMU then appends to it). An empty path is fine: QEMU gets /dev/null.
func touchLog(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("opening log file: %w", err)
	}
	return f.Close()
}

// guestMAC is a locally administered unicast MAC address for id's NIC.
func guestMAC(id string) string {
	sum := sha256.Sum256([]byte(id))
	return fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", sum[0], sum[1], sum[2], sum[3])
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading QEMU's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("reading QEMU's pid file: %w", err)
	}
	return pid, nil
}

// attach returns the attached instance h names, attaching to it first if
// this driver value has not yet (Recover, or any call after a restart).
func (d *Driver) attach(h *runtime.Handle) (*attached.Instance, error) {
	return d.instances.Attach(h.ID, func() (*attached.Instance, error) { return d.load(h) })
}

// load finds the instance h names, from its state file, for attaching to
// it. A QEMU that has already exited (a zombie not yet reaped by its
// parent) is recorded exited at once (see attached).
func (d *Driver) load(h *runtime.Handle) (*attached.Instance, error) {
	if !idRE.MatchString(h.ID) {
		return nil, fmt.Errorf("instance %q: %w", h.ID, runtime.ErrNotFound)
	}
	dir := d.dir(h.ID)
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("instance %s: %w", h.ID, runtime.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", h.ID, err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("instance %s: reading its state: %w", h.ID, err)
	}
	in := newInstance(h.ID, dir, st.PID, st.StartedAt)
	running, err := in.OpenProcess(st.PIDStart)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", h.ID, err)
	}
	if err := in.OpenNetns(st.Netns); err != nil && running {
		in.Close()
		return nil, fmt.Errorf("instance %s: %w", h.ID, err)
	}
	return in, nil
}

// Recover implements runtime.Driver: it re-attaches to the instance h
// names. An instance whose VM has stopped is recovered as exited, with
// the exit code its guest reported.
func (d *Driver) Recover(ctx context.Context, h *runtime.Handle) error {
	_, err := d.attach(h)
	return err
}

// Inspect implements runtime.Driver. The PID is QEMU's.
func (d *Driver) Inspect(ctx context.Context, h *runtime.Handle) (runtime.Status, error) {
	in, err := d.attach(h)
	if err != nil {
		return runtime.Status{}, err
	}
	return in.Status(), nil
}

// Wait implements runtime.Driver: QEMU's exit is noticed through a pidfd
// the moment it happens (the guest powers off when the app exits).
func (d *Driver) Wait(ctx context.Context, h *runtime.Handle) (runtime.Status, error) {
	in, err := d.attach(h)
	if err != nil {
		return runtime.Status{}, err
	}
	return in.Wait(ctx)
}

// Dial implements runtime.Driver: it connects, from inside the instance's
// network namespace, to port on the guest's link-local address.
func (d *Driver) Dial(ctx context.Context, h *runtime.Handle, port int) (net.Conn, error) {
	in, err := d.attach(h)
	if err != nil {
		return nil, err
	}
	return in.Dial(ctx, net.JoinHostPort(guestLinkAddr, strconv.Itoa(port)))
}

// Stop implements runtime.Driver: SIGTERM to every process of the guest
// (through its control port; to QEMU itself if the guest cannot be told),
// SIGKILL to QEMU after Config.StopGrace (or as soon as ctx ends), then it
// removes the network namespace and the instance's directory. The log
// files stay. Stop needs only h.ID.
func (d *Driver) Stop(ctx context.Context, h *runtime.Handle) error {
	if !idRE.MatchString(h.ID) {
		return nil
	}
	unlock := d.instances.Lock(h.ID)
	defer unlock()
	in, err := d.instances.AttachLocked(h.ID, func() (*attached.Instance, error) { return d.load(h) })
	if err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return fmt.Errorf("stopping instance %s: %w", h.ID, err)
	}
	finish, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if in != nil {
		term := func() error {
			if err := signalGuest(d.dir(h.ID), unix.SIGTERM); err != nil {
				in.Signal(unix.SIGTERM) // QEMU's
			}
			return nil
		}
		kill := func() error { in.Signal(unix.SIGKILL); return nil }
		if err := in.Terminate(ctx, finish, d.cfg.StopGrace, term, kill); err != nil {
			return fmt.Errorf("stopping instance %s: %w", h.ID, err)
		}
	}
	if err := d.teardown(finish, h.ID); err != nil {
		return fmt.Errorf("stopping instance %s: %w", h.ID, err)
	}
	return nil
}

// signalGuest asks the guest's init to send sig to every process.
func signalGuest(dir string, sig unix.Signal) error {
	c, err := net.DialTimeout("unix", filepath.Join(dir, "control.sock"), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	_, err = fmt.Fprintf(c, "%s %d\n", guest.ControlSignal, int(sig))
	return err
}

// teardown removes everything Start made but the log files, killing a
// QEMU that a crash in the middle of Start left unrecorded. Each step
// tolerates what is already gone.
func (d *Driver) teardown(ctx context.Context, id string) error {
	var errs []error
	d.instances.Remove(id)
	dir := d.dir(id)
	killStray(dir)
	if d.cfg.Network != nil {
		if err := d.cfg.Network.Detach(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("detaching the instance's network: %w", err))
		}
	}
	if err := linuxns.Delete(d.netnsPath(id)); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("removing the instance's directory: %w", err))
	}
	return errors.Join(errs...)
}

// killStray kills the QEMU of dir's pid file if it still runs: one whose
// command line names dir's initramfs.
func killStray(dir string) {
	pid, err := readPidFile(filepath.Join(dir, "qemu.pid"))
	if err != nil {
		return
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !strings.Contains(string(cmdline), filepath.Join(dir, "initrd")) {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	unix.Poll(fds, 10_000)
}

// RemoveImage frees the unpacked copy and the disk of the image with
// digest. Running guests keep the disk they opened.
func (d *Driver) RemoveImage(digest string) error {
	if err := d.images.Remove(digest); err != nil {
		return err
	}
	return d.disks.remove(digest)
}

// Close lets go of all attached instances without stopping them, as a
// server does when it exits. Waits in progress return an error.
func (d *Driver) Close() error {
	defer d.images.Wait()
	d.instances.Close()
	return nil
}

// Sweep stops every instance under Root whose ID keep rejects: VMs that
// no record names any more (a server or a test killed in the middle of a
// start). A server calls it once its records are loaded.
func (d *Driver) Sweep(ctx context.Context, keep func(id string) bool) error {
	entries, err := os.ReadDir(filepath.Join(d.cfg.Root, "instances"))
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if !keep(e.Name()) {
			if err := d.Stop(ctx, &runtime.Handle{ID: e.Name(), Driver: Name}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

var _ runtime.Driver = (*Driver)(nil)

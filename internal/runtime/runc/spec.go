package runc

import (
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/oci"
)

// Defaults for runtime.Limits fields left at zero.
const (
	DefaultMemoryBytes = 512 << 20
	DefaultCPUMillis   = 1000
	DefaultPids        = 512
	DefaultDiskBytes   = 256 << 20
)

const (
	cpuPeriod    = 100000 // µs
	maxOpenFiles = 65536
)

// specParams is everything ociSpec needs about one instance.
type specParams struct {
	id           string
	rootfs       string // absolute path of the instance's root filesystem
	netns        string // path of the instance's network namespace
	cgroupsPath  string
	args         []string
	env          []string
	cwd          string
	user         oci.User
	limits       runtime.Limits
	swapLimit    bool // the host accounts swap: swap is capped too (see swapAccounting)
	maxOpenFiles uint64
	etcDir       string // if set, holds hosts, hostname and resolv.conf to mount on /etc
	// ids maps the instance's IDs to the host's in a user namespace of
	// its own; the identity: none (the host's).
	ids oci.IDMap
	// sysfs, if set, is a sysfs of the instance's network namespace
	// mounted on the host, bound on /sys (runc cannot mount one in a user
	// namespace that does not own the network namespace).
	sysfs string
	// gvisor: the spec is for runsc (see seccompProfile).
	gvisor bool
}

// defaultCaps is Docker's default capability set without NET_RAW (an app
// has no business crafting raw packets).
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Docker's default masked and read-only paths.
var (
	maskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// openFilesLimit is the limit on open files of an instance: 65536, or the
// server's own hard limit if lower (raising a hard limit needs
// CAP_SYS_RESOURCE, which the server may lack).
func openFilesLimit() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Max < maxOpenFiles {
		return rl.Max
	}
	return maxOpenFiles
}

// gvisorHostTasks is what a gVisor sandbox's own host threads need on top
// of the app's: the Sentry's Go runtime (a thread per blocking host system
// call), the gofer's, and systrap's stub threads, one per app thread at
// most.
const gvisorHostTasks = 128

// hostPids is the instance cgroup's process limit. With runc it is the
// app's own limit. With gVisor the cgroup holds the Sentry, the gofer and
// systrap's stubs rather than the app's processes, whose limit is
// RLIMIT_NPROC inside the sandbox (see ociSpec): an app at its limit must
// find the Sentry still able to make a host thread, or the whole sandbox
// dies (as the isolation suite's process check saw, 2 to 3 runs in 9).
func hostPids(limit int64, gvisor bool) int64 {
	if !gvisor {
		return limit
	}
	return 2*limit + gvisorHostTasks
}

// ociSpec builds the runtime spec (config.json) of an instance.
func ociSpec(p specParams) *specs.Spec {
	caps := &specs.LinuxCapabilities{Bounding: defaultCaps}
	if p.user.UID == 0 {
		// Like an exec after setuid: a non-root process keeps no
		// capabilities, only the bounding set.
		caps.Effective, caps.Permitted = defaultCaps, defaultCaps
	}
	limits := p.limits
	if limits.MemoryBytes <= 0 {
		limits.MemoryBytes = DefaultMemoryBytes
	}
	if limits.CPUMillis <= 0 {
		limits.CPUMillis = DefaultCPUMillis
	}
	if limits.Pids <= 0 {
		limits.Pids = DefaultPids
	}
	memory := &specs.LinuxMemory{Limit: &limits.MemoryBytes}
	if p.swapLimit {
		// memory+swap equal to memory: no swap at all (runc writes
		// memory.memsw.limit_in_bytes on cgroup v1, memory.swap.max=0 on
		// v2). Swap would let an app use its limit again on the host's
		// disk, slowing every other app's I/O, and delay its OOM kill.
		memory.Swap = &limits.MemoryBytes
	}
	quota, period := limits.CPUMillis*cpuPeriod/1000, uint64(cpuPeriod)

	s := &specs.Spec{
		Version:  specs.Version,
		Hostname: p.id,
		Root:     &specs.Root{Path: p.rootfs},
		Process: &specs.Process{
			User: specs.User{UID: p.user.UID, GID: p.user.GID, AdditionalGids: p.user.Groups},
			Args: p.args,
			Env:  p.env,
			Cwd:  p.cwd,
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: p.maxOpenFiles, Soft: p.maxOpenFiles},
			},
			Capabilities:    caps,
			NoNewPrivileges: true,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			sysMount(p.sysfs),
		},
		Linux: &specs.Linux{
			CgroupsPath: p.cgroupsPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: p.netns},
			},
			Resources: &specs.LinuxResources{
				// Deny every device; runc adds the standard ones (null,
				// zero, full, random, urandom, tty, ptmx) back.
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				Memory:  memory,
				CPU:     &specs.LinuxCPU{Quota: &quota, Period: &period},
				Pids:    &specs.LinuxPids{Limit: hostPids(limits.Pids, p.gvisor)},
			},
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
			Seccomp:       seccompProfile(p.gvisor),
		},
	}
	if p.gvisor {
		// Inside gVisor the app's processes and threads are the Sentry's
		// tasks: RLIMIT_NPROC bounds them there (the Sentry enforces it
		// for a user without CAP_SYS_RESOURCE, which an app never has).
		s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NPROC", Hard: uint64(limits.Pids), Soft: uint64(limits.Pids)})
	}
	if !p.ids.Identity() {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: p.ids.HostUID, Size: p.ids.Size}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: p.ids.HostGID, Size: p.ids.Size}}
	}
	if p.etcDir != "" {
		for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
			s.Mounts = append(s.Mounts, specs.Mount{
				Destination: "/etc/" + f, Type: "bind", Source: p.etcDir + "/" + f,
				Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"},
			})
		}
	}
	return s
}

// sysMount is the mount of /sys: a new sysfs, or, if sysfs is set, a
// bind of that one (not recursive: nothing mounted under it comes along).
// Read-only either way.
func sysMount(sysfs string) specs.Mount {
	if sysfs == "" {
		return specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}}
	}
	return specs.Mount{Destination: "/sys", Type: "bind", Source: sysfs, Options: []string{"bind", "nosuid", "noexec", "nodev", "ro"}}
}

// etcFiles returns the content of /etc/hosts, /etc/hostname and
// /etc/resolv.conf for an instance. The host's resolv.conf is copied
// without loopback name servers, which would be the instance's own.
func etcFiles(id string, hostResolv []byte, lease *runtime.Lease) map[string][]byte {
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n", id)
	var resolv strings.Builder
	if lease != nil {
		// Slipway's resolver on the gateway: the only one the instance
		// can reach, and the one that answers .internal names.
		for _, a := range lease.DNS {
			fmt.Fprintf(&resolv, "nameserver %s\n", a)
		}
		if lease.Addr.IsValid() {
			hosts += fmt.Sprintf("%s\t%s\n", lease.Addr, id)
		}
	} else {
		for line := range strings.Lines(string(hostResolv)) {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "nameserver" && (strings.HasPrefix(f[1], "127.") || f[1] == "::1") {
				continue
			}
			resolv.WriteString(line)
		}
	}
	return map[string][]byte{
		"hosts":       []byte(hosts),
		"hostname":    []byte(id + "\n"),
		"resolv.conf": []byte(resolv.String()),
	}
}

// Package guest is the init of a microVM instance: the first process of
// the guest's kernel, built into a static binary (cmd/slipway-init) that
// the microvm driver puts into each guest's initramfs.
//
// The driver tells it what to run in a Config, /slipway/config.json of the
// initramfs. The init, in order: mounts /dev, /proc and /sys; loads the
// kernel modules the config lists (the virtio transports and devices, ext4
// and overlay are modules in Debian's cloud kernel); finds the driver's
// serial ports by name; mounts the image's filesystem (the read-only disk
// /dev/vda) under a writable layer on a tmpfs as big as the instance's
// disk limit; addresses eth0; writes /etc/hosts, /etc/hostname and
// /etc/resolv.conf; switches to that root; and runs the app as the image's
// user, in its working directory, with its environment, stdout and stderr
// on their own ports. It then forwards the signals the driver sends on its
// control port to every process, reaps orphans, and when the app exits
// reports its exit code on the status port and restarts the machine, which
// QEMU (run with -no-reboot) takes as the end of the instance.
package guest

import (
	"os"
	"strconv"
	"strings"
)

// ConfigPath is where the config is in the initramfs.
const ConfigPath = "/slipway/config.json"

// Names of the virtio serial ports the driver gives the guest.
const (
	PortStdout  = "slipway.stdout"  // the app's stdout
	PortStderr  = "slipway.stderr"  // the app's stderr, and the init's own errors
	PortStatus  = "slipway.status"  // guest → driver: StatusStep lines, StatusStarted, then StatusExit
	PortControl = "slipway.control" // driver → guest: ControlSignal lines
)

// DebugExitPort is the I/O port of QEMU's isa-debug-exit device, which
// the init writes to end the VM.
const DebugExitPort = 0xf4

// The status protocol: one line each, in this order.
const (
	StatusStarted = "started"       // the app's process runs
	StatusExit    = "exit"          // "exit N": it exited with code N (128+S for signal S)
	StatusStep    = "step"          // "step NAME": the init finished a boot step (ports, network, root, …)
	ControlSignal = "signal"        // "signal N": send signal N to every process
	ProbeArg      = "slipway.probe" // on the kernel command line: report and stop at once
	DebugArg      = "slipway.debug" // on the kernel command line: log the time of each boot step
)

// Config is what the driver tells the init.
type Config struct {
	// Modules are kernel module files in the initramfs, in load order
	// (dependencies first).
	Modules []string `json:"modules"`
	// Args is the app's command line; Args[0] is looked up in PATH of Env
	// when it holds no slash.
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"` // working directory, created if missing
	UID  uint32   `json:"uid"`
	GID  uint32   `json:"gid"`
	// Groups are the supplementary groups.
	Groups   []uint32 `json:"groups"`
	Hostname string   `json:"hostname"`
	// DiskBytes is the size of the writable layer.
	DiskBytes int64 `json:"diskBytes"`
	// Addrs are eth0's addresses, as CIDR prefixes (address/bits).
	Addrs []string `json:"addrs"`
	// Gateway, if set, is the default route, via eth0.
	Gateway string `json:"gateway"`
	// Etc holds files (hosts, hostname, resolv.conf) written into the
	// app's /etc when it is a directory or missing.
	Etc map[string]string `json:"etc"`
	// Now is the host's clock (Unix nanoseconds) when it made the config:
	// a guest whose clock is behind it is set to it.
	Now int64 `json:"now"`
}

// ParseSteps returns the boot steps the status port's output reports, in
// order: where a guest that never started its app got to.
func ParseSteps(b []byte) []string {
	var steps []string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == StatusStep {
			steps = append(steps, f[1])
		}
	}
	return steps
}

// ParseStatus reads the status port's output: whether the app started
// and, once it exited, its exit code.
func ParseStatus(b []byte) (started, exited bool, code int) {
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		switch {
		case len(f) == 1 && f[0] == StatusStarted:
			started = true
		case len(f) == 2 && f[0] == StatusExit:
			if n, err := strconv.Atoi(f[1]); err == nil {
				exited, code = true, n
			}
		}
	}
	return started, exited, code
}

// IsInit reports whether this process is the guest's init.
func IsInit() bool { return os.Getpid() == 1 }

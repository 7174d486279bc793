package microvm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime/microvm/guest"

	"github.com/slipwayhq/slipway/internal/runtime/linuxns"
)

// qemuParams is what one VM's command line is made of.
type qemuParams struct {
	id, dir        string
	accel          string
	disk           string
	stdout, stderr string // the app's log files; "" discards
	memory, cpus   int64  // runtime.Limits' MemoryBytes and CPUMillis
	mac            string
	probe          bool // a KVM probe: no disk, no network
}

// kernelArgs is the guests' kernel command line: the serial console for
// errors only; no waiting at a panic; a reset that QEMU (-no-reboot)
// takes as the end; the CPU's random numbers trusted (Go programs need
// getrandom early); and, to boot faster (most of all under TCG), no
// crypto self-tests, audit, AppArmor, IMA appraisal or CPU-bug
// mitigations, which guard one guest process from another: each guest
// runs one app, and the VM is the boundary.
const kernelArgs = "console=ttyS0 quiet loglevel=3 pci=off panic=-1 reboot=t random.trust_cpu=on " +
	"cryptomgr.notests audit=0 apparmor=0 ima_appraise=off mitigations=off"

func orNull(path string) string {
	if path == "" {
		return os.DevNull
	}
	return path
}

// hostTSCkHz is the host's CPU clock in kHz, read from /proc/cpuinfo
// (2 GHz if it cannot be read).
var hostTSCkHz = sync.OnceValue(func() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "cpu MHz" {
			if mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && mhz > 0 {
				return int(mhz * 1000)
			}
		}
	}
	return 2_000_000
})

// qemuArgs returns QEMU's arguments for a VM; the tap is file descriptor 3.
func (d *Driver) qemuArgs(p qemuParams) []string {
	mem := p.memory
	if mem <= 0 {
		mem = DefaultMemoryBytes
	}
	mem = max(mem, minMemoryBytes)
	cpus := int64(1)
	if p.cpus > 1000 {
		cpus = min((p.cpus+999)/1000, int64(goruntime.NumCPU()))
	}
	cpu, accel := "max", p.accel
	if p.accel == "kvm" {
		cpu = "host"
	} else {
		// TCG's translated code: its default cache of 1 GiB fills as the
		// guest runs new code and stays in QEMU's memory; 32 MiB holds
		// a guest's working set (with 512 MiB, a booted guest's cache
		// held 30 MiB more).
		accel = "tcg,tb-size=" + strconv.Itoa(tcgCacheMiB)
	}
	appendArgs := kernelArgs
	if p.accel == "tcg" {
		// The guest's TSC is the host's under TCG; without its rate the
		// kernel finds no timer to calibrate it against (microvm has no
		// HPET, and its PIT is not wired under ACPI) and hangs.
		appendArgs += " tsc=reliable tsc_early_khz=" + strconv.Itoa(hostTSCkHz())
	}
	if p.probe {
		appendArgs += " " + guest.ProbeArg
	}
	if os.Getenv("SLIPWAY_MICROVM_DEBUG") != "" {
		appendArgs += " " + guest.DebugArg
	}
	chardevFile := func(id, path string) string {
		// QEMU's option syntax doubles commas in values.
		return "file,id=" + id + ",path=" + strings.ReplaceAll(path, ",", ",,") + ",append=on"
	}
	args := []string{
		"-name", "slipway-" + p.id,
		"-machine", "microvm,x-option-roms=off,rtc=on,auto-kernel-cmdline=off",
		"-accel", accel,
		"-cpu", cpu,
		"-m", strconv.FormatInt(mem>>20, 10) + "M",
		"-smp", strconv.FormatInt(cpus, 10),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", d.cfg.Kernel,
		"-initrd", filepath.Join(p.dir, "initrd"),
		"-append", appendArgs,
		"-chardev", chardevFile("console", orNull(p.stderr)),
		"-serial", "chardev:console",
		"-device", "virtio-serial-device",
		"-chardev", chardevFile("out", orNull(p.stdout)),
		"-device", "virtserialport,chardev=out,name=" + guest.PortStdout,
		"-chardev", chardevFile("err", orNull(p.stderr)),
		"-device", "virtserialport,chardev=err,name=" + guest.PortStderr,
		"-chardev", chardevFile("status", filepath.Join(p.dir, "status")),
		"-device", "virtserialport,chardev=status,name=" + guest.PortStatus,
		"-chardev", "socket,id=control,path=" + strings.ReplaceAll(filepath.Join(p.dir, "control.sock"), ",", ",,") + ",server=on,wait=off",
		"-device", "virtserialport,chardev=control,name=" + guest.PortControl,
		"-device", fmt.Sprintf("isa-debug-exit,iobase=%#x,iosize=1", guest.DebugExitPort),
		"-object", "rng-random,id=rng,filename=/dev/urandom",
		"-device", "virtio-rng-device,rng=rng",
		"-sandbox", "on,obsolete=deny,resourcecontrol=deny",
	}
	if !p.probe {
		args = append(args,
			"-drive", "id=root,file="+strings.ReplaceAll(p.disk, ",", ",,")+",format=raw,if=none,read-only=on",
			"-device", "virtio-blk-device,drive=root",
			"-netdev", "tap,id=net,fd=3",
			"-device", "virtio-net-device,netdev=net,mac="+p.mac,
			"-daemonize", "-pidfile", filepath.Join(p.dir, "qemu.pid"),
		)
	}
	return args
}

// runQEMU starts QEMU inside the namespace ns with the tap as its
// descriptor 3 and returns once it has daemonized (its devices are open,
// the guest is booting). QEMU runs in a session of its own, so that
// signals aimed at the server's terminal never reach it.
func (d *Driver) runQEMU(ctx context.Context, ns syscall.RawConn, args []string, tap *os.File) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, d.qemu, args...)
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{tap}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = 5 * time.Second
	err := linuxns.Do(ns, cmd.Start)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return fmt.Errorf("starting QEMU: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// tcgCacheMiB is the size of TCG's translation cache per VM.
const tcgCacheMiB = 32

// probeTimeout bounds the KVM probe: a guest that works boots to its init
// in well under a second with KVM; nested KVM that hangs never does.
const probeTimeout = 5 * time.Second

var probes sync.Map // QEMU + kernel → "kvm" or "tcg"

// accel returns the accelerator for new VMs: Config.Accel, else the
// probe's verdict (probed once per QEMU and kernel in this process).
func (d *Driver) accel(ctx context.Context, base *baseInitrd) string {
	if d.cfg.Accel != "" {
		return d.cfg.Accel
	}
	key := d.qemu + "\x00" + d.cfg.Kernel
	if v, ok := probes.Load(key); ok {
		return v.(string)
	}
	v := "tcg"
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		if err := d.probeKVM(ctx, base); err == nil {
			v = "kvm"
		} else {
			slog.Info("microVMs run under TCG (emulated CPU): KVM does not work here", "err", err)
		}
	}
	probes.Store(key, v)
	return v
}

// probeKVM boots a guest with KVM, whose init reports at once and stops.
func (d *Driver) probeKVM(ctx context.Context, base *baseInitrd) error {
	dir, err := os.MkdirTemp(filepath.Join(d.cfg.Root, "instances"), ".kvm-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	config, _ := json.Marshal(guest.Config{Modules: base.modules})
	if err := base.writeInitrd(filepath.Join(dir, "initrd"), config); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.qemu, d.qemuArgs(qemuParams{id: "kvm-probe", dir: dir, accel: "kvm", probe: true})...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	b, _ := os.ReadFile(filepath.Join(dir, "status"))
	if _, exited, code := guest.ParseStatus(b); exited && code == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("a guest did not boot within %v", probeTimeout)
	}
	return fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
}

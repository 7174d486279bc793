package guest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Main is the init: it never returns. Whatever fails, it reports an exit
// code on the status port (if it found it) and restarts the machine.
func Main() {
	in := &initProc{stderr: os.Stderr, start: time.Now()} // the console until the ports are found
	code := in.run()
	in.report(fmt.Sprintf("%s %d", StatusExit, code))
	in.powerOff()
}

type initProc struct {
	stderr io.Writer
	status *os.File
	debug  bool // slipway.debug on the kernel command line: time each step
	start  time.Time
}

// step notes the end of a step of the boot, in debug mode.
// step reports a finished boot step on the status port (once it is open),
// and with DebugArg logs its time.
func (in *initProc) step(name string) {
	in.report(StatusStep + " " + name)
	if in.debug {
		in.logf("%-10s %v", name, time.Since(in.start).Round(time.Millisecond))
	}
}

func (in *initProc) logf(format string, args ...any) {
	fmt.Fprintf(in.stderr, "slipway-init: "+format+"\n", args...)
}

func (in *initProc) report(line string) {
	if in.status != nil {
		in.status.WriteString(line + "\n") // returns once the host has it
	}
}

// powerOff ends the machine: everything left is killed, filesystems
// synced, and a write to QEMU's isa-debug-exit port ends QEMU at once
// and silently. Failing that the kernel
// restarts, which QEMU with -no-reboot takes as an exit; and failing that
// the init exits, and the kernel's panic (panic=-1) restarts it.
func (in *initProc) powerOff() {
	unix.Kill(-1, unix.SIGKILL)
	unix.Sync()
	err := debugExit()
	if in.debug {
		in.logf("debug exit: %v", err)
	}
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	os.Exit(1)
}

func (in *initProc) run() int {
	for _, m := range []struct{ src, dir, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
	} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.src, m.dir, m.fstype, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			in.logf("mounting %s: %v", m.dir, err)
			return 125
		}
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	args := " " + strings.TrimSpace(string(cmdline)) + " "
	in.debug = strings.Contains(args, " "+DebugArg+" ")
	b, err := os.ReadFile(ConfigPath)
	if err != nil {
		in.logf("reading the config: %v", err)
		return 125
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		in.logf("reading the config: %v", err)
		return 125
	}
	if now := time.Now().UnixNano(); cfg.Now > now {
		tv := unix.NsecToTimeval(cfg.Now)
		unix.Settimeofday(&tv)
	}
	params := moduleParams(string(cmdline))
	for _, m := range cfg.Modules {
		if err := loadModule(m, params); err != nil {
			in.logf("loading %s: %v", m, err)
			return 125
		}
	}
	in.step("modules")
	ports, err := findPorts(10 * time.Second)
	if err != nil {
		in.logf("%v", err)
		return 125
	}
	if in.status, err = os.OpenFile(ports[PortStatus], os.O_WRONLY, 0); err != nil {
		in.logf("opening the status port: %v", err)
		return 125
	}
	stdout, err := os.OpenFile(ports[PortStdout], os.O_WRONLY, 0)
	if err != nil {
		in.logf("opening the stdout port: %v", err)
		return 125
	}
	stderr, err := os.OpenFile(ports[PortStderr], os.O_WRONLY, 0)
	if err != nil {
		in.logf("opening the stderr port: %v", err)
		return 125
	}
	in.stderr = stderr
	in.step("ports")
	if strings.Contains(args, " "+ProbeArg+" ") {
		return 0
	}
	if err := setupNetwork(cfg); err != nil {
		in.logf("network: %v", err)
		return 125
	}
	in.step("network")
	if err := setupRoot(cfg); err != nil {
		in.logf("root filesystem: %v", err)
		return 125
	}
	in.step("root")
	if cfg.Hostname != "" {
		unix.Sethostname([]byte(cfg.Hostname))
	}
	lim := unix.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)

	path, err := lookPath(cfg.Args[0], cfg.Env)
	if err != nil {
		in.logf("%v", err)
		return 127
	}
	dir := cfg.Dir
	if dir == "" {
		dir = "/"
	}
	os.MkdirAll(dir, 0o755)
	devnull, err := os.Open("/dev/null")
	if err != nil {
		in.logf("opening /dev/null: %v", err)
		return 125
	}
	pid, err := syscall.ForkExec(path, cfg.Args, &syscall.ProcAttr{
		Dir:   dir,
		Env:   cfg.Env,
		Files: []uintptr{devnull.Fd(), stdout.Fd(), stderr.Fd()},
		Sys: &syscall.SysProcAttr{
			Setsid:     true,
			Credential: &syscall.Credential{Uid: cfg.UID, Gid: cfg.GID, Groups: cfg.Groups},
		},
	})
	if err != nil {
		in.logf("starting %s: %v", cfg.Args[0], err)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOEXEC) {
			return 127
		}
		return 126
	}
	devnull.Close()
	in.step("exec")
	in.report(StatusStarted)
	if ctl, err := os.OpenFile(ports[PortControl], os.O_RDONLY, 0); err == nil {
		go forwardSignals(ctl)
	}
	return reap(pid)
}

// reap waits for the app's process, reaping every orphan meanwhile, and
// returns its exit code (128+N for signal N).
func reap(pid int) int {
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 125 // ECHILD: cannot happen while the app lives
		}
		if wpid != pid {
			continue
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus()
		case ws.Signaled():
			return 128 + int(ws.Signal())
		}
	}
}

// forwardSignals sends the signals the driver asks for to every process
// but the init (kill(-1)), as `runc kill --all` does.
func forwardSignals(ctl *os.File) {
	sc := bufio.NewScanner(ctl)
	for {
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == ControlSignal {
				if n, err := strconv.Atoi(f[1]); err == nil && n > 0 && n < 65 {
					unix.Kill(-1, unix.Signal(n))
				}
			}
		}
		// The host side closed (a driver that stopped listening): wait
		// for the next one.
		time.Sleep(100 * time.Millisecond)
		sc = bufio.NewScanner(ctl)
	}
}

// moduleParams collects "module.param=value" arguments of the kernel
// command line by module, as modprobe passes them to loadable modules.
func moduleParams(cmdline string) map[string][]string {
	out := map[string][]string{}
	for _, f := range strings.Fields(cmdline) {
		k, _, ok := strings.Cut(f, "=")
		mod, param, dot := strings.Cut(k, ".")
		if ok && dot && mod != "" && param != "" {
			out[strings.ReplaceAll(mod, "-", "_")] = append(out[strings.ReplaceAll(mod, "-", "_")], strings.TrimPrefix(f, mod+"."))
		}
	}
	return out
}

// loadModule loads a module file (compressed ones are decompressed by the
// kernel); one already loaded is fine.
func loadModule(path string, params map[string][]string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	base := filepath.Base(path)
	name := strings.ReplaceAll(base[:strings.Index(base, ".ko")], "-", "_")
	flags := 0
	if !strings.HasSuffix(path, ".ko") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), strings.Join(params[name], " "), flags)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// findPorts waits for the driver's serial ports to appear and returns
// their device paths by name.
func findPorts(timeout time.Duration) (map[string]string, error) {
	want := []string{PortStatus, PortStdout, PortStderr, PortControl}
	deadline := time.Now().Add(timeout)
	for {
		ports := map[string]string{}
		entries, _ := os.ReadDir("/sys/class/virtio-ports")
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "name"))
			if err != nil {
				continue
			}
			dev := "/dev/" + e.Name()
			if _, err := os.Stat(dev); err == nil {
				ports[strings.TrimSpace(string(b))] = dev
			}
		}
		missing := ""
		for _, n := range want {
			if ports[n] == "" {
				missing = n
				break
			}
		}
		if missing == "" {
			return ports, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the serial port %s never appeared", missing)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitFor waits for a path to exist.
func waitFor(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s never appeared", path)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func setupNetwork(cfg Config) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	var eth netlink.Link
	deadline := time.Now().Add(10 * time.Second)
	for eth == nil {
		if eth, err = netlink.LinkByName("eth0"); err != nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("eth0 never appeared: %w", err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	for _, a := range cfg.Addrs {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(eth, addr); err != nil {
			return fmt.Errorf("adding %s: %w", a, err)
		}
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return err
	}
	if cfg.Gateway != "" {
		gw := net.ParseIP(cfg.Gateway)
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

// setupRoot mounts the app's root (the image read-only under a tmpfs
// layer) at /newroot with /proc, /sys and /dev, writes its /etc files and
// makes it the root.
func setupRoot(cfg Config) error {
	if err := waitFor("/dev/vda", 10*time.Second); err != nil {
		return err
	}
	for _, d := range []string{"/lower", "/rw", "/newroot"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("/dev/vda", "/lower", "ext4", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mounting the image: %w", err)
	}
	size := cfg.DiskBytes
	if size <= 0 {
		size = 256 << 20
	}
	if err := unix.Mount("tmpfs", "/rw", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		return fmt.Errorf("mounting the writable layer: %w", err)
	}
	for _, d := range []string{"/rw/upper", "/rw/work"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("overlay", "/newroot", "overlay", unix.MS_NOSUID|unix.MS_NODEV,
		"lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work"); err != nil {
		return fmt.Errorf("mounting the overlay: %w", err)
	}
	if err := writeEtc("/newroot", cfg.Etc); err != nil {
		return fmt.Errorf("writing /etc: %w", err)
	}
	for _, d := range []string{"proc", "sys", "dev"} {
		if err := mkdirIn("/newroot", d); err != nil {
			return err
		}
	}
	if err := unix.Mount("/dev", "/newroot/dev", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving /dev: %w", err)
	}
	unix.Unmount("/proc", unix.MNT_DETACH)
	unix.Unmount("/sys", unix.MNT_DETACH)
	if err := unix.Mount("proc", "/newroot/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	if err := unix.Mount("sysfs", "/newroot/sys", "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /sys: %w", err)
	}
	os.MkdirAll("/newroot/dev/pts", 0o755)
	unix.Mount("devpts", "/newroot/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
	os.MkdirAll("/newroot/dev/shm", 0o1777)
	unix.Mount("shm", "/newroot/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=65536k")
	// The initramfs (rootfs) cannot be unmounted; its files are freed
	// before it is covered, as switch_root does.
	for _, p := range []string{"/slipway", "/lib/modules", "/init"} {
		os.RemoveAll(p)
	}
	if err := os.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switching the root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switching the root: %w", err)
	}
	return os.Chdir("/")
}

// mkdirIn makes dir under root unless it exists (as a directory).
func mkdirIn(root, dir string) error {
	p := filepath.Join(root, dir)
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return nil
	}
	os.Remove(p)
	return os.Mkdir(p, 0o755)
}

// writeEtc writes files into root's /etc, as the runc driver bind-mounts
// them: only where /etc is a directory or missing (an image FROM scratch).
func writeEtc(root string, files map[string]string) error {
	etc := filepath.Join(root, "etc")
	fi, err := os.Lstat(etc)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Mkdir(etc, 0o755); err != nil {
			return err
		}
	case err != nil:
		return err
	case !fi.IsDir():
		return nil
	}
	for name, body := range files {
		p := filepath.Join(etc, name)
		os.Remove(p) // a symlink (to /run/systemd/...) is replaced, not followed
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// lookPath finds the app's executable in the new root, in PATH of env.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return name, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: executable file not found in $PATH", name)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return unix.EACCES
	}
	return nil
}

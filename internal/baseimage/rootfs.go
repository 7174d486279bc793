package baseimage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// chrootEnv is the environment of commands run inside a rootfs.
var chrootEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"DEBIAN_FRONTEND=noninteractive",
	"LC_ALL=C",
	"HOME=/root",
}

// run runs a command with its output sent to log. On cancellation the
// whole process group is killed, so that no dpkg or apt child outlives it.
func run(ctx context.Context, log io.Writer, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// debootstrap creates a minimal Debian rootfs in dir.
//
// It runs in debootstrap's two stages so that the second, which installs
// the packages with dpkg, can use dpkg's unsafe-io (no fsync per file) as
// the other steps do (debootstrap has no option for it): --foreign
// downloads and unpacks the packages, then a dpkg.cfg.d file turns on
// force-unsafe-io, the second stage runs in the chroot, and the file is
// removed. The rootfs is the same file for file as a one-stage run's; on
// two cores under load this took 103 s instead of 160 s (64 CPU-s
// instead of 77). A rootfs is complete only once the build succeeds, so
// a crash loses nothing fsync would have kept.
func debootstrap(ctx context.Context, log io.Writer, dir, suite, mirror string) error {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return fmt.Errorf("debootstrap is not installed (Debian package debootstrap): %w", err)
	}
	defer unmountUnder(dir)
	if err := run(ctx, log, append(os.Environ(), "LC_ALL=C"), "debootstrap",
		"--foreign", "--variant=minbase", "--components=main", suite, dir, mirror); err != nil {
		return err
	}
	unsafeIO := filepath.Join(dir, "etc/dpkg/dpkg.cfg.d/slipway-unsafe-io")
	if err := os.MkdirAll(filepath.Dir(unsafeIO), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(unsafeIO, []byte("force-unsafe-io\n"), 0o644); err != nil {
		return err
	}
	if err := run(ctx, log, chrootEnv, "chroot", dir, "/debootstrap/debootstrap", "--second-stage"); err != nil {
		return err
	}
	return os.Remove(unsafeIO)
}

// chroot runs a shell script inside rootfs with the host's DNS
// configuration and /proc available, and removes both afterwards.
func chroot(ctx context.Context, log io.Writer, rootfs, script string) (err error) {
	resolv := filepath.Join(rootfs, "etc/resolv.conf")
	_ = os.Remove(resolv)
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		if err := os.WriteFile(resolv, b, 0o644); err != nil {
			return fmt.Errorf("copying resolv.conf: %w", err)
		}
	}
	defer os.Remove(resolv)
	proc := filepath.Join(rootfs, "proc")
	if err := os.MkdirAll(proc, 0o555); err != nil {
		return fmt.Errorf("creating /proc: %w", err)
	}
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc in %s: %w", rootfs, err)
	}
	defer unmountUnder(rootfs)
	return run(ctx, log, chrootEnv, "chroot", rootfs, "/bin/sh", "-ec", script)
}

// copyTree copies a rootfs with everything preserved (owners, modes,
// timestamps, hard links, xattrs), so that a layer computed from the
// difference holds only what changed.
func copyTree(ctx context.Context, log io.Writer, src, dst string) error {
	return run(ctx, log, os.Environ(), "cp", "-a", "--reflink=auto", src, dst)
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(dir string) {
	for _, mp := range mountsUnder(dir) {
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
}

// mountsUnder lists the mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeTree removes a rootfs directory after detaching any mount left
// below it, refusing if a mount remains (RemoveAll would descend into it).
func removeTree(dir string) error {
	unmountUnder(dir)
	if m := mountsUnder(dir); len(m) > 0 {
		return fmt.Errorf("not removing %s: %s is still mounted", dir, m[0])
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}

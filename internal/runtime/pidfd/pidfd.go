// Package pidfd watches processes that are not the server's children — a
// container's process that runc started and left, a QEMU that daemonized,
// any of them after a restart of the server — through pidfds, which
// become readable when their process exits, whoever its parent is.
//
// A pid alone may be reused; each process is named here by its pid and
// its start time (clock ticks after boot, field 22 of /proc/<pid>/stat),
// which the drivers record with their instances.
package pidfd

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Open opens a non-blocking pidfd for pid and checks that pid still names
// the process that started at start, so that a reused pid is never
// mistaken for it. It returns nil, and no error, when the process is gone.
// Go's poller can wait for the pidfd (it is non-blocking).
func Open(pid int, start uint64) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err == unix.ESRCH {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening pidfd of %d: %w", pid, err)
	}
	// The pidfd pins the process it was opened for; a start time read
	// after opening it that matches proves it is the right one.
	st, err := ReadStat(pid)
	if err != nil || st.Start != start {
		unix.Close(fd)
		return nil, nil
	}
	return os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid)), nil
}

// Exited reports whether the process of the pidfd fd has exited.
func Exited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0
	}
}

// Stat is what the drivers read from /proc/<pid>/stat.
type Stat struct {
	State    byte   // R, S, D, Z, ...
	Start    uint64 // start time, clock ticks after boot (field 22)
	ExitCode int    // wait status of an exited thread (field 52); valid for zombies, else -1
}

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("parsing /proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	st := Stat{State: f[0][0], ExitCode: -1}
	if st.Start, err = strconv.ParseUint(string(f[19]), 10, 64); err != nil {
		return Stat{}, fmt.Errorf("parsing /proc/%d/stat: %w", pid, err)
	}
	if len(f) >= 50 {
		if c, err := strconv.Atoi(string(f[49])); err == nil {
			st.ExitCode = c
		}
	}
	return st, nil
}

// info is struct pidfd_info of <linux/pidfd.h> (PIDFD_INFO_SIZE_VER0).
type info struct {
	Mask                                                              uint64
	CgroupID                                                          uint64
	PID, TGID, PPID, RUID, RGID, EUID, EGID, SUID, SGID, FSUID, FSGID uint32
	ExitCode                                                          int32
}

const (
	infoExit = 1 << 3 // PIDFD_INFO_EXIT, Linux 6.15
	// getInfo is PIDFD_GET_INFO: _IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info).
	getInfo = 3<<30 | uintptr(unsafe.Sizeof(info{}))<<16 | 0xFF<<8 | 11
)

// exitStatus returns the wait status of the pidfd's exited, reaped
// process. Linux keeps it for holders of a pidfd since 6.15, which is how a
// server that is not the parent learns an exit code.
func exitStatus(fd int) (int, bool) {
	in := info{Mask: infoExit}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), getInfo, uintptr(unsafe.Pointer(&in)))
	if errno != 0 || in.Mask&infoExit == 0 {
		return 0, false
	}
	return int(in.ExitCode), true
}

// ExitCode finds the exit code of the exited process of the pidfd fd,
// known to have been pid started at start. The process is not the
// caller's child, so its status is read from the zombie's /proc entry
// before its parent reaps it, or from the pidfd after (Linux 6.15+). Exits
// by a signal give 128+N. It returns -1 when neither is possible (an
// older kernel whose reaper was quicker).
func ExitCode(fd, pid int, start uint64) int {
	for range 2 {
		if ws, ok := exitStatus(fd); ok {
			return decodeWaitStatus(ws)
		}
		if st, err := ReadStat(pid); err == nil && st.Start == start && st.State == 'Z' && st.ExitCode >= 0 {
			return decodeWaitStatus(st.ExitCode)
		}
	}
	return -1
}

func decodeWaitStatus(ws int) int {
	s := syscall.WaitStatus(ws)
	switch {
	case s.Exited():
		return s.ExitStatus()
	case s.Signaled():
		return 128 + int(s.Signal())
	}
	return -1
}

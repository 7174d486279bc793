package runc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openPidfd opens a pidfd for pid and checks that pid still names the
// process that started at start (clock ticks after boot, as in
// /proc/<pid>/stat), so that a reused PID is never mistaken for the
// instance. It returns nil when the process is gone.
//
// The pidfd is non-blocking so that Go's poller can wait for it: a pidfd
// becomes readable when its process exits, whoever its parent is.
func openPidfd(pid int, start uint64) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err == unix.ESRCH {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening pidfd of %d: %w", pid, err)
	}
	// The pidfd pins the process it was opened for; a start time read
	// after opening it that matches proves it is the right one.
	st, err := readProcStat(pid)
	if err != nil || st.start != start {
		unix.Close(fd)
		return nil, nil
	}
	return os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid)), nil
}

// pidfdExited reports whether the pidfd's process has exited.
func pidfdExited(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0
	}
}

// procStat is what Slipway reads from /proc/<pid>/stat.
type procStat struct {
	state    byte   // R, S, D, Z, ...
	start    uint64 // start time, clock ticks after boot (field 22)
	exitCode int    // wait status of an exited thread (field 52); valid for zombies
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	st := procStat{state: f[0][0], exitCode: -1}
	if st.start, err = strconv.ParseUint(string(f[19]), 10, 64); err != nil {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: %w", pid, err)
	}
	if len(f) >= 50 {
		if c, err := strconv.Atoi(string(f[49])); err == nil {
			st.exitCode = c
		}
	}
	return st, nil
}

// pidfdInfo is struct pidfd_info of <linux/pidfd.h> (PIDFD_INFO_SIZE_VER0).
type pidfdInfo struct {
	Mask                                                              uint64
	CgroupID                                                          uint64
	PID, TGID, PPID, RUID, RGID, EUID, EGID, SUID, SGID, FSUID, FSGID uint32
	ExitCode                                                          int32
}

const (
	pidfdInfoExit = 1 << 3 // PIDFD_INFO_EXIT, Linux 6.15
	// pidfdGetInfo is PIDFD_GET_INFO: _IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info).
	pidfdGetInfo = 3<<30 | uintptr(unsafe.Sizeof(pidfdInfo{}))<<16 | 0xFF<<8 | 11
)

// pidfdExitStatus returns the wait status of the pidfd's exited, reaped
// process. Linux keeps it for holders of a pidfd since 6.15, which is how a
// server that is not the parent learns an exit code.
func pidfdExitStatus(fd int) (int, bool) {
	info := pidfdInfo{Mask: pidfdInfoExit}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), pidfdGetInfo, uintptr(unsafe.Pointer(&info)))
	if errno != 0 || info.Mask&pidfdInfoExit == 0 {
		return 0, false
	}
	return int(info.ExitCode), true
}

// exitCode finds the exit code of the exited process of pidfd fd, known to
// have been pid started at start. The process is not Slipway's child, so
// its status is read from the zombie's /proc entry before its parent reaps
// it, or from the pidfd after (Linux 6.15+). Exits by a signal give 128+N.
// It returns -1 when neither is possible (an older kernel whose reaper
// was quicker).
func exitCode(fd, pid int, start uint64) int {
	for range 2 {
		if ws, ok := pidfdExitStatus(fd); ok {
			return decodeWaitStatus(ws)
		}
		if st, err := readProcStat(pid); err == nil && st.start == start && st.state == 'Z' && st.exitCode >= 0 {
			return decodeWaitStatus(st.exitCode)
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

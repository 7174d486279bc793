package runc

import (
	goruntime "runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// allowedSyscalls are the system calls an instance may make, by what they
// are for; every other one fails with EPERM. The list follows the spirit of
// moby's default profile (what containers have run with for a decade) for
// the capabilities an instance holds (defaultCaps), with less:
//
//   - io_uring_setup, io_uring_enter, io_uring_register: a large kernel
//     surface with a history of privilege escalations; libuv (Node) and
//     others fall back to threads on EPERM.
//   - ptrace, process_vm_readv, process_vm_writev, kcmp, pidfd_getfd: an
//     app has no business reading other processes, not even its own
//     children (debuggers and strace stay on developers' machines).
//   - modify_ldt, and the 32-bit (i386) and x32 ABIs altogether (see
//     seccompProfile): old kernel paths that 64-bit apps do not use.
//   - fanotify_mark, name_to_handle_at, remap_file_pages and the
//     epoll_*_old calls, which nothing in an app needs.
//
// Names unknown to the host's libseccomp or absent on its architecture are
// skipped by runc. A system call newer than every one named here fails
// with ENOSYS (runc's filter does that), so that libcs fall back on
// older calls instead of failing.
var allowedSyscalls = [][]string{
	// Processes, threads and their identity.
	{
		"arch_prctl", "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "vfork",
		"getcpu", "getegid", "geteuid", "getgid", "getgroups", "getpgid", "getpgrp", "getpid", "getppid",
		"getpriority", "getrandom", "getresgid", "getresuid", "getrlimit", "getrusage", "getsid", "gettid", "getuid",
		"get_robust_list", "set_robust_list", "get_thread_area", "set_thread_area", "set_tid_address",
		"ioprio_get", "ioprio_set", "kill", "tgkill", "tkill", "membarrier", "pidfd_open",
		"pidfd_send_signal", "prctl", "prlimit64", "setrlimit", "rseq", "seccomp", "setfsgid", "setfsuid",
		"setgid", "setgroups", "setpgid", "setpriority", "setregid", "setresgid", "setresuid", "setreuid",
		"setsid", "setuid", "times", "umask", "uname", "sysinfo", "wait4", "waitid", "process_mrelease",
		"landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self",
	},
	// Scheduling.
	{
		"sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
		"sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity",
		"sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
	},
	// Signals.
	{
		"alarm", "pause", "restart_syscall", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
		"rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo",
		"sigaltstack", "signalfd", "signalfd4",
	},
	// Memory.
	{
		"brk", "madvise", "map_shadow_stack", "memfd_create", "memfd_secret", "mincore", "mlock", "mlock2",
		"mlockall", "mmap", "mprotect", "mremap", "mseal", "msync", "munlock", "munlockall", "munmap",
		"pkey_alloc", "pkey_free", "pkey_mprotect",
	},
	// Time and timers.
	{
		"adjtimex", "clock_adjtime", "clock_getres", "clock_gettime", "clock_nanosleep", "getitimer",
		"gettimeofday", "nanosleep", "setitimer", "time", "timer_create", "timer_delete",
		"timer_getoverrun", "timer_gettime", "timer_settime", "timerfd_create", "timerfd_gettime",
		"timerfd_settime",
	},
	// Waiting: futexes, polling, events.
	{
		"epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
		"eventfd", "eventfd2", "futex", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake",
		"poll", "ppoll", "pselect6", "select",
	},
	// Files: descriptors, reading and writing.
	{
		"close", "close_range", "copy_file_range", "dup", "dup2", "dup3", "fadvise64", "fallocate",
		"fcntl", "fdatasync", "flock", "fsync", "ftruncate", "io_cancel", "io_destroy", "io_getevents",
		"io_pgetevents", "io_setup", "io_submit", "ioctl", "lseek", "pipe", "pipe2", "pread64", "preadv",
		"preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readv", "sendfile", "splice",
		"sync", "sync_file_range", "syncfs", "tee", "truncate", "vmsplice", "write", "writev",
		"cachestat",
	},
	// Files: names, metadata, extended attributes, notification.
	{
		"access", "chdir", "chmod", "chown", "chroot", "creat", "faccessat", "faccessat2", "fchdir",
		"fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "fgetxattr", "flistxattr",
		"fremovexattr", "fsetxattr", "fstat", "fstatfs", "futimesat", "getcwd", "getdents", "getdents64",
		"getxattr", "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
		"lchown", "lgetxattr", "link", "linkat", "listxattr", "listxattrat", "llistxattr", "lremovexattr",
		"lsetxattr", "lstat", "mkdir", "mkdirat", "mknod", "mknodat", "newfstatat", "open", "openat",
		"openat2", "readlink", "readlinkat", "removexattr", "removexattrat", "rename", "renameat",
		"renameat2", "rmdir", "setxattr", "setxattrat", "stat", "statfs", "statx", "symlink",
		"symlinkat", "unlink", "unlinkat", "utime", "utimensat", "utimes",
	},
	// Sockets (socket itself: see seccompProfile).
	{
		"accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
		"recvfrom", "recvmmsg", "recvmsg", "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown",
		"socketpair",
	},
	// System V and POSIX IPC (the instance has an IPC namespace of its own).
	{
		"mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink",
		"msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop", "shmat",
		"shmctl", "shmdt", "shmget",
	},
}

// nsFlags are clone's flags that make namespaces: an app makes none.
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// seccompProfile is the instances' seccomp filter: the system calls of
// allowedSyscalls, a few more with their arguments checked, and EPERM for
// everything else. Only the host's native ABI is allowed (x86_64 or
// aarch64): a system call through the i386 or x32 ABI on x86_64, or the
// 32-bit ARM one on arm64, is refused whatever its number.
//
// For gVisor (gvisor), which applies the filter inside its Sentry
// (--oci-seccomp), clone3 is allowed: runsc turns every errno rule into
// EPERM (runsc/specutils/seccomp ignores errnoRet), and glibc (2.34 and
// later) falls back on clone only for ENOSYS, so with EPERM no thread
// could be made (Node aborts at start, Python's threads fail). The
// namespaces a clone3 could ask for there are the Sentry's, not the
// host's.
func seccompProfile(gvisor bool) *specs.LinuxSeccomp {
	eperm, enosys := uint(unix.EPERM), uint(unix.ENOSYS)
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: &eperm}
	for _, names := range allowedSyscalls {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: names, Action: specs.ActAllow})
	}
	s.Syscalls = append(s.Syscalls,
		// clone without namespace flags (threads and processes only).
		specs.LinuxSyscall{Names: []string{"clone"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: nsFlags, ValueTwo: 0, Op: specs.OpMaskedEqual}}},
		// Any socket family but AF_VSOCK, which reaches the hypervisor.
		specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_VSOCK, Op: specs.OpNotEqual}}},
	)
	if gvisor {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActAllow})
	} else {
		// clone3's flags sit in memory a filter cannot read: ENOSYS makes
		// libcs fall back on clone.
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys})
	}
	// personality: querying, and the harmless personas (Linux, with
	// UNAME26, with ADDR_NO_RANDOMIZE).
	for _, p := range []uint64{0, 0x0008, 0x20000, 0x20008, 0xffffffff} {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: []string{"personality"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: p, Op: specs.OpEqualTo}}})
	}
	switch goruntime.GOARCH {
	case "amd64":
		s.Architectures = []specs.Arch{specs.ArchX86_64}
	case "arm64":
		s.Architectures = []specs.Arch{specs.ArchAARCH64}
	}
	return s
}

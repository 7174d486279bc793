package runc

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/oci"
)

func TestOCISpec(t *testing.T) {
	p := specParams{id: "app", rootfs: "/r", netns: "/run/netns/slipway-app", cgroupsPath: "/slipway/app", args: []string{"/app"}, cwd: "/", maxOpenFiles: 1024}
	s := ociSpec(p)
	res := s.Linux.Resources
	if *res.Memory.Limit != DefaultMemoryBytes || *res.CPU.Quota != DefaultCPUMillis*100 || *res.CPU.Period != 100000 || res.Pids.Limit != DefaultPids {
		t.Errorf("default limits: memory %d, quota %d/%d, pids %d", *res.Memory.Limit, *res.CPU.Quota, *res.CPU.Period, res.Pids.Limit)
	}
	if res.Memory.Swap != nil {
		t.Errorf("swap limited without swap accounting")
	}
	if len(s.Process.Capabilities.Effective) == 0 || slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") || slices.Contains(s.Process.Capabilities.Bounding, "CAP_NET_RAW") {
		t.Errorf("capabilities of root: %+v", s.Process.Capabilities)
	}
	if !s.Process.NoNewPrivileges {
		t.Errorf("new privileges allowed")
	}
	var netns string
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == "network" {
			netns = ns.Path
		}
	}
	if netns != p.netns {
		t.Errorf("network namespace = %q, want %q", netns, p.netns)
	}
	for _, m := range s.Mounts {
		if m.Type == "bind" {
			t.Errorf("bind mount %s without an /etc dir", m.Destination)
		}
	}

	p.user = oci.User{UID: 1000, GID: 1000}
	p.limits = runtime.Limits{MemoryBytes: 1 << 30, CPUMillis: 1500, Pids: 10}
	p.swapLimit = true
	p.etcDir = "/b/etc"
	s = ociSpec(p)
	res = s.Linux.Resources
	if *res.Memory.Limit != 1<<30 || *res.Memory.Swap != 1<<30 || *res.CPU.Quota != 150000 || res.Pids.Limit != 10 {
		t.Errorf("limits: memory %d swap %d, quota %d, pids %d", *res.Memory.Limit, *res.Memory.Swap, *res.CPU.Quota, res.Pids.Limit)
	}
	if len(s.Process.Capabilities.Effective) != 0 || len(s.Process.Capabilities.Permitted) != 0 {
		t.Errorf("a non-root user gets capabilities: %+v", s.Process.Capabilities)
	}
	var binds []string
	for _, m := range s.Mounts {
		if m.Type == "bind" {
			binds = append(binds, m.Destination+"="+m.Source)
		}
	}
	want := []string{"/etc/hosts=/b/etc/hosts", "/etc/hostname=/b/etc/hostname", "/etc/resolv.conf=/b/etc/resolv.conf"}
	if !slices.Equal(binds, want) {
		t.Errorf("bind mounts = %q, want %q", binds, want)
	}
}

func TestEtcFiles(t *testing.T) {
	f := etcFiles("web-1", []byte("search example.org\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\noptions edns0\n"), nil)
	if got, want := string(f["resolv.conf"]), "search example.org\nnameserver 10.0.0.2\noptions edns0\n"; got != want {
		t.Errorf("resolv.conf = %q, want %q", got, want)
	}
	if !strings.Contains(string(f["hosts"]), "localhost") || !strings.Contains(string(f["hosts"]), "web-1") {
		t.Errorf("hosts = %q", f["hosts"])
	}
	if string(f["hostname"]) != "web-1\n" {
		t.Errorf("hostname = %q", f["hostname"])
	}
	// On a network, the instance resolves through Slipway's resolver only.
	lease := &runtime.Lease{Addr: netip.MustParseAddr("10.88.0.7"), Gateway: netip.MustParseAddr("10.88.0.1"),
		DNS: []netip.Addr{netip.MustParseAddr("10.88.0.1")}}
	f = etcFiles("web-1", []byte("nameserver 10.0.0.2\n"), lease)
	if got, want := string(f["resolv.conf"]), "nameserver 10.88.0.1\n"; got != want {
		t.Errorf("resolv.conf on a network = %q, want %q", got, want)
	}
	if !strings.Contains(string(f["hosts"]), "10.88.0.7\tweb-1") {
		t.Errorf("hosts on a network = %q", f["hosts"])
	}
}

func TestNewRejectsBadRoot(t *testing.T) {
	for _, root := range []string{"/tmp/a,b", "/tmp/a:b", "/tmp/a b"} {
		if _, err := New(Config{Root: root, RuncPath: "/bin/true"}); err == nil {
			t.Errorf("New accepted root %q", root)
		}
	}
}

func TestSwapAccounting(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		want  bool
	}{
		{"v1 with swap accounting", []string{"memory/memory.memsw.limit_in_bytes", "memory/memory.limit_in_bytes"}, true},
		{"v1 without", []string{"memory/memory.limit_in_bytes"}, false},
		{"hybrid: memory on v1, without swap accounting", []string{"memory/memory.limit_in_bytes", "unified/cgroup.controllers"}, false},
		{"v2 with memory.swap.max", []string{"cgroup.controllers", "init.scope/memory.max", "init.scope/memory.swap.max"}, true},
		{"v2 without swap", []string{"cgroup.controllers", "init.scope/memory.max"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tc.files {
				os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755)
				os.WriteFile(filepath.Join(root, f), nil, 0o644)
			}
			if got := swapAccounting(root); got != tc.want {
				t.Errorf("swapAccounting = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOOMKills(t *testing.T) {
	root := t.TempDir()
	write := func(f, body string) {
		os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(root, f), []byte(body), 0o644)
	}
	write("memory/slipway/v1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
	write("slipway/v2/memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
	write("slipway/none/memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
	for path, want := range map[string]int{"/slipway/v1": 2, "/slipway/v2": 1, "/slipway/none": 0} {
		if n, ok := oomKills(root, path); !ok || n != want {
			t.Errorf("oomKills(%s) = %d, %v; want %d", path, n, ok, want)
		}
	}
	if _, ok := oomKills(root, "/slipway/gone"); ok {
		t.Errorf("oomKills of a missing cgroup reports a count")
	}
}

// runc gets clone3 → ENOSYS (libcs then use clone, whose flags the filter
// checks). runsc returns EPERM for every errno rule, whatever its errnoRet,
// and glibc makes no thread after an EPERM from clone3: the gVisor profile
// allows clone3 and has no errno rule meaning anything but EPERM.
func TestSeccompClone3(t *testing.T) {
	rule := func(s *specs.LinuxSeccomp, name string) *specs.LinuxSyscall {
		for i, r := range s.Syscalls {
			if slices.Contains(r.Names, name) {
				return &s.Syscalls[i]
			}
		}
		t.Fatalf("no rule for %s", name)
		return nil
	}
	runc := ociSpec(specParams{id: "a", maxOpenFiles: 1024}).Linux.Seccomp
	if r := rule(runc, "clone3"); r.Action != specs.ActErrno || r.ErrnoRet == nil || *r.ErrnoRet != uint(unix.ENOSYS) {
		t.Errorf("runc's clone3 rule: %+v, want ENOSYS", r)
	}
	gv := ociSpec(specParams{id: "a", maxOpenFiles: 1024, gvisor: true}).Linux.Seccomp
	if r := rule(gv, "clone3"); r.Action != specs.ActAllow {
		t.Errorf("gVisor's clone3 rule: %+v, want allowed", r)
	}
	for _, r := range gv.Syscalls {
		if r.Action == specs.ActErrno && r.ErrnoRet != nil && *r.ErrnoRet != uint(unix.EPERM) {
			t.Errorf("gVisor profile rule %v returns errno %d: runsc would return EPERM", r.Names, *r.ErrnoRet)
		}
	}
	if clone := rule(gv, "clone"); len(clone.Args) == 0 {
		t.Errorf("gVisor's clone rule lost its namespace-flag check")
	}
}

// Under gVisor the app's process limit is RLIMIT_NPROC inside the
// sandbox, and the cgroup (which holds the Sentry, the gofer and systrap's
// stubs, not the app's processes) leaves them room; runc's cgroup limit is
// the app's, with no RLIMIT_NPROC.
func TestGVisorPidsLimit(t *testing.T) {
	nproc := func(s *specs.Spec) (uint64, bool) {
		for _, r := range s.Process.Rlimits {
			if r.Type == "RLIMIT_NPROC" {
				return r.Hard, r.Hard == r.Soft
			}
		}
		return 0, false
	}
	limits := runtime.Limits{Pids: 32}
	s := ociSpec(specParams{id: "a", maxOpenFiles: 1024, limits: limits})
	if got := s.Linux.Resources.Pids.Limit; got != 32 {
		t.Errorf("runc: cgroup pids limit %d, want 32", got)
	}
	if n, _ := nproc(s); n != 0 {
		t.Errorf("runc: RLIMIT_NPROC %d set; the cgroup limits the app", n)
	}
	s = ociSpec(specParams{id: "a", maxOpenFiles: 1024, limits: limits, gvisor: true})
	if n, same := nproc(s); n != 32 || !same {
		t.Errorf("gvisor: RLIMIT_NPROC %d (soft = hard: %v), want 32", n, same)
	}
	if got := s.Linux.Resources.Pids.Limit; got != 2*32+gvisorHostTasks {
		t.Errorf("gvisor: cgroup pids limit %d, want %d", got, 2*32+gvisorHostTasks)
	}
}

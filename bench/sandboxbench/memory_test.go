package main

import (
	"slices"
	"testing"
)

// members counts an instance's processes by its cgroup, by a command line
// naming it, and their descendants; nothing else.
func TestMembers(t *testing.T) {
	ps := []proc{
		{pid: 1, ppid: 0, comm: "init", cgroups: []string{"/"}},
		{pid: 10, ppid: 1, comm: "slipway", cmdline: "slipway server --data /d"},
		// runc: the app in the instance's cgroup, and its worker.
		{pid: 20, ppid: 1, comm: "gunicorn", cgroups: []string{"/slipway/aaaaaaaaaaaa", "/slipway/aaaaaaaaaaaa"}},
		{pid: 21, ppid: 20, comm: "gunicorn", cgroups: []string{"/slipway/aaaaaaaaaaaa"}},
		// gvisor: sandbox and gofer named by their bundle, a stub below.
		{pid: 30, ppid: 1, comm: "exe", cmdline: "runsc-sandbox boot --bundle /run/slipway/runc-x/bbbbbbbbbbbb"},
		{pid: 31, ppid: 1, comm: "exe", cmdline: "runsc-gofer gofer --bundle /run/slipway/runc-x/bbbbbbbbbbbb"},
		{pid: 32, ppid: 30, comm: "exe"},
		// another instance, whose id only shares a prefix.
		{pid: 40, ppid: 1, comm: "hello", cgroups: []string{"/slipway/aaaaaaaaaaab"}},
		// microvm: QEMU names the instance.
		{pid: 50, ppid: 1, comm: "qemu-system-x86", cmdline: "qemu-system-x86_64 -name slipway-cccccccccccc"},
	}
	got := members(ps, []string{"aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc", "dddddddddddd"})
	want := map[string][]int{"aaaaaaaaaaaa": {20, 21}, "bbbbbbbbbbbb": {30, 31, 32}, "cccccccccccc": {50}}
	for id, pids := range want {
		g := slices.Clone(got[id])
		slices.Sort(g)
		if !slices.Equal(g, pids) {
			t.Errorf("members of %s = %v, want %v", id, g, pids)
		}
	}
	if p, ok := got["dddddddddddd"]; ok {
		t.Errorf("an instance without processes has members %v", p)
	}
}

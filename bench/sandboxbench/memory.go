package main

// What an instance costs the host's memory: the processes of the host that
// make up its sandbox, found by what names the instance, and its cgroup.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// footprint is what an instance (or an app run as a plain process) holds
// of the host's memory at one moment.
type footprint struct {
	// PSS is the proportional set size summed over its host processes:
	// each page counted once, a page shared with other processes (a
	// binary's text, a library, shared memory) split among them, so that
	// the footprints of N instances add up to what they hold together.
	PSS int64 `json:"pss_bytes"`
	// RSS is the resident set size summed over the same processes (a
	// shared page counted in full by each).
	RSS int64 `json:"rss_bytes"`
	// Cgroup is the memory charged to the instance's cgroup (page cache,
	// tmpfs and kernel memory included, as its memory limit counts it);
	// -1 when it has no cgroup of its own.
	Cgroup int64 `json:"cgroup_bytes"`
	// Procs names the processes counted (see procName), sorted.
	Procs []string `json:"processes"`
}

// proc is one process of the host.
type proc struct {
	pid, ppid int
	comm      string
	cmdline   string // arguments joined by spaces
	cgroups   []string
}

// processes lists the host's processes, this one left out.
func processes() []proc {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := "/proc/" + e.Name()
		stat, err := os.ReadFile(dir + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 {
			continue
		}
		p := proc{pid: pid, comm: s[open+1 : end]}
		p.ppid, _ = strconv.Atoi(f[1])
		cmd, _ := os.ReadFile(dir + "/cmdline")
		p.cmdline = strings.ReplaceAll(string(cmd), "\x00", " ")
		cg, _ := os.ReadFile(dir + "/cgroup")
		for line := range strings.Lines(string(cg)) {
			// hierarchy-ID:controllers:path
			if parts := strings.SplitN(strings.TrimSpace(line), ":", 3); len(parts) == 3 {
				p.cgroups = append(p.cgroups, parts[2])
			}
		}
		out = append(out, p)
	}
	return out
}

// members returns, for each instance id, the host processes that make up
// its sandbox: those in a cgroup named after it (the runc driver's
// /slipway/<id>: the app, or `runc init` waiting in a prepared sandbox;
// runsc's sandbox), those whose command line names it (runsc's sandbox and
// gofer name the instance's bundle; QEMU is named slipway-<id>), and the
// descendants of all of these (gVisor's stub processes, an app's workers).
func members(ps []proc, ids []string) map[string][]int {
	out := map[string][]int{}
	children := map[int][]int{}
	for _, p := range ps {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	for _, id := range ids {
		var roots []int
		for _, p := range ps {
			in := strings.Contains(p.cmdline, id)
			for _, cg := range p.cgroups {
				if strings.HasSuffix(cg, "/"+id) {
					in = true
				}
			}
			if in {
				roots = append(roots, p.pid)
			}
		}
		if len(roots) > 0 {
			out[id] = tree(children, roots)
		}
	}
	return out
}

// tree is roots and all their descendants, each once.
func tree(children map[int][]int, roots []int) []int {
	seen := map[int]bool{}
	var out []int
	for len(roots) > 0 {
		pid := roots[0]
		roots = roots[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		roots = append(roots, children[pid]...)
	}
	return out
}

// processTree is pid and its descendants (an app run as a plain process).
func processTree(pid int) []int {
	children := map[int][]int{}
	for _, p := range processes() {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	return tree(children, []int{pid})
}

// measure reads the footprint of the processes pids and, if cgroup is not
// empty, of the instance's cgroup of that name.
func measure(pids []int, cgroup string) footprint {
	fp := footprint{Cgroup: -1}
	for _, pid := range pids {
		pss, rss, err := pssRSS(pid)
		if err != nil {
			continue // exited meanwhile
		}
		fp.PSS += pss
		fp.RSS += rss
		fp.Procs = append(fp.Procs, procName(pid))
	}
	sort.Strings(fp.Procs)
	if cgroup != "" {
		fp.Cgroup = cgroupMemory(cgroup)
	}
	return fp
}

// procName names a process by its comm or, where that is "exe" (runsc
// runs its sandbox, gofer and stubs as /proc/self/exe), by its argv[0].
func procName(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	name := strings.TrimSpace(string(b))
	if name == "exe" {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if arg0, _, _ := strings.Cut(string(cmd), "\x00"); arg0 != "" {
			name = filepath.Base(arg0)
		}
	}
	return name
}

// pssRSS reads a process's Pss and Rss from /proc/PID/smaps_rollup.
func pssRSS(pid int) (pss, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Pss:":
			pss = kb << 10
		case "Rss:":
			rss = kb << 10
		}
	}
	return pss, rss, nil
}

// cgroupMemory is the memory charged to the runc driver's cgroup of
// instance id (its default parent, /slipway): memory.usage_in_bytes on
// cgroup v1 (or hybrid, as here), memory.current on v2; -1 if there is
// none.
func cgroupMemory(id string) int64 {
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory/slipway", id, "memory.usage_in_bytes"),
		filepath.Join("/sys/fs/cgroup/slipway", id, "memory.current"),
	} {
		if b, err := os.ReadFile(f); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

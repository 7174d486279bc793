package ktest

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
)

// nodeName is the kubelet's node.
const nodeName = "ktest-node"

// PodPidsLimit is the kubelet's podPidsLimit: how many processes each
// pod may have (a pod spec cannot say).
const PodPidsLimit = 128

// nodeIP is the node's address: the bridge's, the pods' gateway.
const nodeIP = "10.255.77.1"

// lockPath serialises kubelets on one machine: they share cgroups, the
// bridge's name and /var/log/containers.
const lockPath = "/run/slipway-ktest.lock"

// hostState is what the host had before the kubelet ran, so that the
// teardown removes only what the cluster added.
type hostState struct {
	chains  map[string][]string // iptables table → chains
	rules   map[string][]string // iptables table → rules (iptables -S lines)
	netns   []string
	logs    []string // /var/log/containers
	results []string // /var/lib/cni/results
	cgroups []string
	// Directories a kubelet and containerd make whatever their
	// configuration says (device plugins' sockets, runc's state, shims'
	// sockets), if they were not there before.
	absent []string
}

var fixedDirs = []string{"/var/lib/kubelet", "/run/containerd", "/var/log/containers"}

func snapshot() hostState {
	s := hostState{chains: map[string][]string{}, rules: map[string][]string{}}
	for _, table := range iptablesTables {
		s.chains[table], s.rules[table] = iptablesState(table)
	}
	s.netns = dirNames("/run/netns")
	s.logs = dirNames("/var/log/containers")
	s.results = dirNames("/var/lib/cni/results")
	s.cgroups = cgroupDirs()
	for _, d := range fixedDirs {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			s.absent = append(s.absent, d)
		}
	}
	return s
}

var iptablesTables = []string{"filter", "nat", "mangle"}

// iptablesState lists a table's chains and rules, as iptables -S prints
// them.
func iptablesState(table string) (chains, rules []string) {
	out, err := exec.Command("iptables", "-w", "-t", table, "-S").Output()
	if err != nil {
		return nil, nil
	}
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "-N "):
			chains = append(chains, strings.TrimPrefix(l, "-N "))
		case strings.HasPrefix(l, "-A "):
			rules = append(rules, l)
		}
	}
	return chains, rules
}

func dirNames(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// cgroupDirs lists the cgroup directories of every hierarchy, two levels
// deep (where a kubelet without QoS cgroups and containerd put pods).
func cgroupDirs() []string {
	var out []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, r := range roots {
		filepath.WalkDir(r, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			if strings.Count(strings.TrimPrefix(p, r), "/") > 3 {
				return filepath.SkipDir
			}
			out = append(out, p)
			return nil
		})
	}
	return out
}

// startNode starts containerd and a kubelet and waits for the node to be
// Ready.
func (c *Cluster) startNode(t testing.TB, procs []*proc, containerdBin, ctrBin, kubeletBin string) []*proc {
	t.Helper()
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() }) // after the teardown: cleanups run last in, first out
	reclaim(t)
	checkSubnet(t)
	// A bridge left by a run that was killed: nothing else uses its name.
	exec.Command("ip", "link", "del", Bridge).Run()
	c.Subnet = subnet
	before := snapshot()
	c.Node = nodeName
	t.Cleanup(func() { c.removeHostState(t, before) })
	// The bridge is made here, not by the CNI plugin at the first pod:
	// its address (the pods' gateway) is the node's, where the API server
	// reaches the kubelet (a kubelet refuses a loopback node IP).
	for _, args := range [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", nodeIP + "/24", "dev", Bridge},
		{"link", "set", Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ktest: ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

	dir := c.Dir
	c.containerd = filepath.Join(dir, "containerd.sock")
	c.certsDir = filepath.Join(dir, "certs.d")
	write(t, filepath.Join(dir, "cni", "10-ktest.conflist"), fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "slipway-ktest",
  "plugins": [{
    "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}
  }]
}
`, Bridge, subnet, filepath.Join(dir, "cni-ipam")))
	if err := os.MkdirAll(c.certsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "containerd.toml"), fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, filepath.Join(dir, "containerd-root"), filepath.Join(dir, "containerd-state"), c.containerd, pauseImage,
		filepath.Join(dir, "cni"), c.certsDir))
	cd := startProc(t, dir, "containerd", containerdBin, "--config", filepath.Join(dir, "containerd.toml"))
	procs = append(procs, cd)
	deadline := time.Now().Add(30 * time.Second)
	for exec.Command(ctrBin, "-a", c.containerd, "version").Run() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("ktest: containerd never answered:\n%s", tail(cd.log, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.importPause(t, ctrBin)

	port := freePort(t)
	write(t, filepath.Join(dir, "kubelet.yaml"), fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupsPerQOS: true
podPidsLimit: %d
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
serializeImagePulls: false
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
featureGates: {PodLogsQuerySplitStreams: true}
`, nodeIP, port, PodPidsLimit, c.containerd, filepath.Join(dir, "pod-logs")))
	write(t, filepath.Join(dir, "kubelet.kubeconfig"), kubeconfig(c.Config.Host, c.Config.BearerToken))
	kl := startProc(t, dir, "kubelet", kubeletBin,
		"--config", filepath.Join(dir, "kubelet.yaml"),
		"--kubeconfig", filepath.Join(dir, "kubelet.kubeconfig"),
		"--root-dir", filepath.Join(dir, "kubelet"), "--cert-dir", filepath.Join(dir, "kubelet", "pki"),
		"--hostname-override", nodeName, "--node-ip", nodeIP, "-v", "1")
	procs = append(procs, kl)
	c.waitNodeReady(t, kl)
	return procs
}

// checkSubnet fails the test if the host routes the pods' range already.
func checkSubnet(t testing.TB) {
	t.Helper()
	pods := netip.MustParsePrefix(subnet)
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("ktest: ip route: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.Contains(l, "dev "+Bridge) {
			continue
		}
		dst := f[0]
		if f[0] == "local" || f[0] == "broadcast" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if p, err := netip.ParsePrefix(dst); err == nil && p.Overlaps(pods) {
			t.Fatalf("ktest: the host already routes %s (%s): the pods' range %s would clash", p, l, subnet)
		}
	}
}

// importPause builds the pod sandbox image (a static program that waits
// for a signal) and imports it into containerd.
func (c *Cluster) importPause(t testing.TB, ctrBin string) {
	t.Helper()
	bin := filepath.Join(c.Dir, "pause")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin,
		"github.com/slipwayhq/slipway/internal/runtime/kubernetes/ktest/pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ktest: building the pause program: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(pauseImage)
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(c.Dir, "pause.tar")
	pause := drivertest.Image(t, v1.Config{Entrypoint: []string{"/pause"}}, drivertest.Layer(t, drivertest.File{Name: "pause", Body: b, Mode: 0o755}))
	if err := tarball.WriteToFile(tarPath, tag, pause); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(ctrBin, "-a", c.containerd, "-n", "k8s.io", "images", "import", tarPath).CombinedOutput(); err != nil {
		t.Fatalf("ktest: importing the pause image: %v\n%s", err, out)
	}
}

// AllowHTTPRegistry lets the node pull from host (host:port) over plain
// HTTP, as from a registry on loopback that a test started.
func (c *Cluster) AllowHTTPRegistry(t testing.TB, host string) {
	t.Helper()
	if c.certsDir == "" {
		t.Fatal("ktest: AllowHTTPRegistry needs a kubelet")
	}
	write(t, filepath.Join(c.certsDir, host, "hosts.toml"), fmt.Sprintf(`server = "http://%s"
[host."http://%s"]
  capabilities = ["pull", "resolve"]
`, host, host))
}

// teardownNode deletes every pod, stops the kubelet and containerd and
// removes what the pods had: containers and their shims, network
// namespaces and mounts.
func (c *Cluster) teardownNode(t testing.TB, procs []*proc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err == nil {
		grace := int64(1)
		for _, ns := range nss.Items {
			c.Client.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{})
		}
		// The kubelet kills each pod's containers and tears its sandbox
		// down (network included), then removes the pod.
		for ctx.Err() == nil {
			pods, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			if err != nil || len(pods.Items) == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	var ctr string
	if p, err := exec.LookPath("ctr"); err == nil {
		ctr = p
	}
	for _, p := range procs {
		if p.name == "kubelet" {
			p.stop()
		}
	}
	if ctr != "" {
		run := func(args ...string) string {
			out, _ := exec.Command(ctr, append([]string{"-a", c.containerd, "-n", "k8s.io"}, args...)...).Output()
			return string(out)
		}
		for _, id := range strings.Fields(run("tasks", "ls", "-q")) {
			run("tasks", "kill", "-s", "SIGKILL", id)
			run("tasks", "rm", "-f", id)
		}
		for _, id := range strings.Fields(run("containers", "ls", "-q")) {
			run("containers", "rm", id)
		}
	}
	for _, p := range procs {
		if p.name == "containerd" {
			p.stop()
		}
	}
	// Shims outlive containerd by design; these are this cluster's.
	for _, pid := range pidsWith(c.containerd) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	unmountUnder(t, c.Dir)
}

// pidsWith lists the processes whose command line holds s.
func pidsWith(s string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			out = append(out, pid)
		}
	}
	return out
}

// unmountUnder unmounts every mount point under dir, deepest first.
func unmountUnder(t testing.TB, dir string) {
	t.Helper()
	var points []string
	for _, l := range lines("/proc/self/mountinfo") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && err != syscall.EINVAL {
			t.Errorf("ktest: unmounting %s: %v", p, err)
		}
	}
}

// removeHostState removes what the node added to the host: network
// namespaces, the bridge, iptables chains and rules, cgroups, CNI result
// files and container log links.
func (c *Cluster) removeHostState(t testing.TB, before hostState) {
	t.Helper()
	for _, ns := range dirNames("/run/netns") {
		if !slices.Contains(before.netns, ns) && strings.HasPrefix(ns, "cni-") {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	if err := exec.Command("ip", "link", "del", Bridge).Run(); err != nil {
		if _, serr := os.Stat("/sys/class/net/" + Bridge); serr == nil {
			t.Errorf("ktest: removing the bridge %s: %v", Bridge, err)
		}
	}
	for _, table := range iptablesTables {
		chains, rules := iptablesState(table)
		for _, r := range rules {
			if !slices.Contains(before.rules[table], r) {
				args := append([]string{"-w", "-t", table, "-D"}, strings.Fields(strings.TrimPrefix(r, "-A "))...)
				if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
					t.Errorf("ktest: iptables -t %s %s: %v: %s", table, r, err, out)
				}
			}
		}
		for _, ch := range chains {
			if !slices.Contains(before.chains[table], ch) {
				exec.Command("iptables", "-w", "-t", table, "-F", ch).Run()
				if out, err := exec.Command("iptables", "-w", "-t", table, "-X", ch).CombinedOutput(); err != nil {
					t.Errorf("ktest: iptables -t %s -X %s: %v: %s", table, ch, err, out)
				}
			}
		}
	}
	for _, n := range dirNames("/var/log/containers") {
		if !slices.Contains(before.logs, n) {
			os.Remove(filepath.Join("/var/log/containers", n))
		}
	}
	for _, n := range dirNames("/var/lib/cni/results") {
		if !slices.Contains(before.results, n) && (strings.HasPrefix(n, "slipway-ktest-") || strings.HasPrefix(n, "cni-loopback-")) {
			os.Remove(filepath.Join("/var/lib/cni/results", n))
		}
	}
	for _, d := range before.absent {
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("ktest: removing %s: %v", d, err)
		}
	}
	after := cgroupDirs()
	sort.Slice(after, func(i, j int) bool { return len(after[i]) > len(after[j]) })
	// Whatever still runs in the pods' cgroups (the kubelet and
	// containerd are gone) is the cluster's.
	for _, cg := range after {
		if !slices.Contains(before.cgroups, cg) && podCgroup(cg) {
			killCgroup(cg)
		}
	}
	for _, cg := range after {
		if slices.Contains(before.cgroups, cg) || !podCgroup(cg) {
			continue
		}
		var err error
		for range 50 {
			if err = syscall.Rmdir(cg); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil && !os.IsNotExist(err) {
			t.Errorf("ktest: removing the cgroup %s: %v", cg, err)
		}
	}
}

// podCgroup reports whether a cgroup is one the kubelet or containerd
// makes for pods and containers (other tests on the machine make cgroups
// of their own meanwhile: those are never touched).
func podCgroup(p string) bool {
	base := filepath.Base(p)
	if strings.Contains(p, "/kubepods") || strings.Contains(p, "/k8s.io") || (strings.HasPrefix(base, "pod") && len(base) == 39) {
		return true
	}
	if len(base) != 64 {
		return false
	}
	_, err := hex.DecodeString(base)
	return err == nil
}

// killCgroup kills every process in a cgroup.
func killCgroup(cg string) {
	for _, l := range lines(filepath.Join(cg, "cgroup.procs")) {
		var pid int
		if _, err := fmt.Sscanf(l, "%d", &pid); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// reclaim removes what a node of an earlier test left when its process
// was killed before its teardown (a test binary's timeout): the
// containers and shims still running, their mounts and cgroups, and its
// directory. The caller holds the lock, so no other node is live; the
// directories of clusters without a node (no containerd socket) are
// another test's and left alone.
func reclaim(t testing.TB) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "ktest-*"))
	var stale []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "containerd.toml")); err == nil {
			stale = append(stale, d)
		}
	}
	if len(stale) == 0 {
		return
	}
	t.Logf("ktest: reclaiming what earlier nodes left: %v", stale)
	cgs := cgroupDirs()
	sort.Slice(cgs, func(i, j int) bool { return len(cgs[i]) > len(cgs[j]) })
	for _, cg := range cgs {
		if strings.Contains(cg, "/k8s.io") {
			killCgroup(cg)
		}
	}
	for _, d := range stale {
		for _, pid := range pidsWith(filepath.Join(d, "containerd.sock")) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	time.Sleep(200 * time.Millisecond)
	for _, cg := range cgs {
		if strings.Contains(cg, "/k8s.io") {
			syscall.Rmdir(cg)
		}
	}
	for _, d := range stale {
		unmountUnder(t, d)
		os.RemoveAll(d)
	}
	exec.Command("ip", "link", "del", Bridge).Run()
}

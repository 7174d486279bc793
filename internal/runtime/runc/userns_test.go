package runc

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
	"github.com/slipwayhq/slipway/internal/runtime/oci"
)

func TestParseIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want oci.IDMap
	}{
		{"100000", oci.IDMap{HostUID: 100000, HostGID: 100000, Size: 65536}},
		{"100000:131072", oci.IDMap{HostUID: 100000, HostGID: 100000, Size: 131072}},
		{"100000:200000:65536", oci.IDMap{HostUID: 100000, HostGID: 200000, Size: 65536}},
	} {
		if got, err := ParseIDs(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseIDs(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "off", "x", "-1", "100000:1000", "0:65536", "1:2:3:4", "4294967000", "100000:0:65536"} {
		if got, err := ParseIDs(bad); err == nil {
			t.Errorf("ParseIDs(%q) = %+v, want an error", bad, got)
		}
	}
}

func TestDefaultIDs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	none := filepath.Join(dir, "missing")
	if m, err := defaultIDs(none, none); err != nil || m != (oci.IDMap{HostUID: DefaultIDBase, HostGID: DefaultIDBase, Size: MinIDRange}) {
		t.Errorf("without files: %+v, %v", m, err)
	}
	other := write("other", "alice:100000:65536\n")
	if m, err := defaultIDs(other, other); err != nil || m.HostUID != DefaultIDBase {
		t.Errorf("without a slipway entry: %+v, %v", m, err)
	}
	uid := write("subuid", "alice:100000:65536\nslipway:300000:131072\n")
	gid := write("subgid", "slipway:400000:65536\n")
	if m, err := defaultIDs(uid, gid); err != nil || m != (oci.IDMap{HostUID: 300000, HostGID: 400000, Size: 65536}) {
		t.Errorf("with slipway entries: %+v, %v", m, err)
	}
	if _, err := defaultIDs(uid, other); err == nil {
		t.Errorf("an entry in subuid only was accepted")
	}
	small := write("small", "slipway:300000:1000\n")
	if _, err := defaultIDs(small, small); err == nil {
		t.Errorf("a range of 1000 IDs was accepted")
	}
}

func TestOCISpecUserNS(t *testing.T) {
	p := specParams{id: "app", rootfs: "/r", netns: "/run/netns/slipway-app", args: []string{"/app"}, cwd: "/",
		ids: oci.IDMap{HostUID: 100000, HostGID: 200000, Size: 65536}, sysfs: "/b/sys"}
	s := ociSpec(p)
	if !slices.ContainsFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == "user" && ns.Path == "" }) {
		t.Errorf("no new user namespace: %+v", s.Linux.Namespaces)
	}
	if len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0].ContainerID != 0 || s.Linux.UIDMappings[0].HostID != 100000 || s.Linux.UIDMappings[0].Size != 65536 {
		t.Errorf("uid mappings %+v", s.Linux.UIDMappings)
	}
	if len(s.Linux.GIDMappings) != 1 || s.Linux.GIDMappings[0].HostID != 200000 {
		t.Errorf("gid mappings %+v", s.Linux.GIDMappings)
	}
	for _, m := range s.Mounts {
		if m.Destination == "/sys" && (m.Type != "bind" || m.Source != "/b/sys" || !slices.Contains(m.Options, "ro") || slices.Contains(m.Options, "rbind")) {
			t.Errorf("/sys mounted %+v, want a read-only bind of /b/sys, not recursive", m)
		}
	}
	p.ids, p.sysfs = oci.IDMap{}, ""
	s = ociSpec(p)
	if slices.ContainsFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == "user" }) || len(s.Linux.UIDMappings) > 0 {
		t.Errorf("a user namespace without an ID map")
	}
}

// procIDs returns the real, effective, saved and filesystem user IDs
// (field "Uid") or group IDs ("Gid") of a host process.
func procIDs(t *testing.T, pid int, field string) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("/proc/%d/status has no %s line", pid, field)
	return nil
}

// TestUserNamespace checks that an image without USER runs as root in the
// instance and as an unprivileged user of the server's range on the host,
// that the image's file owners are kept inside and shifted on the host,
// that the app writes its /tmp, and that /sys shows the instance's
// network namespace, not the host's.
func TestUserNamespace(t *testing.T) {
	requireSandbox(t)
	ref := pushImage(t, "userns", nil, drivertest.Layer(t,
		drivertest.File{Name: "data", Dir: true, UID: 1000, GID: 1000},
		drivertest.File{Name: "data/owned", Body: []byte("mine"), UID: 1000, GID: 1000},
		drivertest.File{Name: "data/nobody", Body: []byte("far"), UID: 200000, GID: 200000},
	))
	d := newDriver(t, Config{})
	ids, ok := d.UserNS()
	if !ok {
		t.Fatal("the driver's default runs no user namespace")
	}
	h := startApp(t, d, runtime.Spec{Image: ref})
	pid := inspectPID(t, d, h)

	for _, field := range []string{"Uid", "Gid"} {
		want := fmt.Sprint(ids.HostUID)
		if field == "Gid" {
			want = fmt.Sprint(ids.HostGID)
		}
		if got := procIDs(t, pid, field); len(got) != 4 || slices.ContainsFunc(got, func(s string) bool { return s != want }) {
			t.Errorf("the app's %s on the host = %v, want %s (the range's root)", field, got, want)
		}
	}
	if _, body := get(t, d, h, "/id"); strings.TrimSpace(body) != "uid=0 gid=0 groups=" {
		t.Errorf("GET /id = %q, want root", body)
	}
	if _, body := get(t, d, h, "/read?path=/proc/self/uid_map"); strings.Join(strings.Fields(body), " ") != fmt.Sprintf("0 %d %d", ids.HostUID, ids.Size) {
		t.Errorf("uid_map in the instance = %q", body)
	}
	for path, want := range map[string]string{
		"/":            "uid=0 gid=0",
		"/app":         "uid=0 gid=0",
		"/data/owned":  "uid=1000 gid=1000",
		"/data/nobody": "uid=65534 gid=65534",
		"/etc/hosts":   "uid=0 gid=0",
	} {
		if _, body := get(t, d, h, "/stat?path="+path); !strings.Contains(body, want) {
			t.Errorf("stat %s in the instance: %q, want %s", path, body, want)
		}
	}
	rootfs := filepath.Join(imageDir(d, ref[strings.Index(ref, "@")+1:]), "rootfs")
	for path, want := range map[string][2]int{
		".":           {ids.UID(0), ids.GID(0)},
		"data/owned":  {int(ids.HostUID) + 1000, int(ids.HostGID) + 1000},
		"data/nobody": {int(ids.HostUID) + 65534, int(ids.HostGID) + 65534},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(rootfs, path), &st); err != nil {
			t.Fatal(err)
		}
		if [2]int{int(st.Uid), int(st.Gid)} != want {
			t.Errorf("%s of the unpacked image is owned by %d:%d on the host, want %d:%d", path, st.Uid, st.Gid, want[0], want[1])
		}
	}
	if code, body := get(t, d, h, "/write?path=/tmp/x&data=y"); code != http.StatusOK {
		t.Errorf("writing /tmp: %d %s", code, body)
	}
	if code, body := get(t, d, h, "/write?path=/data/owned&data=y"); code != http.StatusOK {
		t.Errorf("root writing a file of user 1000: %d %s", code, body)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(d.bundleDir(h.ID), "layer", "upper", "tmp", "x"), &st); err != nil || st.Uid != ids.HostUID {
		t.Errorf("a file the app wrote is owned by %d on the host (%v), want %d", st.Uid, err, ids.HostUID)
	}
	// Only the host's root enters the bundle once the instance runs.
	if fi, err := os.Stat(d.bundleDir(h.ID)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("bundle mode %v, %v; want 0700", fi.Mode(), err)
	}
	// /sys is the instance's: its lo, none of the host's interfaces.
	if code, _ := get(t, d, h, "/stat?path=/sys/class/net/lo"); code != http.StatusOK {
		t.Errorf("/sys/class/net/lo missing in the instance")
	}
	hostIfs, _ := os.ReadDir("/sys/class/net")
	for _, e := range hostIfs {
		if e.Name() == "lo" {
			continue
		}
		if code, _ := get(t, d, h, "/stat?path=/sys/class/net/"+e.Name()); code != http.StatusNotFound {
			t.Errorf("the instance's /sys shows the host's interface %s", e.Name())
		}
	}
	if code, _ := get(t, d, h, "/write?path=/sys/kernel/x&data=x"); code == http.StatusOK {
		t.Errorf("/sys is writable")
	}

	// Root binds a port below 1024, as it could in the host's namespace.
	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
	defer cancel()
	dir := t.TempDir()
	h80, err := d.Start(ctx, runtime.Spec{ID: drivertest.NewID(t), Image: ref, Port: 80,
		StdoutPath: filepath.Join(dir, "out"), StderrPath: filepath.Join(dir, "err")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background(), h80) })
	drivertest.WaitHTTP(t, d, h80, 80)

	t.Run("off", func(t *testing.T) {
		d := newDriver(t, Config{NoUserNS: true})
		if _, ok := d.UserNS(); ok {
			t.Fatal("NoUserNS: the driver maps IDs")
		}
		h := startApp(t, d, runtime.Spec{Image: ref})
		if got := procIDs(t, inspectPID(t, d, h), "Uid"); got[0] != "0" {
			t.Errorf("without a user namespace the app's uid on the host = %v, want 0", got)
		}
		if _, body := get(t, d, h, "/stat?path=/data/owned"); !strings.Contains(body, "uid=1000 gid=1000") {
			t.Errorf("stat /data/owned: %q", body)
		}
	})
}

// TestStopRemovesLegacyBundle checks that Stop removes what an instance
// left in Root/instances, where Slipway kept bundles before RunDir.
func TestStopRemovesLegacyBundle(t *testing.T) {
	requireSandbox(t)
	d := newDriver(t, Config{})
	id := drivertest.NewID(t)
	layer := filepath.Join(d.cfg.Root, "instances", id, "layer")
	if err := os.MkdirAll(layer, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", layer, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(layer, unix.MNT_DETACH) })
	if err := d.Stop(context.Background(), &runtime.Handle{ID: id}); err != nil {
		t.Fatal(err)
	}
	checkFreed(t, d.cfg.Root, id)
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), layer) {
		t.Errorf("the legacy bundle's layer is still mounted")
	}
}

// BenchmarkStartUserNS measures Start → first 200 of the test app with the
// user namespace and without (NoUserNS), alternating the two in each
// round, and reports both and their ratio. The images are unpacked before
// the clock starts.
func BenchmarkStartUserNS(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	_, ref := app(b)
	drivers := map[string]*Driver{}
	for _, name := range []string{"userns", "host"} {
		d, err := New(Config{Root: b.TempDir(), NoUserNS: name == "host"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { d.Close() })
		drivers[name] = d
	}
	start := func(d *Driver) time.Duration {
		ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
		defer cancel()
		t0 := time.Now()
		h, err := d.Start(ctx, runtime.Spec{ID: drivertest.NewID(b), Image: ref})
		if err != nil {
			b.Fatal(err)
		}
		defer d.Stop(context.Background(), h)
		for {
			if code, _, err := drivertest.Get(ctx, d, h, 3000, "/"); err == nil && code == http.StatusOK {
				return time.Since(t0)
			}
			if ctx.Err() != nil {
				b.Fatal("no answer")
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	for _, d := range drivers {
		start(d) // unpacks the image
	}
	b.ResetTimer()
	sum := map[string]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, name := range []string{"userns", "host"} {
			sum[name] += start(drivers[name])
		}
	}
	b.ReportMetric(float64(sum["userns"].Microseconds())/1000/float64(b.N), "ms-userns/start")
	b.ReportMetric(float64(sum["host"].Microseconds())/1000/float64(b.N), "ms-host/start")
	b.ReportMetric(float64(sum["userns"])/float64(sum["host"]), "userns/host")
}

// TestAdoptAfterUpgrade checks that a driver adopts an instance that an
// older Slipway started (its bundle under Root/instances, no user
// namespace): it answers, and Stop removes all of it.
func TestAdoptAfterUpgrade(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	root := t.TempDir()
	old := newDriver(t, Config{Root: root, RunDir: filepath.Join(root, "instances"), NoUserNS: true})
	h := startApp(t, old, runtime.Spec{Image: ref})
	old.Close()

	d := newDriver(t, Config{Root: root})
	if err := d.Recover(context.Background(), h); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if code, _ := get(t, d, h, "/"); code != http.StatusOK {
		t.Errorf("the adopted instance answered %d", code)
	}
	if got := procIDs(t, inspectPID(t, d, h), "Uid"); got[0] != "0" {
		t.Errorf("the adopted instance's uid = %v, want 0 (as it was started)", got)
	}
	if err := d.Stop(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	checkFreed(t, root, h.ID)
}

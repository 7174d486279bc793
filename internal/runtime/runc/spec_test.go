package runc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipwayhq/slipway/internal/runtime"
)

func TestProcessEnv(t *testing.T) {
	for _, tc := range []struct {
		name        string
		image, spec []string
		want        []string
	}{
		{
			name:  "spec overrides image, PORT overrides both",
			image: []string{"PATH=/bin", "A=image", "PORT=1"},
			spec:  []string{"A=spec", "B=x=y", "PORT=2"},
			want:  []string{"PATH=/bin", "A=spec", "PORT=3000", "B=x=y", "HOSTNAME=host", "HOME=/home/u"},
		},
		{
			name: "defaults",
			want: []string{"PORT=3000", "PATH=" + defaultPath, "HOSTNAME=host", "HOME=/home/u"},
		},
		{
			name:  "set values are kept",
			image: []string{"HOME=/data", "HOSTNAME=mine"},
			want:  []string{"HOME=/data", "HOSTNAME=mine", "PORT=3000", "PATH=" + defaultPath},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ProcessEnv(tc.image, tc.spec, 3000, "host", "/home/u")
			if !slices.Equal(got, tc.want) {
				t.Errorf("processEnv = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProcessArgs(t *testing.T) {
	img := v1.Config{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"serve"}}
	for _, tc := range []struct {
		name    string
		command []string
		cfg     v1.Config
		want    []string
	}{
		{"image", nil, img, []string{"/bin/sh", "-c", "serve"}},
		{"command replaces both", []string{"node", "app.js"}, img, []string{"node", "app.js"}},
		{"cmd only", nil, v1.Config{Cmd: []string{"python3", "main.py"}}, []string{"python3", "main.py"}},
		{"none", nil, v1.Config{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := processArgs(tc.command, tc.cfg)
			if tc.want == nil {
				if err == nil {
					t.Errorf("processArgs = %q, want an error", got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("processArgs = %q, %v, want %q", got, err, tc.want)
			}
		})
	}
}

func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n# comment\nnode:x:1000:1000::/home/node:/bin/sh\nweb:x:33:33:www:/var/www:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nnode:x:1000:\nwww-data:x:33:\naudio:x:29:node,web\nstaff:x:50:node\n"), 0o644)
	for _, tc := range []struct {
		spec string
		want user
		err  bool
	}{
		{"", user{0, 0, nil, "/root"}, false},
		{"node", user{1000, 1000, []uint32{29, 50}, "/home/node"}, false},
		{"1000", user{1000, 1000, []uint32{29, 50}, "/home/node"}, false},
		{"web:staff", user{33, 50, nil, "/var/www"}, false},
		{"4242", user{4242, 0, nil, "/"}, false},
		{"4242:4343", user{4242, 4343, nil, "/"}, false},
		{"ghost", user{}, true},
		{"node:ghosts", user{}, true},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := resolveUser(root, tc.spec)
			if tc.err {
				if err == nil {
					t.Errorf("resolveUser(%q) = %+v, want an error", tc.spec, got)
				}
				return
			}
			if err != nil || got.uid != tc.want.uid || got.gid != tc.want.gid || !slices.Equal(got.groups, tc.want.groups) || got.home != tc.want.home {
				t.Errorf("resolveUser(%q) = %+v, %v, want %+v", tc.spec, got, err, tc.want)
			}
		})
	}
	t.Run("no /etc", func(t *testing.T) {
		got, err := resolveUser(t.TempDir(), "")
		if err != nil || got.uid != 0 || got.home != "/" {
			t.Errorf("resolveUser without /etc = %+v, %v", got, err)
		}
	})
	t.Run("passwd is a symlink out of the image", func(t *testing.T) {
		r := t.TempDir()
		os.MkdirAll(filepath.Join(r, "etc"), 0o755)
		os.Symlink(filepath.Join(root, "etc/passwd"), filepath.Join(r, "etc/passwd"))
		if _, err := resolveUser(r, "node"); err == nil {
			t.Errorf("resolveUser read a passwd file outside the image")
		}
	})
}

func TestOCISpec(t *testing.T) {
	p := specParams{id: "app", rootfs: "/r", netns: "/run/netns/slipway-app", cgroupsPath: "/slipway/app", args: []string{"/app"}, cwd: "/", maxOpenFiles: 1024}
	s := ociSpec(p)
	res := s.Linux.Resources
	if *res.Memory.Limit != DefaultMemoryBytes || *res.CPU.Quota != DefaultCPUMillis*100 || *res.CPU.Period != 100000 || *res.Pids.Limit != DefaultPids {
		t.Errorf("default limits: memory %d, quota %d/%d, pids %d", *res.Memory.Limit, *res.CPU.Quota, *res.CPU.Period, *res.Pids.Limit)
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

	p.user = user{uid: 1000, gid: 1000}
	p.limits = runtime.Limits{MemoryBytes: 1 << 30, CPUMillis: 1500, Pids: 10}
	p.swapLimit = true
	p.etcDir = "/b/etc"
	s = ociSpec(p)
	res = s.Linux.Resources
	if *res.Memory.Limit != 1<<30 || *res.Memory.Swap != 1<<30 || *res.CPU.Quota != 150000 || *res.Pids.Limit != 10 {
		t.Errorf("limits: memory %d swap %d, quota %d, pids %d", *res.Memory.Limit, *res.Memory.Swap, *res.CPU.Quota, *res.Pids.Limit)
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
	f := etcFiles("web-1", []byte("search example.org\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\noptions edns0\n"))
	if got, want := string(f["resolv.conf"]), "search example.org\nnameserver 10.0.0.2\noptions edns0\n"; got != want {
		t.Errorf("resolv.conf = %q, want %q", got, want)
	}
	if !strings.Contains(string(f["hosts"]), "localhost") || !strings.Contains(string(f["hosts"]), "web-1") {
		t.Errorf("hosts = %q", f["hosts"])
	}
	if string(f["hostname"]) != "web-1\n" {
		t.Errorf("hostname = %q", f["hostname"])
	}
}

func TestDecodeWaitStatus(t *testing.T) {
	for ws, want := range map[int]int{0: 0, 3 << 8: 3, 255 << 8: 255, int(syscall.SIGKILL): 137, int(syscall.SIGTERM): 143} {
		if got := decodeWaitStatus(ws); got != want {
			t.Errorf("decodeWaitStatus(%#x) = %d, want %d", ws, got, want)
		}
	}
}

func TestReadProcStat(t *testing.T) {
	st, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.start == 0 || (st.state != 'R' && st.state != 'S') {
		t.Errorf("readProcStat(self) = %+v", st)
	}
}

func TestImageKey(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	if k, err := imageKey(d); err != nil || k != "sha256-"+strings.Repeat("ab", 32) {
		t.Errorf("imageKey(%q) = %q, %v", d, k, err)
	}
	for _, bad := range []string{"", "sha256:abc", "sha512:" + strings.Repeat("ab", 64), "sha256:../" + strings.Repeat("a", 61)} {
		if _, err := imageKey(bad); err == nil {
			t.Errorf("imageKey(%q) succeeded", bad)
		}
	}
}

func TestNewRejectsBadRoot(t *testing.T) {
	for _, root := range []string{"/tmp/a,b", "/tmp/a:b", "/tmp/a b"} {
		if _, err := New(Config{Root: root, RuncPath: "/bin/true"}); err == nil {
			t.Errorf("New accepted root %q", root)
		}
	}
}

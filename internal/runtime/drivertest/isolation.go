package drivertest

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
)

// RunIsolation runs the isolation suite against the driver of h: what an
// instance must not reach or exhaust, checked from inside it through the
// test app. An instance sees none of the host's files and processes,
// reaches no service of the host (on loopback or on the host's own
// addresses), and is held to its limits on processes, disk and memory.
// The in-process fake driver isolates nothing, so this is apart from Run.
func RunIsolation(t *testing.T, h Harness) {
	s := &suite{h: h}
	t.Run("HostFiles", s.hostFiles)
	t.Run("HostProcesses", s.hostProcesses)
	t.Run("HostServices", s.hostServices)
	t.Run("PidsLimit", s.pidsLimit)
	t.Run("DiskLimit", s.diskLimit)
	t.Run("MemoryLimit", s.memoryLimit)
}

// serving starts an instance of the test app with limits on a new driver
// value and waits until it answers.
func (s *suite) serving(t *testing.T, limits runtime.Limits) (runtime.Driver, *runtime.Handle) {
	t.Helper()
	d := s.driver(t)
	spec := s.spec(t)
	spec.Limits = limits
	h := start(t, d, spec)
	WaitHTTP(t, d, h, 3000)
	return d, h
}

// hostFiles: a file the host writes is not in the instance's file system.
func (s *suite) hostFiles(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "host-only")
	if err := os.WriteFile(marker, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, h := s.serving(t, runtime.Limits{})
	for _, p := range []string{marker, filepath.Dir(marker)} {
		if code, body := get(t, d, h, 3000, "/stat?path="+p); code != 404 {
			t.Errorf("the host's %s in the instance: %d %q, want 404", p, code, body)
		}
	}
}

// hostProcesses: no process of the host (this test's own, for one) is
// visible in the instance.
func (s *suite) hostProcesses(t *testing.T) {
	d, h := s.serving(t, runtime.Limits{})
	code, body := get(t, d, h, 3000, "/procs")
	if code != 200 || strings.TrimSpace(body) == "" {
		t.Fatalf("/procs: %d %q", code, body)
	}
	self := filepath.Base(os.Args[0])
	for line := range strings.Lines(body) {
		if strings.Contains(line, self) {
			t.Errorf("the instance sees a process of the host: %q", strings.TrimSpace(line))
		}
	}
}

// hostServices: a service the host listens on, on every address, is
// reached neither through the instance's loopback nor through the host's
// own addresses.
func (s *suite) hostServices(t *testing.T) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	targets := []string{"127.0.0.1:" + port}
	addrs, _ := net.InterfaceAddrs()
	if s.h.HostAddressesByPolicy {
		t.Log("the harness says a network policy keeps instances from the host's addresses, which this cluster does not enforce: dialling the host's loopback only")
		addrs = nil
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() {
			targets = append(targets, net.JoinHostPort(ip.IP.String(), port))
		}
	}
	d, h := s.serving(t, runtime.Limits{})
	for _, addr := range targets {
		code, body := get(t, d, h, 3000, "/dial?addr="+addr)
		if code != 200 || !strings.HasPrefix(body, "error: ") {
			t.Errorf("the instance dialling the host's %s: %d %q, want an error", addr, code, body)
		}
	}
	if n := accepted.Load(); n > 0 {
		t.Errorf("the host's listener accepted %d connections from the instance", n)
	}
}

// pidsLimit: an instance limited to 32 processes cannot start 200.
func (s *suite) pidsLimit(t *testing.T) {
	if s.h.PidsNotLimited {
		t.Skip("the harness says the driver does not limit processes")
	}
	limit, spawn := 32, 200
	if s.h.NodePidsLimit > 0 {
		limit, spawn = s.h.NodePidsLimit, max(200, 2*s.h.NodePidsLimit)
	}
	d, h := s.serving(t, runtime.Limits{Pids: 32})
	code, body := get(t, d, h, 3000, "/spawn?n="+strconv.Itoa(spawn))
	n := -1
	if f := strings.Fields(strings.TrimSuffix(body, "\n")); len(f) >= 2 {
		n, _ = strconv.Atoi(strings.TrimSuffix(f[1], ":"))
	}
	t.Logf("spawning %d processes with a limit of %d: %s", spawn, limit, strings.TrimSpace(body))
	if code != 200 || n < 0 || n >= limit {
		t.Errorf("spawning %d processes with a limit of %d: %d %q, want fewer than %d started", spawn, limit, code, body, limit)
	}
	if code, body := get(t, d, h, 3000, "/"); code != 200 {
		t.Errorf("after reaching its process limit the app answers %d %q", code, body)
	}
}

// diskLimit: an instance with 1 MiB of disk cannot write 8 MiB, and can
// write 256 KiB.
func (s *suite) diskLimit(t *testing.T) {
	d, h := s.serving(t, runtime.Limits{DiskBytes: 1 << 20})
	if code, body := get(t, d, h, 3000, "/fill?path=/small&kb=256"); code != 200 {
		t.Errorf("writing 256 KiB within 1 MiB: %d %q", code, body)
	}
	if !s.h.DiskLimitEvicts {
		if code, body := get(t, d, h, 3000, "/fill?path=/big&kb=8192"); code == 200 {
			t.Errorf("writing 8 MiB with a disk limit of 1 MiB: %d %q, want an error", code, body)
		}
		return
	}
	if st := inspect(t, d, h); !st.Running {
		t.Fatalf("the instance ended within its disk limit: %+v", st)
	}
	// The write may pass, or fail if the instance is ended meanwhile.
	Get(t.Context(), d, h, 3000, "/fill?path=/big&kb=8192")
	deadline := time.Now().Add(evictWithin)
	for time.Now().Before(deadline) {
		if st := inspect(t, d, h); !st.Running {
			t.Logf("the instance was ended for its disk use: %+v", st)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Errorf("an instance that wrote 8 MiB with a disk limit of 1 MiB still runs after %v", evictWithin)
}

// evictWithin bounds the wait for an instance ended for its disk use:
// a kubelet measures usage and evicts every 10 s, and a loaded node
// takes a few rounds.
const evictWithin = time.Minute

// memoryLimit: an instance with 128 MiB of memory does not get 1 GiB: the
// allocation fails or the instance is ended.
func (s *suite) memoryLimit(t *testing.T) {
	d, h := s.serving(t, runtime.Limits{MemoryBytes: 128 << 20})
	code, body, err := Get(t.Context(), d, h, 3000, "/alloc?mb=1024")
	if err == nil && code == 200 && strings.TrimSpace(body) == "allocated" {
		t.Fatalf("an instance limited to 128 MiB allocated 1 GiB")
	}
	// Ended, or still serving without the memory: either way the host
	// keeps its memory. An instance that was ended says so.
	deadline := time.Now().Add(Timeout)
	for time.Now().Before(deadline) {
		st := inspect(t, d, h)
		if !st.Running {
			t.Logf("the instance ended: exit code %d, OOM killed %v", st.ExitCode, st.OOMKilled)
			return
		}
		if code, _, err := Get(t.Context(), d, h, 3000, "/"); err == nil && code == 200 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("after the failed allocation the instance neither ended nor answers")
}

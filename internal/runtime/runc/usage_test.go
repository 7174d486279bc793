package runc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
)

// TestUsage reads a running instance's cgroup: the app has used some CPU
// (it started and answered), holds some memory under its limit and has at
// least one process; once stopped, its usage is ErrNotFound.
func TestUsage(t *testing.T) {
	requireSandbox(t)
	_, ref := app(t)
	d := newDriver(t, Config{})
	h := startApp(t, d, runtime.Spec{Image: ref, Limits: runtime.Limits{MemoryBytes: 64 << 20, Pids: 64}})
	for i := 0; i < 20; i++ {
		get(t, d, h, "/")
	}
	u, err := d.Usage(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("usage: %+v", u)
	if u.CPU <= 0 {
		t.Errorf("CPU = %s, want > 0", u.CPU)
	}
	if u.MemoryBytes <= 0 || u.MemoryBytes > 64<<20 {
		t.Errorf("MemoryBytes = %d, want in (0, 64 MiB]", u.MemoryBytes)
	}
	if u.MemoryLimitBytes != 64<<20 {
		t.Errorf("MemoryLimitBytes = %d, want %d", u.MemoryLimitBytes, 64<<20)
	}
	if u.Pids < 1 || u.Pids > 64 {
		t.Errorf("Pids = %d, want in [1, 64]", u.Pids)
	}
	ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
	defer cancel()
	if err := d.Stop(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Usage(context.Background(), h); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Usage after Stop: %v, want ErrNotFound", err)
	}
}

// TestReadUsage reads made-up cgroup trees of both versions.
func TestReadUsage(t *testing.T) {
	write := func(t *testing.T, root string, files map[string]string) {
		for name, content := range files {
			p := filepath.Join(root, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		v2    bool
		files map[string]string
		want  runtime.Usage
	}{
		{"v1", false, map[string]string{
			"cpuacct/slipway/i1/cpuacct.usage":               "1500000000\n",
			"memory/slipway/i1/memory.usage_in_bytes":        "10485760\n",
			"memory/slipway/i1/memory.limit_in_bytes":        "536870912\n",
			"pids/slipway/i1/pids.current":                   "3\n",
			"cpuacct/slipway/other/cpuacct.usage":            "7\n",
			"memory/slipway/other/memory.usage_in_bytes":     "7\n",
			"memory/slipway/other/memory.limit_in_bytes":     "7\n",
			"pids/slipway/other/pids.current":                "7\n",
			"cpu,cpuacct/slipway/other/cpuacct.usage":        "7\n",
			"memory/slipway/other/memory.max_usage_in_bytes": "7\n",
		}, runtime.Usage{CPU: 1500 * time.Millisecond, MemoryBytes: 10 << 20, MemoryLimitBytes: 512 << 20, Pids: 3}},
		{"v1 cpu,cpuacct unlimited", false, map[string]string{
			"cpu,cpuacct/slipway/i1/cpuacct.usage":    "2000\n",
			"memory/slipway/i1/memory.usage_in_bytes": "4096\n",
			"memory/slipway/i1/memory.limit_in_bytes": "9223372036854771712\n",
			"pids/slipway/i1/pids.current":            "1\n",
		}, runtime.Usage{CPU: 2 * time.Microsecond, MemoryBytes: 4096, Pids: 1}},
		{"v2", true, map[string]string{
			"slipway/i1/cpu.stat":       "usage_usec 250000\nuser_usec 200000\nsystem_usec 50000\n",
			"slipway/i1/memory.current": "8192\n",
			"slipway/i1/memory.max":     "max\n",
			"slipway/i1/pids.current":   "2\n",
		}, runtime.Usage{CPU: 250 * time.Millisecond, MemoryBytes: 8192, Pids: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, tc.files)
			got, err := readUsage(root, tc.v2, "/slipway/i1")
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if _, err := readUsage(root, tc.v2, "/slipway/gone"); !errors.Is(err, runtime.ErrNotFound) {
				t.Errorf("a missing cgroup: %v, want ErrNotFound", err)
			}
		})
	}
}

package buildkit

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bkclient "github.com/moby/buildkit/client"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/slipwayhq/slipway/internal/build"
)

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readJSON[T any](t *testing.T, path string) *T {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
	return v
}

func defaultCaps() *specs.LinuxCapabilities {
	caps := []string{"CAP_CHOWN", "CAP_NET_RAW", "CAP_SETUID"}
	return &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
}

// The filter finds the bundle after runc's global flags, drops the
// capabilities from every set and writes the limits, keeping the rest of
// the spec.
func TestFilterRunSpec(t *testing.T) {
	bundle := t.TempDir()
	writeJSON(t, filepath.Join(bundle, "config.json"), &specs.Spec{
		Version:  "1.0.2",
		Hostname: "buildkitsandbox",
		Process:  &specs.Process{Args: []string{"/bin/sh", "-c", "true"}, Capabilities: defaultCaps()},
		Linux:    &specs.Linux{CgroupsPath: "buildkit:step"},
	})
	p := StepPolicy{DropCapabilities: DefaultDropCapabilities, MemoryBytes: 256 << 20, Pids: 100, CPUs: 1.5}
	args := []string{"--root", "/run/bk", "--log", "/x/runc-log.json", "--log-format", "json", "run", "--bundle", bundle, "--pid-file", "/x/pid", "step1"}
	if err := filterRuncArgs(args, p, true); err != nil {
		t.Fatal(err)
	}
	s := readJSON[specs.Spec](t, filepath.Join(bundle, "config.json"))
	want := []string{"CAP_CHOWN", "CAP_SETUID"}
	c := s.Process.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		if !slices.Equal(set, want) {
			t.Errorf("%s = %v, want %v", name, set, want)
		}
	}
	if s.Hostname != "buildkitsandbox" || s.Linux.CgroupsPath != "buildkit:step" || s.Process.Args[2] != "true" {
		t.Errorf("spec lost fields: %+v", s)
	}
	r := s.Linux.Resources
	if r == nil || *r.Memory.Limit != 256<<20 || *r.Memory.Swap != 256<<20 || r.Pids.Limit != 100 || *r.CPU.Quota != 150_000 || *r.CPU.Period != 100_000 {
		t.Fatalf("resources = %+v", r)
	}

	// Without swap accounting, memory+swap is left alone (runc would
	// refuse it).
	writeJSON(t, filepath.Join(bundle, "config.json"), &specs.Spec{Process: &specs.Process{Capabilities: defaultCaps()}})
	if err := filterRuncArgs([]string{"create", "-b", bundle, "step2"}, StepPolicy{MemoryBytes: 1 << 30}, false); err != nil {
		t.Fatal(err)
	}
	s = readJSON[specs.Spec](t, filepath.Join(bundle, "config.json"))
	if *s.Linux.Resources.Memory.Limit != 1<<30 || s.Linux.Resources.Memory.Swap != nil || s.Linux.Resources.Pids != nil {
		t.Errorf("resources = %+v", s.Linux.Resources)
	}
}

// An exec's process file is filtered too; other subcommands and their
// files are left alone.
func TestFilterExecAndOthers(t *testing.T) {
	dir := t.TempDir()
	proc := filepath.Join(dir, "process.json")
	writeJSON(t, proc, &specs.Process{Args: []string{"sh"}, Capabilities: defaultCaps()})
	if err := filterRuncArgs([]string{"--log", "/l", "exec", "--process", proc, "--detach", "step1"}, StepPolicy{DropCapabilities: DefaultDropCapabilities}, true); err != nil {
		t.Fatal(err)
	}
	if got := readJSON[specs.Process](t, proc).Capabilities.Effective; slices.Contains(got, "CAP_NET_RAW") {
		t.Errorf("exec kept CAP_NET_RAW: %v", got)
	}
	for _, args := range [][]string{{"--root", "/r", "delete", "--force", "x"}, {"kill", "x", "9"}, {"state", "x"}, {"--version"}} {
		if err := filterRuncArgs(args, StepPolicy{DropCapabilities: DefaultDropCapabilities}, true); err != nil {
			t.Errorf("%v: %v", args, err)
		}
	}
	// A run whose bundle can't be read fails rather than running the
	// step unfiltered.
	if err := filterRuncArgs([]string{"run", "--bundle", filepath.Join(dir, "missing"), "x"}, StepPolicy{}, true); err == nil {
		t.Error("run with a missing bundle passed")
	}
}

// TestStepPolicyEnforced runs real steps on a buildkitd whose steps go
// through the filter with small limits: CAP_NET_RAW is gone from the
// step's process, and the pids and memory caps hold.
func TestStepPolicyEnforced(t *testing.T) {
	_, host := sharedEnv(t)
	base := seedDebian(t, host)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := StartDaemon(ctx, DaemonConfig{
		Root:                filepath.Join(root, "root"),
		PlainHTTPRegistries: []string{host},
		Steps:               StepPolicy{MemoryBytes: 64 << 20, Pids: 64},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Close()
		UnmountUnder(root)
	})
	b, err := New(d.Addr(), Config{Credentials: map[string]Credential{host: {Secret: testSecret}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	tests := []struct {
		name, step string
		fails      string // substring of the error; empty: the step succeeds
	}{{
		// Bit 13 of the effective set is CAP_NET_RAW.
		name: "no CAP_NET_RAW",
		step: `RUN eff=$(awk '/^CapEff/ {print $2}' /proc/self/status); echo "CapEff $eff"; [ $(( 0x$eff >> 13 & 1 )) -eq 0 ] && [ $(( 0x$eff >> 0 & 1 )) -eq 1 ]`,
	}, {
		name:  "pids capped",
		step:  `RUN i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); done; wait`,
		fails: "did not complete successfully",
	}, {
		// dd holds a 100 MiB block in memory: killed at 64 MiB.
		name:  "memory capped",
		step:  `RUN dd if=/dev/zero of=/dev/null bs=100M count=1`,
		fails: "exit code: 137",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &logRecorder{}
			_, err := b.Build(buildCtx(t), build.Request{
				ContextDir: source(t, map[string]string{"Dockerfile": "FROM " + base + "\n" + tt.step + "\n"}),
				Image:      host + "/apps/steps:" + strings.ReplaceAll(tt.name, " ", "-"),
				Log:        rec.log,
			})
			switch {
			case tt.fails == "" && err != nil:
				t.Fatalf("build failed: %v\nlog:\n%s", err, rec.text())
			case tt.fails != "" && err == nil:
				t.Fatalf("build passed, want a failure with %q\nlog:\n%s", tt.fails, rec.text())
			case tt.fails != "" && !strings.Contains(err.Error(), tt.fails):
				t.Fatalf("err = %v, want %q\nlog:\n%s", err, tt.fails, rec.text())
			}
		})
	}
}

// The build cache is kept under DaemonConfig.Cache. A build leaves 30 MB
// in the cache (its RUN step's layer, and the base image's layers) on a
// buildkitd with BuildKit's default policy (up to 80% of the disk): all
// of it stays. Restarted on the same root with a 1 MiB cap, buildkitd's
// collector (which runs a second after a start or a build, then at most
// once a minute) prunes it.
func TestCacheBounded(t *testing.T) {
	_, host := sharedEnv(t)
	base := seedDebian(t, host)
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	usage := func(d *Daemon) int64 {
		c, err := bkclient.New(ctx, d.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		du, err := c.DiskUsage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, u := range du {
			total += u.Size
		}
		return total
	}
	start := func(cache CachePolicy) *Daemon {
		d, err := StartDaemon(ctx, DaemonConfig{Root: filepath.Join(root, "root"), PlainHTTPRegistries: []string{host}, Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Cleanup(func() { UnmountUnder(root) })

	d := start(CachePolicy{})
	b, err := New(d.Addr(), Config{Credentials: map[string]Credential{host: {Secret: testSecret}}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &logRecorder{}
	_, err = b.Build(buildCtx(t), build.Request{
		ContextDir: source(t, map[string]string{"Dockerfile": "FROM " + base + "\nRUN head -c 30000000 /dev/urandom > /big\n"}),
		Image:      host + "/apps/cache:bounded",
		Log:        rec.log,
	})
	b.Close()
	if err != nil {
		d.Close()
		t.Fatalf("build: %v\nlog:\n%s", err, rec.text())
	}
	time.Sleep(3 * time.Second) // the default policy's collection after the build
	before := usage(d)
	d.Close()
	if before < 30e6 {
		t.Fatalf("the default policy left %d bytes of cache, want the build's 30 MB and more", before)
	}

	d = start(CachePolicy{MaxUsed: 1 << 20})
	defer d.Close()
	var after int64
	for deadline := time.Now().Add(30 * time.Second); ; {
		if after = usage(d); after < 1<<20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if after >= 1<<20 {
		t.Fatalf("the build cache holds %d bytes (%d before) 30 s after a start with a 1 MiB cap", after, before)
	}
	t.Logf("build cache: %d bytes under the default policy, %d under a 1 MiB cap", before, after)
}

package runc

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/netns"
	"github.com/slipwayhq/slipway/internal/netns/nettest"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
)

// realNetwork is netns.Network as the driver sees it (the server's
// adapter does the same).
type realNetwork struct {
	n      *netns.Network
	claims *atomic.Int64
}

// openNetwork opens an instance network of the test's own (bridge and
// nftables table named name plus suf, the test's random suffix, addresses
// from prefix), removed when the test ends; its claims count the leases.
func openNetwork(tb testing.TB, name, suf, prefix string) realNetwork {
	tb.Helper()
	nw, err := netns.Open(netns.Config{Bridge: name + suf, Table: name + "_" + suf,
		Prefix: netip.MustParsePrefix(prefix), StateDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := nw.Remove(); err != nil {
			tb.Errorf("removing the network: %v", err)
		}
	})
	return realNetwork{nw, new(atomic.Int64)}
}

func (r realNetwork) Attach(ctx context.Context, id, group, nsPath string) (runtime.Lease, error) {
	l, err := r.n.Attach(ctx, id, group, nsPath)
	return runtime.Lease{Addr: l.Addr, Gateway: l.Gateway, DNS: l.DNS}, err
}

func (r realNetwork) Claim(ctx context.Context, from, id, group string) (runtime.Lease, error) {
	r.claims.Add(1)
	l, err := r.n.Claim(ctx, from, id, group)
	return runtime.Lease{Addr: l.Addr, Gateway: l.Gateway, DNS: l.DNS}, err
}

func (r realNetwork) Detach(ctx context.Context, id string) error { return r.n.Detach(ctx, id) }

// TestNetworkCycles starts and stops instances on a real bridge 1,000
// times (a small address range, so addresses are reused), then closes the
// driver (which releases its namespaces wired ahead) and counts
// what is left: no veth, lease, nftables element, network namespace,
// runc container or instance directory. Every 100th instance must answer
// HTTP. It logs the start and stop times.
func TestNetworkCycles(t *testing.T) {
	requireSandbox(t)
	nettest.Require(t)
	_, ref := app(t)
	suf := nettest.Suffix(t)
	rn := openNetwork(t, "swcyc", suf, "10.123.9.0/26")
	nw, claims := rn.n, rn.claims
	root := t.TempDir()
	// A small pool, which a tight loop empties: starts take both paths,
	// a namespace wired ahead and one wired on the spot.
	d := newDriver(t, Config{Root: root, Network: rn, NetworkPool: 2})

	cycles := 1000
	if n, err := strconv.Atoi(os.Getenv("SLIPWAY_TEST_CYCLES")); err == nil {
		cycles = n
	}
	const bound = 15 * time.Minute // a guard against a hang, not a target
	logs := t.TempDir()
	var starts, stops []time.Duration
	begin := time.Now()
	for i := range cycles {
		if time.Since(begin) > bound {
			t.Fatalf("stopped after %d cycles: over %v", i, bound)
		}
		ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
		id := fmt.Sprintf("cyc%s%04d", suf, i)
		t0 := time.Now()
		h, err := d.Start(ctx, runtime.Spec{ID: id, Image: ref, Group: fmt.Sprintf("g%d", i%3),
			StdoutPath: filepath.Join(logs, "out"), StderrPath: filepath.Join(logs, "err")})
		starts = append(starts, time.Since(t0))
		if err != nil {
			cancel()
			t.Fatalf("cycle %d: start: %v", i, err)
		}
		if i%100 == 0 {
			drivertest.WaitHTTP(t, d, h, 3000)
		}
		t0 = time.Now()
		err = d.Stop(ctx, h)
		stops = append(stops, time.Since(t0))
		cancel()
		if err != nil {
			t.Fatalf("cycle %d: stop: %v", i, err)
		}
	}
	elapsed := time.Since(begin)
	if err := d.Close(); err != nil { // releases the pool
		t.Fatal(err)
	}

	if claims.Load() == 0 {
		t.Errorf("no start found a namespace wired ahead")
	}
	if c, err := nw.Census(); err != nil || c != (netns.Census{}) {
		t.Errorf("after %d cycles the network holds %+v (err %v)", cycles, c, err)
	}
	if left, _ := filepath.Glob(filepath.Join(d.cfg.NetnsDir, "slipway-cyc"+suf+"*")); len(left) > 0 {
		t.Errorf("network namespaces left: %d, e.g. %s", len(left), left[0])
	}
	if entries, _ := os.ReadDir(d.cfg.RunDir); len(entries) > 0 {
		t.Errorf("instance directories left: %d", len(entries))
	}
	out, err := exec.Command("runc", "--root", d.runcRoot(), "list", "-q").CombinedOutput()
	if err != nil {
		t.Errorf("runc list: %v: %s", err, out)
	} else if ids := strings.Fields(string(out)); len(ids) > 0 {
		t.Errorf("runc containers left: %d, e.g. %s", len(ids), ids[0])
	}
	slices.Sort(starts)
	slices.Sort(stops)
	p := func(ds []time.Duration, q int) time.Duration { return ds[len(ds)*q/100].Round(10 * time.Microsecond) }
	t.Logf("%d start/stop cycles in %v (%d with a namespace wired ahead); start p50 %v p99 %v; stop p50 %v p99 %v", cycles,
		elapsed.Round(time.Millisecond), claims.Load(), p(starts, 50), p(starts, 99), p(stops, 50), p(stops, 99))
}

// BenchmarkDial compares the two ways to reach an instance on the bridge:
// entering its network namespace to dial its loopback (Driver.Dial, what
// the router does) and dialling its address from the host. Each op is a
// connection, one HTTP/1.0 request and its answer.
func BenchmarkDial(b *testing.B) {
	nettest.Require(b)
	suf := nettest.Suffix(b)
	rn := openNetwork(b, "swdbr", suf, "10.123.13.0/28")
	d, err := New(Config{Root: b.TempDir(), Network: rn})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	_, ref := app(b)
	ctx := context.Background()
	id := "dial" + suf
	logs := b.TempDir()
	h, err := d.Start(ctx, runtime.Spec{ID: id, Image: ref, Group: "g", StdoutPath: filepath.Join(logs, "out"), StderrPath: filepath.Join(logs, "err")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Stop(context.Background(), h) })
	drivertest.WaitHTTP(b, d, h, 3000)
	hosts, err := os.ReadFile(filepath.Join(d.bundleDir(id), "etc", "hosts"))
	if err != nil {
		b.Fatal(err)
	}
	var addr string
	for line := range strings.Lines(string(hosts)) {
		if f := strings.Fields(line); len(f) == 2 && f[1] == id && strings.HasPrefix(f[0], "10.123.13.") {
			addr = net.JoinHostPort(f[0], "3000")
		}
	}
	if addr == "" {
		b.Fatalf("no address of %s in its /etc/hosts:\n%s", id, hosts)
	}
	roundTrip := func(b *testing.B, c net.Conn, err error) {
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, c); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("namespace", func(b *testing.B) {
		for range b.N {
			c, err := d.Dial(ctx, h, 3000)
			roundTrip(b, c, err)
		}
	})
	b.Run("address", func(b *testing.B) {
		var dl net.Dialer
		for range b.N {
			c, err := dl.DialContext(ctx, "tcp", addr)
			roundTrip(b, c, err)
		}
	})
}

// TestPrepareCycles prepares instances on a real bridge and discards them
// (Stop) again, 200 times (SLIPWAY_TEST_CYCLES), starting every third
// before it is stopped and checking that every 50th started one answers
// HTTP; a fourth of them are discarded by a new driver value, as a
// restarted server discards what the previous one prepared. Then it
// closes the driver and counts what is left: no veth, lease, nftables
// element, network namespace, runc container, cgroup, mount or instance
// directory.
func TestPrepareCycles(t *testing.T) {
	requireSandbox(t)
	nettest.Require(t)
	_, ref := app(t)
	suf := nettest.Suffix(t)
	rn := openNetwork(t, "swpre", suf, "10.123.14.0/26")
	nw := rn.n
	root := t.TempDir()
	cfg := Config{Root: root, Network: rn, NetworkPool: 2}
	d := newDriver(t, cfg)
	cycles := 200
	if n, err := strconv.Atoi(os.Getenv("SLIPWAY_TEST_CYCLES")); err == nil {
		cycles = n
	}
	const bound = 10 * time.Minute // a guard against a hang, not a target
	logs := t.TempDir()
	var prepares, starts, stops []time.Duration
	begin := time.Now()
	for i := range cycles {
		if time.Since(begin) > bound {
			t.Fatalf("stopped after %d cycles: over %v", i, bound)
		}
		ctx, cancel := context.WithTimeout(context.Background(), drivertest.Timeout)
		id := fmt.Sprintf("pre%s%04d", suf, i)
		t0 := time.Now()
		h, err := d.Prepare(ctx, runtime.Spec{ID: id, Image: ref, Group: fmt.Sprintf("g%d", i%3),
			StdoutPath: filepath.Join(logs, "out"), StderrPath: filepath.Join(logs, "err")})
		prepares = append(prepares, time.Since(t0))
		if err != nil {
			cancel()
			t.Fatalf("cycle %d: prepare: %v", i, err)
		}
		if i%3 == 0 {
			t0 = time.Now()
			if h, err = d.StartPrepared(ctx, h); err != nil {
				cancel()
				t.Fatalf("cycle %d: start: %v", i, err)
			}
			starts = append(starts, time.Since(t0))
			if i%50 == 0 {
				drivertest.WaitHTTP(t, d, h, 3000)
			}
		}
		stopper := d
		if i%4 == 1 { // as a restarted server does
			stopper = newDriver(t, Config{Root: root, Network: cfg.Network})
		}
		t0 = time.Now()
		err = stopper.Stop(ctx, h)
		stops = append(stops, time.Since(t0))
		if stopper != d {
			stopper.Close()
		}
		cancel()
		if err != nil {
			t.Fatalf("cycle %d: stop: %v", i, err)
		}
	}
	elapsed := time.Since(begin)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := nw.Census(); err != nil || c != (netns.Census{}) {
		t.Errorf("after %d cycles the network holds %+v (err %v)", cycles, c, err)
	}
	if left, _ := filepath.Glob(filepath.Join(d.cfg.NetnsDir, "slipway-pre"+suf+"*")); len(left) > 0 {
		t.Errorf("network namespaces left: %d, e.g. %s", len(left), left[0])
	}
	if entries, _ := os.ReadDir(d.cfg.RunDir); len(entries) > 0 {
		t.Errorf("instance directories left: %d", len(entries))
	}
	if cg, _ := filepath.Glob("/sys/fs/cgroup/*/slipway/pre" + suf + "*"); len(cg) > 0 {
		t.Errorf("cgroups left: %d, e.g. %s", len(cg), cg[0])
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), d.cfg.RunDir+"/") {
		t.Errorf("mounts under %s left", d.cfg.RunDir)
	}
	out, err := exec.Command("runc", "--root", d.runcRoot(), "list", "-q").CombinedOutput()
	if err != nil {
		t.Errorf("runc list: %v: %s", err, out)
	} else if ids := strings.Fields(string(out)); len(ids) > 0 {
		t.Errorf("runc containers left: %d, e.g. %s", len(ids), ids[0])
	}
	p := func(ds []time.Duration, q int) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)*q/100].Round(10 * time.Microsecond)
	}
	t.Logf("%d prepare/discard cycles in %v (%d started); prepare p50 %v; start p50 %v p99 %v; stop p50 %v p99 %v", cycles,
		elapsed.Round(time.Millisecond), len(starts), p(prepares, 50), p(starts, 50), p(starts, 99), p(stops, 50), p(stops, 99))
}

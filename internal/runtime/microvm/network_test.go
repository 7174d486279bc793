package microvm

import (
	"context"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/netns"
	"github.com/slipwayhq/slipway/internal/netns/nettest"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/drivertest"
)

// network is netns.Network as the driver sees it (the server's adapter
// does the same).
type network struct{ n *netns.Network }

func (r network) Attach(ctx context.Context, id, group, nsPath string) (runtime.Lease, error) {
	l, err := r.n.Attach(ctx, id, group, nsPath)
	return runtime.Lease{Addr: l.Addr, Gateway: l.Gateway, DNS: l.DNS}, err
}

func (r network) Claim(ctx context.Context, from, id, group string) (runtime.Lease, error) {
	l, err := r.n.Claim(ctx, from, id, group)
	return runtime.Lease{Addr: l.Addr, Gateway: l.Gateway, DNS: l.DNS}, err
}

func (r network) Detach(ctx context.Context, id string) error { return r.n.Detach(ctx, id) }

// TestEgressPolicyAppliesToTheGuest starts a guest on a real instance
// network with a stand-in internet and checks from inside the guest that
// it has the instance's address and that the host's egress policy
// applies to its traffic: the world answers, the metadata and LAN
// stand-ins do not, and a policy of no egress, applied while it runs,
// closes the world too.
func TestEgressPolicyAppliesToTheGuest(t *testing.T) {
	initPath, _ := setup(t)
	nettest.Require(t)
	suf := nettest.Suffix(t)
	cfg := netns.Config{
		Bridge:   "swmv" + suf,
		Table:    "swmv_" + suf,
		Prefix:   netip.MustParsePrefix("10.123.41.0/24"),
		StateDir: t.TempDir(),
	}
	nw, err := netns.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nw.Remove(); err != nil {
			t.Errorf("removing the network: %v", err)
		}
	})
	nettest.NewWorld(t, cfg.Bridge)

	bin := filepath.Join(t.TempDir(), "dialer")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/dialer")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the dialer: %v\n%s", err, out)
	}
	host := drivertest.Registry(t)
	files := drivertest.AppFiles(t, bin) // the dialer in the test app's place
	ref := drivertest.Push(t, host, "dialer", drivertest.Image(t, drivertest.AppConfig(), drivertest.Layer(t, files...)))

	d := newDriver(t, Config{Root: newRoot(t), Init: initPath, Network: network{nw}, StopGrace: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*drivertest.Timeout)
	defer cancel()
	id := drivertest.NewID(t)
	logs := t.TempDir()
	h, err := d.Start(ctx, runtime.Spec{ID: id, Image: ref, Group: "p" + suf,
		StdoutPath: filepath.Join(logs, "out"), StderrPath: filepath.Join(logs, "err")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background(), h) })
	drivertest.WaitHTTP(t, d, h, 3000)
	dial := func(addr string) string {
		t.Helper()
		code, body, err := drivertest.Get(ctx, d, h, 3000, "/dial?addr="+addr)
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET /dial?addr=%s: %d %v", addr, code, err)
		}
		return body
	}
	world := netip.AddrPortFrom(nettest.TestNet2, 80).String()
	if got := dial(world); !strings.HasPrefix(got, "ok HTTP/1.0 200") {
		t.Errorf("the guest reaching the world: %q", got)
	}
	for _, a := range []netip.AddrPort{netip.AddrPortFrom(nettest.Metadata, 80), netip.AddrPortFrom(nettest.LAN, 5432),
		netip.AddrPortFrom(nw.Gateway(), 22)} {
		if got := dial(a.String()); !strings.HasPrefix(got, "fail") {
			t.Errorf("the guest reached %s: %q", a, got)
		}
	}
	if err := nw.SetEgress("p"+suf, netns.Egress{None: true}); err != nil {
		t.Fatal(err)
	}
	if got := dial(world); !strings.HasPrefix(got, "fail") {
		t.Errorf("with no egress, the guest reached the world: %q", got)
	}
}

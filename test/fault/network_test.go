package fault

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/slipwayhq/slipway/internal/netns/nettest"
	"github.com/slipwayhq/slipway/internal/server"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

// egressPolicy is the API's view of a project's egress.
type egressPolicy struct {
	None  bool     `json:"none"`
	Allow []string `json:"allow"`
}

// Networking: an app (netprobe) beside another (netpeer) on the shared
// server, whose instances' packets reach a stand-in internet
// (nettest.World) and nothing else, and whose resolver forwards to the
// world's DNS. The app reaches the world by name, through NAT; not the
// host, the metadata service, the LAN or the other app's instance, until
// its project's egress policy says so, at once; and it reaches the other
// app by its private name.
func TestNetworking(t *testing.T) {
	e := sharedEnv(t)
	c := e.c
	bridge, _ := server.NetworkNames(e.srv.DataDir())
	w := nettest.NewWorld(t, bridge)
	// The server's resolver runs on the host: its forwards to the
	// world's DNS take this route (one /32), and none other.
	w.RouteFromHost(t, nettest.DNS.Addr())

	src := faultApp(t, "")
	for _, p := range []string{"netprobe", "netpeer"} {
		ensureProject(t, c, p)
		deployRunning(t, c, p, src, 10*time.Minute)
	}
	probeHost, peerHost := c.Host("netprobe"), c.Host("netpeer")
	probe := info(t, c, probeHost)
	peer := info(t, c, peerHost)
	t.Cleanup(func() { resetEgress(t, c, "netprobe") })

	// ask asks netprobe, through the router, to do something, and
	// returns its report and how long it took.
	ask := func(t *testing.T, path string, q url.Values) (map[string]string, time.Duration) {
		t.Helper()
		return askApp(t, c, probeHost, path, q, time.Minute)
	}
	fetch := func(t *testing.T, u string) map[string]string {
		t.Helper()
		r, _ := ask(t, "/fetch", url.Values{"url": {u}})
		return r
	}
	// private fetches a private name from the router on the gateway,
	// without resolving it: the name goes in the Host header only.
	gw := gatewayOf(t, bridge)
	private := func(t *testing.T, name string) map[string]string {
		t.Helper()
		r, _ := ask(t, "/fetch", url.Values{"url": {"http://" + gw.String() + "/"}, "host": {name}})
		return r
	}
	fromPeer := func(t *testing.T, what string, r map[string]string, d, instance string) {
		t.Helper()
		want := "faultapp deployment=" + d + " "
		if instance != "" {
			want += "instance=" + instance + " "
		}
		if r["connect"] != "ok" || statusCode(r) != "200" || !strings.HasPrefix(r["head"], want) {
			t.Errorf("%s from netprobe: %v, want netpeer's page %q", what, r, want)
		}
	}
	// cannotDial asserts that netprobe's connection to addr fails, and
	// within a few seconds (its /dial gives up after 3).
	cannotDial := func(t *testing.T, addr string) {
		t.Helper()
		r, took := ask(t, "/dial", url.Values{"addr": {addr}})
		if !strings.HasPrefix(r["connect"], "error ") {
			t.Errorf("netprobe's dial of %s: %v, want it to fail", addr, r)
		}
		if took > 8*time.Second {
			t.Errorf("netprobe's failing dial of %s took %v", addr, took)
		}
	}
	policy := func(t *testing.T, method, path string, in any) egressPolicy {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var out egressPolicy
		if err := c.JSON(ctx, method, "/api/v1/projects/netprobe/egress"+path, in, &out); err != nil {
			t.Fatalf("%s egress%s: %v", method, path, err)
		}
		return out
	}
	sameInstance := func(t *testing.T) {
		t.Helper()
		sameApp(t, c, probeHost, probe)
	}

	t.Run("the world through NAT", func(t *testing.T) {
		r := fetch(t, "http://"+nettest.TestNet2.String()+"/")
		if r["connect"] != "ok" || statusCode(r) != "200" {
			t.Fatalf("fetching the world: %v", r)
		}
		if !w.SeesHost(r["head"]) {
			t.Errorf("the world saw %q, want the host's address %s (masquerade)", r["head"], w.HostIP)
		}
	})

	t.Run("the resolver on the gateway", func(t *testing.T) {
		server := netip.AddrPortFrom(gw, 53).String()
		r, _ := ask(t, "/resolve", url.Values{"name": {nettest.WorldName}, "server": {server}})
		if r["resolve"] != "ok" || r["addrs"] != nettest.TestNet2.String() {
			t.Errorf("%s resolved to %q (%s), want %s", nettest.WorldName, r["addrs"], r["resolve"], nettest.TestNet2)
		}
		if !w.Asked(nettest.WorldName) {
			t.Error("the world's DNS was not asked: the answer came from elsewhere")
		}
		if r, _ := ask(t, "/resolve", url.Values{"name": {"nowhere.test"}, "server": {server}}); r["resolve"] == "ok" || !strings.Contains(r["resolve"], "no such host") {
			t.Errorf("nowhere.test: %v, want no such host", r)
		}
		for _, name := range []string{"netpeer.internal", "anything.internal"} {
			if r, _ := ask(t, "/resolve", url.Values{"name": {name}, "server": {server}}); r["resolve"] != "ok" || r["addrs"] != gw.String() {
				t.Errorf("%s: %v, want the gateway %s", name, r, gw)
			}
		}
		if w.Asked("netpeer.internal") || w.Asked("anything.internal") {
			t.Error("the resolver forwarded a private name upstream")
		}
	})

	t.Run("names through the system resolver", func(t *testing.T) {
		// The instance's resolv.conf names the resolver on the gateway…
		r, _ := ask(t, "/read", url.Values{"path": {"/etc/resolv.conf"}})
		if r["read"] != "ok" || !strings.Contains(r["head"], "nameserver "+gw.String()) {
			t.Errorf("netprobe's /etc/resolv.conf: %v, want it to name %s (the image has no /etc: scratch)", r, gw)
		}
		// … so names resolve, the world's and private ones.
		r, _ = ask(t, "/resolve", url.Values{"name": {nettest.WorldName}})
		if r["resolve"] != "ok" || r["addrs"] != nettest.TestNet2.String() {
			t.Errorf("%s resolved to %q (%s), want %s", nettest.WorldName, r["addrs"], r["resolve"], nettest.TestNet2)
		}
		if r := fetch(t, "http://"+nettest.WorldName+"/"); r["connect"] != "ok" || statusCode(r) != "200" || !w.SeesHost(r["head"]) {
			t.Errorf("fetching http://%s/: %v", nettest.WorldName, r)
		}
		fromPeer(t, "http://netpeer.internal/", fetch(t, "http://netpeer.internal/"), peer.Deployment, peer.Instance)
	})

	t.Run("not the host, metadata, the LAN or the peer", func(t *testing.T) {
		// A listener on every address of the host, so that a dial that
		// reaches the host at all connects.
		ln, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		nettest.Answer(ln, "HTTP/1.0 200 OK\r\n\r\nreached the host\n")
		_, routerPort, _ := net.SplitHostPort(e.srv.Router())
		ports := []string{strconv.Itoa(e.srv.APIPort()), routerPort, "22", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)}
		hosts := []string{gw.String()}
		for _, h := range hostIPs(t) {
			if h != gw.String() {
				hosts = append(hosts, h)
			}
		}
		for _, h := range hosts {
			for _, p := range ports {
				cannotDial(t, net.JoinHostPort(h, p))
			}
		}
		cannotDial(t, netip.AddrPortFrom(nettest.Metadata, 80).String())
		cannotDial(t, netip.AddrPortFrom(nettest.LAN, 5432).String())

		// The peer listens on its address: the host reaches it, the
		// probe does not.
		peerAddr := netip.AddrPortFrom(instanceAddr(t, peer.Instance), 3000)
		conn, err := net.DialTimeout("tcp", peerAddr.String(), 3*time.Second)
		if err != nil {
			t.Fatalf("the host cannot reach the peer at %s: %v", peerAddr, err)
		}
		conn.Close()
		cannotDial(t, peerAddr.String())
		sameInstance(t)
	})

	t.Run("egress allow and deny, at once", func(t *testing.T) {
		lan := netip.AddrPortFrom(nettest.LAN, 5432).String()
		if p := policy(t, "GET", "", nil); p.None || len(p.Allow) != 0 {
			t.Fatalf("netprobe's policy at first: %+v, want the default", p)
		}
		p := policy(t, "POST", "/allow", map[string]string{"rule": lan})
		if len(p.Allow) != 1 {
			t.Fatalf("after allow: %+v", p)
		}
		if r, _ := ask(t, "/dial", url.Values{"addr": {lan}}); r["connect"] != "ok" || statusCode(r) != "200" {
			t.Errorf("allowed, %s: %v", lan, r)
		}
		cannotDial(t, netip.AddrPortFrom(nettest.LAN, 80).String())        // another port
		cannotDial(t, netip.AddrPortFrom(nettest.Metadata, 5432).String()) // another address
		sameInstance(t)
		p = policy(t, "POST", "/deny", map[string]string{"rule": lan})
		if len(p.Allow) != 0 {
			t.Fatalf("after deny: %+v", p)
		}
		cannotDial(t, lan)
		sameInstance(t)
	})

	t.Run("egress none, then open", func(t *testing.T) {
		if p := policy(t, "PATCH", "", map[string]bool{"none": true}); !p.None {
			t.Fatalf("after none: %+v", p)
		}
		world := "http://" + nettest.TestNet2.String() + "/"
		if r := fetch(t, world); r["connect"] == "ok" {
			t.Errorf("with egress none, netprobe fetched the world: %v", r)
		}
		fromPeer(t, "netpeer.internal with egress none", private(t, "netpeer.internal"), peer.Deployment, peer.Instance)
		if p := policy(t, "PATCH", "", map[string]bool{"none": false}); p.None {
			t.Fatalf("after open: %+v", p)
		}
		if r := fetch(t, world); r["connect"] != "ok" || !w.SeesHost(r["head"]) {
			t.Errorf("egress open again, netprobe cannot fetch the world: %v", r)
		}
		sameInstance(t)
	})

	t.Run("private names", func(t *testing.T) {
		for _, name := range []string{"netpeer", "netpeer-production", peer.Deployment} {
			fromPeer(t, name+".internal", private(t, name+".internal"), peer.Deployment, peer.Instance)
		}
		for _, name := range []string{"nosuchproject.internal", c.Host("netpeer"), "netpeer"} {
			if r := private(t, name); statusCode(r) != "404" {
				t.Errorf("%s on the gateway's router: %v, want 404", name, r)
			}
		}
		// Private names are not public ones.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if code, body, err := c.Get(ctx, "netpeer.internal", "/"); err != nil || code != 404 {
			t.Errorf("netpeer.internal on the public router: %d %q %v, want 404", code, body, err)
		}
	})

	t.Run("a private name wakes a sleeping app", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.JSON(ctx, "PATCH", "/api/v1/projects/netpeer/settings", map[string]string{"idleTimeout": "2s"}, nil); err != nil {
			t.Fatal(err)
		}
		d := deployRunning(t, c, "netpeer", faultApp(t, "sleepy"), 10*time.Minute)
		awake := info(t, c, peerHost)
		if awake.Deployment != d.ID {
			t.Fatalf("netpeer serves %s, want the new deployment %s", awake.Deployment, d.ID)
		}
		// Asleep: its instance and its network namespace are gone.
		ns := filepath.Join(serverproc.NetnsDir, "slipway-"+awake.Instance)
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := os.Stat(ns); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("netpeer's instance %s did not go to sleep within 60 s of a 2 s idle timeout", awake.Instance)
			}
			time.Sleep(250 * time.Millisecond)
		}
		r := private(t, "netpeer.internal")
		fromPeer(t, "netpeer.internal, asleep,", r, d.ID, "")
		if strings.Contains(r["head"], "instance="+awake.Instance+" ") {
			t.Errorf("netpeer answered from the instance that went to sleep (%s)", awake.Instance)
		}
	})

	// Build steps run on a bridge of their own, with a world of its own
	// (the server's resolver forwards to the same DNS): a RUN step of the
	// app's Dockerfile runs the probe, and the build log shows what it
	// reached.
	t.Run("a build step reaches the world and nothing else", func(t *testing.T) {
		buildBridge, _ := server.BuildNetworkNames(e.srv.DataDir())
		nettest.NewWorld(t, buildBridge)
		bgw := gatewayOf(t, buildBridge)
		ln, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		nettest.Answer(ln, "HTTP/1.0 200 OK\r\n\r\nreached the host\n")
		_, routerPort, _ := net.SplitHostPort(e.srv.Router())
		ports := []string{strconv.Itoa(e.srv.APIPort()), routerPort, "22", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)}
		hosts := []string{bgw.String()}
		for _, h := range hostIPs(t) {
			if h != bgw.String() {
				hosts = append(hosts, h)
			}
		}
		var denied []string
		for _, h := range hosts {
			for _, p := range ports {
				denied = append(denied, net.JoinHostPort(h, p))
			}
		}
		denied = append(denied, netip.AddrPortFrom(nettest.Metadata, 80).String(), netip.AddrPortFrom(nettest.LAN, 5432).String(),
			netip.AddrPortFrom(instanceAddr(t, peer.Instance), 3000).String())
		targets := []string{"/fetch?url=http://" + nettest.TestNet2.String() + "/", "/resolve?name=" + nettest.WorldName}
		for _, a := range denied {
			targets = append(targets, "/dial?addr="+a)
		}

		src := faultApp(t, "")
		df, err := os.ReadFile(filepath.Join(src, "Dockerfile"))
		if err != nil {
			t.Fatal(err)
		}
		run := `RUN ["/faultapp"`
		for _, target := range targets {
			run += ", " + strconv.Quote(target)
		}
		run += "]\n"
		build := "-o /faultapp .\n"
		if !strings.Contains(string(df), build) {
			t.Fatalf("the fault app's Dockerfile has no line ending %q", build)
		}
		df = []byte(strings.Replace(string(df), build, build+run, 1))
		if err := os.WriteFile(filepath.Join(src, "Dockerfile"), df, 0o644); err != nil {
			t.Fatal(err)
		}
		ensureProject(t, c, "netbuild")
		d := deployRunning(t, c, "netbuild", src, 10*time.Minute)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		lines, err := c.BuildLogs(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		reports := make([]map[string]string, len(targets))
		for i := range reports {
			reports[i] = map[string]string{}
		}
		for _, l := range lines {
			_, rest, ok := strings.Cut(l.Text, "probe[")
			if !ok {
				continue
			}
			n, kv, ok := strings.Cut(rest, "] ")
			i, err := strconv.Atoi(n)
			k, v, ok2 := strings.Cut(kv, ": ")
			if ok && ok2 && err == nil && i >= 0 && i < len(reports) {
				reports[i][k] = v
			}
		}
		if r := reports[0]; r["connect"] != "ok" || statusCode(r) != "200" || !strings.HasPrefix(r["head"], "world ") {
			t.Errorf("the build step's fetch of the world: %v", r)
		}
		if r := reports[1]; r["resolve"] != "ok" || r["addrs"] != nettest.TestNet2.String() {
			t.Errorf("the build step's lookup of %s: %v", nettest.WorldName, r)
		}
		for i, a := range denied {
			if r := reports[2+i]; !strings.HasPrefix(r["connect"], "error ") {
				t.Errorf("the build step's dial of %s: %v, want it to fail", a, r)
			}
		}
	})
}

// statusCode is the code in a report's status line ("HTTP/1.1 200 OK").
func statusCode(r map[string]string) string {
	if f := strings.Fields(r["status"]); len(f) >= 2 {
		return f[1]
	}
	return ""
}

// resetEgress gives project the default egress policy again.
func resetEgress(t *testing.T, c *serverproc.Client, project string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path := "/api/v1/projects/" + project + "/egress"
	var p egressPolicy
	if err := c.JSON(ctx, "PATCH", path, map[string]bool{"none": false}, &p); err != nil {
		t.Errorf("resetting %s's egress: %v", project, err)
		return
	}
	for _, r := range p.Allow {
		if err := c.JSON(ctx, "POST", path+"/deny", map[string]string{"rule": r}, nil); err != nil {
			t.Errorf("resetting %s's egress: %v", project, err)
		}
	}
}

// gatewayOf is the bridge's IPv4 address: the instances' gateway.
func gatewayOf(t *testing.T, bridge string) netip.Addr {
	t.Helper()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatalf("the server's bridge %s: %v", bridge, err)
	}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil || len(addrs) == 0 {
		t.Fatalf("the server's bridge %s has no address: %v", bridge, err)
	}
	a, _ := netip.AddrFromSlice(addrs[0].IP.To4())
	return a
}

// instanceAddr is the address of eth0 in an instance's namespace.
func instanceAddr(t *testing.T, instance string) netip.Addr {
	t.Helper()
	var a netip.Addr
	var err error
	nettest.InNS(t, filepath.Join(serverproc.NetnsDir, "slipway-"+instance), func() {
		var l netlink.Link
		if l, err = netlink.LinkByName("eth0"); err != nil {
			return
		}
		var addrs []netlink.Addr
		if addrs, err = netlink.AddrList(l, netlink.FAMILY_V4); err == nil && len(addrs) > 0 {
			a, _ = netip.AddrFromSlice(addrs[0].IP.To4())
		}
	})
	if err != nil || !a.IsValid() {
		t.Fatalf("instance %s's address: %v", instance, err)
	}
	return a
}

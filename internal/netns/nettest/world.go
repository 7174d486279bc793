package nettest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
)

// The world's addresses. Each is held by the world's namespace, and a
// packet from the bridge to any other address is unroutable.
var (
	// TestNet2 and TestNet3 are public hosts (TEST-NET-2 and -3): HTTP
	// on port 80 (and 5432).
	TestNet2 = netip.MustParseAddr("198.51.100.1")
	TestNet3 = netip.MustParseAddr("203.0.113.1")
	// DNS is the world's name server; see Names.
	DNS = netip.MustParseAddrPort("198.51.100.53:53")
	// Metadata stands in for a cloud's metadata service.
	Metadata = netip.MustParseAddr("169.254.169.254")
	// LAN stands in for a host of the LAN, a database on port 5432 (TCP,
	// an HTTP server; UDP, a recorder: see World.Received).
	LAN = netip.MustParseAddr("10.77.0.5")
	// Reserved are more of what a default policy denies (shared address
	// space, benchmarking, RFC 1918, class E), held by the world too, so
	// a failure of the policy under test still leaves nothing.
	Reserved = []netip.Addr{
		netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("198.18.0.1"),
		netip.MustParseAddr("172.16.0.1"), netip.MustParseAddr("192.168.0.1"),
		netip.MustParseAddr("240.0.0.1"), netip.MustParseAddr("254.255.255.254"),
	}
)

// The names the world's DNS answers (type A, TTL 5 s): WorldName is
// TestNet2, LANName is LAN. Other types of these names have no records
// (NOERROR, empty); every other name is NXDOMAIN.
const (
	WorldName = "world.test"
	LANName   = "lan.test"
)

var names = map[string]netip.Addr{WorldName + ".": TestNet2, LANName + ".": LAN}

// unreachablePref is the preference of Unreachable's rules: after every
// World's (10000–29999), before the main table's (32766).
const unreachablePref = 32000

// World is a stand-in internet: a network namespace joined to the host by
// a veth, holding the addresses above with an HTTP server on ports 80 and
// 5432 of each (answering "world <Host> sees <client address:port>"), a
// UDP recorder on port 5432 and the DNS server at DNS.
//
// Only packets arriving from one bridge are routed to it, through a
// routing table of its own that ends in "unreachable" and a rule that
// comes before the main table: whatever a policy under test lets through,
// a packet from the bridge can only reach the world. The host's own
// routes are left alone (but see RouteFromHost). Everything is removed at
// the test's cleanup.
type World struct {
	Name   string     // its network namespace, in /run/netns
	Path   string     // /run/netns/<Name>
	HostIP netip.Addr // the host's end of the link: whom the world sees for masqueraded packets
	Peer   netip.Addr // the world's end of the link: the next hop into it
	Table  int        // its routing table, also its from-the-bridge rule's preference
	Bridge string     // whose packets it takes

	mu      sync.Mutex
	udp     []string // payloads received on LAN:5432/udp
	queries []string // "name type" of each DNS question received
}

// NewWorld builds a world for packets arriving from bridge, which must
// exist and have its IPv4 address, and checks, before it returns, that
// from the bridge the world's addresses route to it and that 8.8.8.8,
// 1.1.1.1, 192.0.2.1 and the host's LAN (its default gateway, a
// neighbour) do not route at all.
func NewWorld(t testing.TB, bridge string) *World {
	t.Helper()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatalf("the world's bridge %s: %v", bridge, err)
	}
	brAddrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil || len(brAddrs) == 0 {
		t.Fatalf("the world's bridge %s has no IPv4 address (%v)", bridge, err)
	}
	suf := Suffix(t)
	w := &World{Name: "swt-world-" + suf, Bridge: bridge}
	w.Path = "/run/netns/" + w.Name
	IP(t, "netns", "add", w.Name)
	IPCleanup(t, "netns", "del", w.Name)
	hostEnd, worldEnd := "wld"+suf, "wldp"+suf
	IP(t, "link", "add", hostEnd, "type", "veth", "peer", "name", worldEnd, "netns", w.Name)
	IPCleanup(t, "link", "del", hostEnd)
	link := freeLink(t)
	w.HostIP, w.Peer = link.Addr().Next(), link.Addr().Next().Next()
	IP(t, "addr", "add", netip.PrefixFrom(w.HostIP, 30).String(), "dev", hostEnd)
	IP(t, "link", "set", hostEnd, "up")
	IP(t, "-n", w.Name, "addr", "add", netip.PrefixFrom(w.Peer, 30).String(), "dev", worldEnd)
	IP(t, "-n", w.Name, "link", "set", worldEnd, "up")
	IP(t, "-n", w.Name, "link", "set", "lo", "up")
	IP(t, "-n", w.Name, "addr", "add", "198.51.100.1/24", "dev", "lo")
	IP(t, "-n", w.Name, "addr", "add", "203.0.113.1/24", "dev", "lo")
	IP(t, "-n", w.Name, "addr", "add", netip.PrefixFrom(DNS.Addr(), 32).String(), "dev", "lo")

	// The table first, ending in "unreachable", then the rule, whose
	// preference comes before the main table's (32766): never a moment
	// when the rule sends the bridge's packets anywhere but the world.
	w.Table = freeTable(t)
	table := strconv.Itoa(w.Table)
	IPCleanup(t, "route", "flush", "table", table)
	IP(t, "route", "add", "unreachable", "default", "table", table)
	for _, p := range []string{"198.51.100.0/24", "203.0.113.0/24"} {
		IP(t, "route", "add", p, "via", w.Peer.String(), "table", table)
	}
	for _, a := range append([]netip.Addr{Metadata, LAN}, Reserved...) {
		IP(t, "route", "add", a.String()+"/32", "via", w.Peer.String(), "table", table)
		IP(t, "-n", w.Name, "addr", "add", a.String()+"/32", "dev", "lo")
	}
	IP(t, "rule", "add", "iif", bridge, "lookup", table, "pref", table)
	IPCleanup(t, "rule", "del", "iif", bridge, "lookup", table, "pref", table)

	// The safety net holds: from the bridge, the world and nothing else.
	bp := netip.PrefixFrom(netip.AddrFrom4([4]byte(brAddrs[0].IP.To4())), mustOnes(brAddrs[0].Mask)).Masked()
	from := bp.Addr().Next().Next()
	ours := append([]netip.Addr{TestNet2, TestNet3, DNS.Addr(), Metadata, LAN}, Reserved...)
	elsewhere := []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("192.0.2.1")}
	if eth, gw, ok := HostAddr(t); ok {
		elsewhere = append(elsewhere, eth.Next())
		if gw.IsValid() {
			elsewhere = append(elsewhere, gw)
		}
	}
	for _, to := range ours {
		rs, err := netlink.RouteGetWithOptions(to.AsSlice(), &netlink.RouteGetOptions{Iif: bridge, SrcAddr: from.AsSlice()})
		if err != nil || len(rs) != 1 || !rs[0].Gw.Equal(w.Peer.AsSlice()) {
			t.Fatalf("from the bridge %s, %s does not route to the world: %v %v", bridge, to, rs, err)
		}
	}
	for _, to := range elsewhere {
		if slices.Contains(ours, to) || bp.Contains(to) {
			continue
		}
		if rs, err := netlink.RouteGetWithOptions(to.AsSlice(), &netlink.RouteGetOptions{Iif: bridge, SrcAddr: from.AsSlice()}); err == nil {
			t.Fatalf("from the bridge %s, %s routes (%v): the test's world would leak", bridge, to, rs)
		}
	}

	w.serve(t)
	return w
}

func mustOnes(m net.IPMask) int {
	ones, _ := m.Size()
	return ones
}

// freeLink picks a /30 in 10.124.0.0/16 that no route of the host
// overlaps.
func freeLink(t testing.TB) netip.Prefix {
	t.Helper()
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 124, byte(1 + randInt(250)), byte(4 * randInt(64))}), 30)
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
			if r.Dst == nil {
				return false
			}
			a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
			bits := mustOnes(r.Dst.Mask)
			return ok && bits > 0 && netip.PrefixFrom(a, bits).Overlaps(p) // not the default route
		}) {
			return p
		}
	}
	t.Fatal("no free /30 for the world's link in 10.124.0.0/16")
	return netip.Prefix{}
}

// freeTable picks a routing table in 10000–19999 that holds no route and
// whose number no rule uses as its preference. A world's rule for packets
// from its bridge has that preference; RouteFromHost's rules have it plus
// 10000, so that any world's from-the-bridge rule comes before every
// world's to-an-address rule (another test process's world included).
func freeTable(t testing.TB) int {
	t.Helper()
	rules, err := netlink.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		n := int(10000 + randInt(10000))
		if slices.ContainsFunc(rules, func(r netlink.Rule) bool { return r.Priority == n || r.Table == n }) {
			continue
		}
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: n}, netlink.RT_FILTER_TABLE)
		if err == nil && len(rs) == 0 {
			return n
		}
	}
	t.Fatal("no free routing table for the world")
	return 0
}

// serve starts the world's servers; they stop at cleanup.
func (w *World) serve(t testing.TB) {
	t.Helper()
	web := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "world %s sees %s", r.Host, r.RemoteAddr)
	})
	for _, port := range []string{"80", "5432"} {
		ln := ListenIn(t, w.Path, "tcp", ":"+port)
		srv := &http.Server{Handler: web, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}

	var udp, dnsUDP net.PacketConn
	var dnsTCP net.Listener
	var errs []error
	InNS(t, w.Path, func() {
		var err error
		udp, err = net.ListenPacket("udp4", ":5432")
		errs = append(errs, err)
		dnsUDP, err = net.ListenPacket("udp4", DNS.String())
		errs = append(errs, err)
		dnsTCP, err = net.Listen("tcp4", DNS.String())
		errs = append(errs, err)
	})
	for _, c := range []interface{ Close() error }{udp, dnsUDP, dnsTCP} {
		if c != nil { // a nil PacketConn or Listener converts to a nil interface
			t.Cleanup(func() { c.Close() })
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("the world's servers: %v", err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			w.mu.Lock()
			w.udp = append(w.udp, string(buf[:n]))
			w.mu.Unlock()
		}
	}()
	for _, srv := range []*dns.Server{
		{PacketConn: dnsUDP, Handler: dns.HandlerFunc(w.answer)},
		{Listener: dnsTCP, Handler: dns.HandlerFunc(w.answer)},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("the world's DNS server did not start")
		}
		t.Cleanup(func() { srv.Shutdown() })
	}
}

// answer is the world's DNS: authoritative for Names, NXDOMAIN for the
// rest.
func (w *World) answer(rw dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		rw.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	w.mu.Lock()
	w.queries = append(w.queries, name+" "+dns.TypeToString[q.Qtype])
	w.mu.Unlock()
	a, ok := names[name]
	switch {
	case !ok:
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA && q.Qclass == dns.ClassINET:
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
			A:   a.AsSlice(),
		})
	}
	rw.WriteMsg(m)
}

// Received reports whether LAN:5432/udp received payload.
func (w *World) Received(payload string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.udp, payload)
}

// Asked reports whether the world's DNS was asked about name (any type).
func (w *World) Asked(name string) bool {
	fq := dns.Fqdn(strings.ToLower(name)) + " "
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.ContainsFunc(w.queries, func(q string) bool { return strings.HasPrefix(q, fq) })
}

// SeesHost reports whether body, an answer of the world's HTTP server,
// shows the host's end of the link as the client: a masqueraded packet.
func (w *World) SeesHost(body string) bool {
	return strings.HasPrefix(body, "world ") && strings.Contains(body, " sees "+w.HostIP.String()+":")
}

// RouteFromHost routes packets the host itself sends to a, an address of
// the world, into the world until cleanup: one rule for a's /32, into the
// world's table. It is for a server on the host told to use the world,
// such as a resolver forwarding to DNS. It checks that a now routes to the
// world from the host, and that the address after a does not.
func (w *World) RouteFromHost(t testing.TB, a netip.Addr) {
	t.Helper()
	if !a.Is4() || !slices.Contains(append([]netip.Addr{TestNet2, TestNet3, DNS.Addr(), Metadata, LAN}, Reserved...), a) {
		t.Fatalf("RouteFromHost(%s): not an address of the world", a)
	}
	dst := netip.PrefixFrom(a, 32).String()
	table, pref := strconv.Itoa(w.Table), strconv.Itoa(w.Table+10000)
	release, err := lockHost()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release) // after the rule's removal, registered below
	IP(t, "rule", "add", "to", dst, "lookup", table, "pref", pref)
	IPCleanup(t, "rule", "del", "to", dst, "lookup", table, "pref", pref)
	rs, err := netlink.RouteGet(a.AsSlice())
	if err != nil || len(rs) != 1 || !rs[0].Gw.Equal(w.Peer.AsSlice()) {
		t.Fatalf("from the host, %s does not route to the world: %v %v", a, rs, err)
	}
	if rs, err := netlink.RouteGet(a.Next().AsSlice()); err == nil && len(rs) > 0 && rs[0].Gw.Equal(w.Peer.AsSlice()) {
		t.Fatalf("from the host, %s routes to the world too: the rule is wider than %s", a.Next(), dst)
	}
}

// Unreachable (which holds the host lock, see lockHost, until undo) adds a
// rule that makes the host's packets to p unroutable
// unless a rule before it (a World's, from RouteFromHost) routes them:
// for a server told to use an address of the world that runs longer than
// any one World, so that while no world exists its packets go nowhere
// rather than to the real address. undo removes the rule.
func Unreachable(p netip.Prefix) (undo func() error, err error) {
	if !p.IsValid() || !p.Addr().Is4() {
		return nil, fmt.Errorf("nettest: unreachable %s: want an IPv4 prefix", p)
	}
	release, err := lockHost()
	if err != nil {
		return nil, err
	}
	args := []string{"rule", "add", "to", p.Masked().String(), "unreachable", "pref", strconv.Itoa(unreachablePref)}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		release()
		return nil, fmt.Errorf("nettest: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return func() error {
		defer release()
		del := slices.Clone(args)
		del[1] = "del"
		if out, err := exec.Command("ip", del...).CombinedOutput(); err != nil {
			return fmt.Errorf("nettest: ip %s: %v: %s", strings.Join(del, " "), err, out)
		}
		return nil
	}, nil
}

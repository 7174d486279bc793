package dns

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Every socket in these tests is on loopback: a fake upstream on
// 127.0.0.1, the server under test on 127.0.0.1, and clients dialing them.

// fakeUpstream is a resolver on 127.0.0.1 (UDP and TCP, one port) that
// answers from a few fixed names and counts what it is asked.
type fakeUpstream struct {
	addr string
	// gate, if not nil, holds every query until it is closed.
	gate chan struct{}
	// rcode, if not zero, answers every query with it.
	rcode int

	mu      sync.Mutex
	queries []seen

	cur, max atomic.Int64 // queries being answered now, and at most
}

type seen struct {
	name  string
	qtype uint16
	net   string
	id    uint16
	rd    bool
	edns  bool
}

type upstreamOpt func(*fakeUpstream)

func withGate(gate chan struct{}) upstreamOpt { return func(u *fakeUpstream) { u.gate = gate } }
func withRcode(code int) upstreamOpt          { return func(u *fakeUpstream) { u.rcode = code } }

func startUpstream(t *testing.T, opts ...upstreamOpt) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	for _, o := range opts {
		o(u)
	}
	pc, ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Many forwards may arrive at once (TestInFlightBounded).
	_ = pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	u.addr = pc.LocalAddr().String()
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	udp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(u.serve), NotifyStartedFunc: notify}
	tcp := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(u.serve), NotifyStartedFunc: notify}
	for _, srv := range []*dns.Server{udp, tcp} {
		go srv.ActivateAndServe()
	}
	<-started
	<-started
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return u
}

func (u *fakeUpstream) serve(w dns.ResponseWriter, r *dns.Msg) {
	n := u.cur.Add(1)
	defer u.cur.Add(-1)
	for m := u.max.Load(); n > m && !u.max.CompareAndSwap(m, n); m = u.max.Load() {
	}
	q := r.Question[0]
	network := w.RemoteAddr().Network()
	u.mu.Lock()
	u.queries = append(u.queries, seen{name: q.Name, qtype: q.Qtype, net: network, id: r.Id, rd: r.RecursionDesired, edns: r.IsEdns0() != nil})
	u.mu.Unlock()
	if u.gate != nil {
		<-u.gate
	}
	w.WriteMsg(u.answer(r, network == "tcp"))
}

func (u *fakeUpstream) answer(r *dns.Msg, tcp bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	if u.rcode != 0 {
		m.Rcode = u.rcode
		return m
	}
	q := r.Question[0]
	soa := func(ttl, minttl uint32) dns.RR {
		return &dns.SOA{Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns: "ns.test.", Mbox: "hostmaster.test.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: minttl}
	}
	a := func(ip string, ttl uint32) dns.RR {
		return &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.ParseIP(ip)}
	}
	switch name := strings.ToLower(q.Name); {
	case name == "nx.test.":
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soa(3600, 3600)}
	case name == "nodata.test.":
		m.Ns = []dns.RR{soa(3600, 20)}
	case name == "nosoa.test.":
	case name == "big.test.":
		if !tcp {
			m.Truncated = true
			return m
		}
		for i := range 100 {
			m.Answer = append(m.Answer, a(fmt.Sprintf("198.51.100.%d", i), 60))
		}
	case q.Qtype != dns.TypeA:
		m.Ns = []dns.RR{soa(60, 60)}
	case name == "long.test.":
		m.Answer = []dns.RR{a("192.0.2.2", 3600)}
	default:
		m.Answer = []dns.RR{a("192.0.2.1", 60)}
	}
	return m
}

// count returns how many queries for name the upstream got (all if name
// is empty).
func (u *fakeUpstream) count(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, q := range u.queries {
		if name == "" || strings.EqualFold(q.name, name) {
			n++
		}
	}
	return n
}

func (u *fakeUpstream) seen() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.queries)
}

// blackhole returns a loopback UDP address that reads nothing and answers
// nothing: forwards to it time out.
func blackhole(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// closedPort returns a loopback address where nothing listens: forwards to
// it are refused.
func closedPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// clock is the cache's clock in the tests: it moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start serves cfg on 127.0.0.1 with opts changed by change, until the
// test ends.
func start(t *testing.T, cfg Config, change func(*options)) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Log == nil {
		cfg.Log = testLog(t)
	}
	opts := defaultOptions()
	opts.resolvConf = filepath.Join(t.TempDir(), "missing-resolv.conf")
	if change != nil {
		change(&opts)
	}
	s, err := serve(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func withClock(c *clock) func(*options) { return func(o *options) { o.now = c.now } }

// ask sends one query to addr over network and returns the answer; the
// client gives up after 10 s.
func ask(t *testing.T, addr, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return exchange(t, addr, network, m)
}

func exchange(t *testing.T, addr, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 10 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], network, err)
	}
	return resp
}

func wantRcode(t *testing.T, m *dns.Msg, code int) {
	t.Helper()
	if m.Rcode != code {
		t.Fatalf("rcode %s, want %s:\n%v", dns.RcodeToString[m.Rcode], dns.RcodeToString[code], m)
	}
}

// wantA checks that m answers with the single A record ip and returns its
// TTL.
func wantA(t *testing.T, m *dns.Msg, ip string) uint32 {
	t.Helper()
	wantRcode(t, m, dns.RcodeSuccess)
	if len(m.Answer) != 1 {
		t.Fatalf("%d answers, want 1:\n%v", len(m.Answer), m)
	}
	a, ok := m.Answer[0].(*dns.A)
	if !ok || a.A.String() != ip {
		t.Fatalf("answer %v, want A %s", m.Answer[0], ip)
	}
	return a.Hdr.Ttl
}

func TestForward(t *testing.T) {
	up := startUpstream(t)
	s := start(t, Config{Upstreams: []string{up.addr}}, nil)
	for i, network := range []string{"udp", "tcp"} {
		name := fmt.Sprintf("app%d.test.", i)
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.Id = 4242
		resp := exchange(t, s.Addr(), network, m)
		if ttl := wantA(t, resp, "192.0.2.1"); ttl != 60 {
			t.Errorf("TTL %d, want the upstream's 60", ttl)
		}
		if !resp.RecursionAvailable || resp.Authoritative {
			t.Errorf("flags RA=%v AA=%v, want a recursive, non-authoritative answer", resp.RecursionAvailable, resp.Authoritative)
		}
	}
	for _, q := range up.seen() {
		if q.id != 4242 || !q.rd || q.net != "udp" {
			t.Errorf("upstream got %+v, want the client's ID 4242, RD set, over UDP", q)
		}
	}
	if n := up.count(""); n != 2 {
		t.Errorf("upstream got %d queries, want 2", n)
	}
}

func TestCache(t *testing.T) {
	up := startUpstream(t)
	clk := newClock()
	s := start(t, Config{Upstreams: []string{up.addr}}, withClock(clk))

	if ttl := wantA(t, ask(t, s.Addr(), "udp", "a.test.", dns.TypeA), "192.0.2.1"); ttl != 60 {
		t.Fatalf("first TTL %d, want 60", ttl)
	}
	clk.advance(10 * time.Second)
	// A repeat, in other case, over the other transport: the cache answers.
	resp := ask(t, s.Addr(), "tcp", "A.TeSt.", dns.TypeA)
	if ttl := wantA(t, resp, "192.0.2.1"); ttl != 50 {
		t.Errorf("cached TTL %d after 10 s, want 50", ttl)
	}
	if got := resp.Question[0].Name; got != "A.TeSt." {
		t.Errorf("question %q, want the client's own %q", got, "A.TeSt.")
	}
	if n := up.count("a.test."); n != 1 {
		t.Fatalf("upstream asked %d times, want 1 (the repeat from the cache)", n)
	}
	// Another type is another entry.
	wantRcode(t, ask(t, s.Addr(), "udp", "a.test.", dns.TypeAAAA), dns.RcodeSuccess)
	if n := up.count("a.test."); n != 2 {
		t.Fatalf("upstream asked %d times, want 2 (AAAA is not A)", n)
	}

	clk.advance(50 * time.Second) // 60 s: expired
	if ttl := wantA(t, ask(t, s.Addr(), "udp", "a.test.", dns.TypeA), "192.0.2.1"); ttl != 60 {
		t.Errorf("TTL %d after expiry, want a fresh 60", ttl)
	}
	if n := up.count("a.test."); n != 3 {
		t.Errorf("upstream asked %d times, want 3 (the entry expired)", n)
	}
}

func TestCacheCapsTTL(t *testing.T) {
	up := startUpstream(t)
	clk := newClock()
	s := start(t, Config{Upstreams: []string{up.addr}}, withClock(clk))
	if ttl := wantA(t, ask(t, s.Addr(), "udp", "long.test.", dns.TypeA), "192.0.2.2"); ttl != 300 {
		t.Errorf("TTL %d, want the upstream's 3600 capped at 300", ttl)
	}
	clk.advance(299 * time.Second)
	if ttl := wantA(t, ask(t, s.Addr(), "udp", "long.test.", dns.TypeA), "192.0.2.2"); ttl != 1 {
		t.Errorf("TTL %d after 299 s, want 1", ttl)
	}
	clk.advance(time.Second)
	ask(t, s.Addr(), "udp", "long.test.", dns.TypeA)
	if n := up.count("long.test."); n != 2 {
		t.Errorf("upstream asked %d times, want 2 (cached 5 minutes at most)", n)
	}
}

func TestNegativeCache(t *testing.T) {
	up := startUpstream(t)
	clk := newClock()
	s := start(t, Config{Upstreams: []string{up.addr}}, withClock(clk))

	// NXDOMAIN, SOA says an hour: cached for 30 s.
	resp := ask(t, s.Addr(), "udp", "nx.test.", dns.TypeA)
	wantRcode(t, resp, dns.RcodeNameError)
	if len(resp.Ns) != 1 || resp.Ns[0].Header().Ttl != 30 {
		t.Errorf("authority %v, want the SOA with TTL 30", resp.Ns)
	}
	clk.advance(29 * time.Second)
	resp = ask(t, s.Addr(), "udp", "nx.test.", dns.TypeA)
	wantRcode(t, resp, dns.RcodeNameError)
	if ttl := resp.Ns[0].Header().Ttl; ttl != 1 {
		t.Errorf("cached SOA TTL %d after 29 s, want 1", ttl)
	}
	if n := up.count("nx.test."); n != 1 {
		t.Fatalf("upstream asked %d times, want 1 (NXDOMAIN cached)", n)
	}
	clk.advance(time.Second)
	wantRcode(t, ask(t, s.Addr(), "udp", "nx.test.", dns.TypeA), dns.RcodeNameError)
	if n := up.count("nx.test."); n != 2 {
		t.Errorf("upstream asked %d times, want 2 (NXDOMAIN expired after 30 s)", n)
	}

	// NODATA, SOA's minimum 20 s: cached 20 s.
	ask(t, s.Addr(), "udp", "nodata.test.", dns.TypeA)
	clk.advance(19 * time.Second)
	ask(t, s.Addr(), "udp", "nodata.test.", dns.TypeA)
	if n := up.count("nodata.test."); n != 1 {
		t.Errorf("upstream asked %d times, want 1 (NODATA cached)", n)
	}
	clk.advance(time.Second)
	ask(t, s.Addr(), "udp", "nodata.test.", dns.TypeA)
	if n := up.count("nodata.test."); n != 2 {
		t.Errorf("upstream asked %d times, want 2 (NODATA expired after its SOA's 20 s)", n)
	}

	// A negative answer without a SOA is not cached (RFC 2308).
	ask(t, s.Addr(), "udp", "nosoa.test.", dns.TypeA)
	ask(t, s.Addr(), "udp", "nosoa.test.", dns.TypeA)
	if n := up.count("nosoa.test."); n != 2 {
		t.Errorf("upstream asked %d times, want 2 (no SOA, no caching)", n)
	}
}

func TestCacheBounded(t *testing.T) {
	up := startUpstream(t)
	s := start(t, Config{Upstreams: []string{up.addr}, CacheSize: 2}, withClock(newClock()))
	for _, name := range []string{"one.test.", "two.test.", "one.test.", "three.test."} {
		ask(t, s.Addr(), "udp", name, dns.TypeA)
	}
	// one was used after two, so two went when three came.
	ask(t, s.Addr(), "udp", "one.test.", dns.TypeA)
	ask(t, s.Addr(), "udp", "two.test.", dns.TypeA)
	if n := up.count("one.test."); n != 1 {
		t.Errorf("one.test asked %d times, want 1 (recently used, kept)", n)
	}
	if n := up.count("two.test."); n != 2 {
		t.Errorf("two.test asked %d times, want 2 (least recently used, evicted)", n)
	}
	if n := s.cache.len(); n != 2 {
		t.Errorf("cache holds %d entries, want its bound 2", n)
	}
}

func TestFallsThrough(t *testing.T) {
	good := startUpstream(t)
	failing := startUpstream(t, withRcode(dns.RcodeServerFailure))
	refusing := startUpstream(t, withRcode(dns.RcodeRefused))
	s := start(t, Config{Upstreams: []string{blackhole(t), closedPort(t), failing.addr, refusing.addr, good.addr}}, nil)
	begin := time.Now()
	wantA(t, ask(t, s.Addr(), "udp", "app.test.", dns.TypeA), "192.0.2.1")
	if failing.count("") != 1 || refusing.count("") != 1 || good.count("") != 1 {
		t.Errorf("upstreams asked %d, %d, %d times, want once each, in order", failing.count(""), refusing.count(""), good.count(""))
	}
	t.Logf("answered after %v (one upstream timed out)", time.Since(begin))
}

func TestAllFail(t *testing.T) {
	failing := startUpstream(t, withRcode(dns.RcodeServerFailure))
	s := start(t, Config{Upstreams: []string{blackhole(t), closedPort(t), failing.addr}}, nil)
	begin := time.Now()
	wantRcode(t, ask(t, s.Addr(), "udp", "app.test.", dns.TypeA), dns.RcodeServerFailure)
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("SERVFAIL after %v, want within 10 s", d)
	}
	// A failure is not cached.
	ask(t, s.Addr(), "udp", "app.test.", dns.TypeA)
	if n := failing.count(""); n != 2 {
		t.Errorf("failing upstream asked %d times, want 2", n)
	}
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	up := startUpstream(t)
	s := start(t, Config{Upstreams: []string{up.addr}}, nil)

	resp := ask(t, s.Addr(), "tcp", "big.test.", dns.TypeA)
	wantRcode(t, resp, dns.RcodeSuccess)
	if len(resp.Answer) != 100 || resp.Truncated {
		t.Fatalf("%d answers (TC=%v), want all 100 over TCP", len(resp.Answer), resp.Truncated)
	}
	var nets []string
	for _, q := range up.seen() {
		nets = append(nets, q.net)
	}
	if !slices.Equal(nets, []string{"udp", "tcp"}) {
		t.Errorf("upstream asked over %v, want udp then tcp", nets)
	}

	// Over UDP the client gets no more than it can take, and TC.
	for _, bufsize := range []uint16{0, 4096} {
		m := new(dns.Msg)
		m.SetQuestion("big.test.", dns.TypeA)
		limit := 512
		if bufsize > 0 {
			m.SetEdns0(bufsize, false)
			limit = 1232
		}
		// A raw socket, to see the datagram's size as it came.
		conn, err := net.Dial("udp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		query, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(query); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65535)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if !resp.Truncated || n > limit || len(resp.Answer) >= 100 || resp.Id != m.Id {
			t.Errorf("client buffer %d: %d bytes, %d answers, TC=%v; want at most %d bytes and TC", bufsize, n, len(resp.Answer), resp.Truncated, limit)
		}
		t.Logf("client buffer %d: %d bytes, %d answers", bufsize, n, len(resp.Answer))
	}
	if n := up.count(""); n != 2 {
		t.Errorf("upstream asked %d times, want 2 (the UDP clients answered from the cache)", n)
	}
}

func TestInternal(t *testing.T) {
	up := startUpstream(t)
	var mu sync.Mutex
	var asked []string
	internal := func(name string) (netip.Addr, bool) {
		mu.Lock()
		asked = append(asked, name)
		mu.Unlock()
		switch name {
		case "web.internal":
			return netip.MustParseAddr("10.88.0.1"), true
		case "db.web.internal":
			return netip.MustParseAddr("fd00::1"), true
		}
		return netip.Addr{}, false
	}
	s := start(t, Config{Upstreams: []string{up.addr}, Internal: internal}, nil)

	resp := ask(t, s.Addr(), "udp", "WEB.Internal.", dns.TypeA)
	wantA(t, resp, "10.88.0.1")
	if !resp.Authoritative || resp.Answer[0].Header().Name != "WEB.Internal." {
		t.Errorf("answer %v (AA=%v), want an authoritative answer for the name asked", resp.Answer[0], resp.Authoritative)
	}
	resp = ask(t, s.Addr(), "tcp", "db.web.internal.", dns.TypeAAAA)
	wantRcode(t, resp, dns.RcodeSuccess)
	if len(resp.Answer) != 1 || resp.Answer[0].(*dns.AAAA).AAAA.String() != "fd00::1" {
		t.Errorf("answer %v, want AAAA fd00::1", resp.Answer)
	}
	// An IPv4 name has no AAAA, and no MX: empty answers.
	for _, qtype := range []uint16{dns.TypeAAAA, dns.TypeMX} {
		resp = ask(t, s.Addr(), "udp", "web.internal.", qtype)
		wantRcode(t, resp, dns.RcodeSuccess)
		if len(resp.Answer) != 0 {
			t.Errorf("%s: answer %v, want none", dns.TypeToString[qtype], resp.Answer)
		}
	}
	wantRcode(t, ask(t, s.Addr(), "udp", "nope.internal.", dns.TypeA), dns.RcodeNameError)
	wantRcode(t, ask(t, s.Addr(), "udp", "internal.", dns.TypeA), dns.RcodeNameError)

	mu.Lock()
	want := []string{"web.internal", "db.web.internal", "web.internal", "web.internal", "nope.internal", "internal"}
	if !slices.Equal(asked, want) {
		t.Errorf("Internal asked %q, want %q", asked, want)
	}
	mu.Unlock()

	// Without Internal, every .internal name is NXDOMAIN.
	bare := start(t, Config{Upstreams: []string{up.addr}}, nil)
	wantRcode(t, ask(t, bare.Addr(), "udp", "web.internal.", dns.TypeA), dns.RcodeNameError)

	// A name that only looks internal is forwarded.
	wantA(t, ask(t, s.Addr(), "udp", "internal.test.", dns.TypeA), "192.0.2.1")
	if n := up.count(""); n != 1 {
		t.Errorf("upstream asked %d times, want 1 (.internal names never forwarded)", n)
	}
}

func TestRefuses(t *testing.T) {
	up := startUpstream(t)
	s := start(t, Config{Upstreams: []string{up.addr}}, nil)

	resp := ask(t, s.Addr(), "udp", "app.test.", dns.TypeANY)
	wantRcode(t, resp, dns.RcodeSuccess)
	if len(resp.Answer) != 1 {
		t.Fatalf("ANY: %v, want one HINFO record (RFC 8482)", resp.Answer)
	}
	if h, ok := resp.Answer[0].(*dns.HINFO); !ok || h.Cpu != "RFC8482" {
		t.Errorf("ANY: %v, want HINFO RFC8482", resp.Answer[0])
	}
	wantRcode(t, ask(t, s.Addr(), "tcp", "test.", dns.TypeAXFR), dns.RcodeRefused)
	m := new(dns.Msg)
	m.SetQuestion("version.bind.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	wantRcode(t, exchange(t, s.Addr(), "udp", m), dns.RcodeRefused)
	m = new(dns.Msg)
	m.SetNotify("test.")
	wantRcode(t, exchange(t, s.Addr(), "udp", m), dns.RcodeNotImplemented)

	if n := up.count(""); n != 0 {
		t.Errorf("upstream asked %d times, want 0", n)
	}
}

// TestInFlightBounded holds every forward at the upstream and sends 1000
// queries at once: 256 reach the upstream, the rest are answered SERVFAIL
// at once; released, the 256 are answered.
func TestInFlightBounded(t *testing.T) {
	const queries = 1000
	gate := make(chan struct{})
	up := startUpstream(t, withGate(gate))
	s := start(t, Config{Upstreams: []string{up.addr}}, func(o *options) { o.timeout = time.Minute })
	defer func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	}()

	rcodes := make(chan int, queries)
	for i := range queries {
		go func() {
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("q%d.test.", i), dns.TypeA)
			c := &dns.Client{Net: "tcp", Timeout: 30 * time.Second}
			resp, _, err := c.Exchange(m, s.Addr())
			if err != nil {
				rcodes <- -1
				return
			}
			rcodes <- resp.Rcode
		}()
	}
	count := func(n int, within time.Duration) map[int]int {
		got := map[int]int{}
		timeout := time.After(within)
		for range n {
			select {
			case code := <-rcodes:
				got[code]++
			case <-timeout:
				t.Fatalf("only %v answers within %v, want %d", got, within, n)
			}
		}
		return got
	}
	got := count(queries-MaxInFlight, 10*time.Second)
	if got[dns.RcodeServerFailure] != queries-MaxInFlight {
		t.Fatalf("while %d forwards are held: %v, want %d SERVFAIL", MaxInFlight, got, queries-MaxInFlight)
	}
	if n := up.cur.Load(); n != MaxInFlight {
		t.Errorf("upstream is answering %d queries, want %d", n, MaxInFlight)
	}
	close(gate)
	got = count(MaxInFlight, 10*time.Second)
	if got[dns.RcodeSuccess] != MaxInFlight {
		t.Errorf("released: %v, want %d NOERROR", got, MaxInFlight)
	}
	if p := s.peak.Load(); p != MaxInFlight {
		t.Errorf("server had %d forwards in flight at most, want %d", p, MaxInFlight)
	}
	if m := up.max.Load(); m != MaxInFlight {
		t.Errorf("upstream answered %d queries at once at most, want %d", m, MaxInFlight)
	}
	if n := s.inFlight.Load(); n != 0 {
		t.Errorf("%d forwards still in flight", n)
	}
}

func TestCloseEndsForwards(t *testing.T) {
	cfg := Config{Listen: "127.0.0.1:0", Upstreams: []string{blackhole(t)}, Log: testLog(t)}
	opts := defaultOptions()
	opts.timeout = time.Minute
	s, err := serve(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("app.test.", dns.TypeA)
		c := &dns.Client{Net: "udp", Timeout: 30 * time.Second}
		_, _, err := c.Exchange(m, s.Addr())
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.inFlight.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the query never reached the forwarder")
		}
		time.Sleep(10 * time.Millisecond)
	}
	begin := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("Close took %v with a forward in flight, want well under its minute", d)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Error("still accepting TCP after Close")
	}
	<-done
}

func TestServeErrors(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if _, err := Serve(Config{Listen: taken.LocalAddr().String(), Upstreams: []string{"127.0.0.1:53"}}); err == nil {
		t.Error("Serve on a bound address: no error")
	}

	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.conf")
	os.WriteFile(empty, []byte("# nothing\nsearch example.com\n"), 0o644)
	_, err = serve(Config{Listen: "127.0.0.1:0"}, options{resolvConf: empty, timeout: time.Second, maxInFlight: 1, now: time.Now})
	if !errors.Is(err, ErrNoUpstreams) {
		t.Errorf("resolv.conf without nameservers: %v, want ErrNoUpstreams", err)
	}
	_, err = serve(Config{Listen: "127.0.0.1:0"}, options{resolvConf: filepath.Join(dir, "missing"), timeout: time.Second, maxInFlight: 1, now: time.Now})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing resolv.conf: %v, want a not-exist error", err)
	}
}

// TestResolvConfLoopback: with no Upstreams, a host whose resolv.conf
// names systemd-resolved (127.0.0.53) forwards there.
func TestResolvConfLoopback(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(conf, []byte("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n"), 0o644)
	s := start(t, Config{}, func(o *options) { o.resolvConf = conf })
	if !slices.Equal(s.upstreams, []string{"127.0.0.53:53"}) {
		t.Errorf("upstreams %q, want the loopback systemd-resolved", s.upstreams)
	}
}

func TestLoops(t *testing.T) {
	for _, tc := range []struct {
		self, upstream string
		want           bool
	}{
		{"10.88.0.1:53", "10.88.0.1:53", true},
		{"10.88.0.1:53", "127.0.0.53:53", false},
		{"10.88.0.1:53", "10.88.0.1:5353", false},
		{"0.0.0.0:53", "127.0.0.1:53", true},
		{"0.0.0.0:53", "127.0.0.53:53", true},
		{"127.0.0.1:53", "127.0.0.53:53", false},
		{"[::]:53", "[::1]:53", true},
		{"[::ffff:10.88.0.1]:53", "10.88.0.1:53", true},
	} {
		if got := loops(netip.MustParseAddrPort(tc.self), tc.upstream); got != tc.want {
			t.Errorf("loops(%s, %s) = %v, want %v", tc.self, tc.upstream, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Listen: "10.88.0.1:53"}, true},
		{Config{Listen: "127.0.0.1:0", Upstreams: []string{"192.0.2.53:53", "[2001:db8::53]:53"}}, true},
		{Config{}, false},
		{Config{Listen: "10.88.0.1"}, false},
		{Config{Listen: "10.88.0.1:53", Upstreams: []string{"192.0.2.53"}}, false},
		{Config{Listen: "10.88.0.1:53", Upstreams: []string{"dns.example:53"}}, false},
		{Config{Listen: "10.88.0.1:53", CacheSize: -1}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}

func TestUpstreams(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(conf, []byte(`# Generated by NetworkManager
; an old-style comment
search example.com corp.example
domain example.com
options ndots:2 timeout:1 attempts:3 rotate
nameserver 127.0.0.53
nameserver 2001:db8::53   # inline comment
nameserver fe80::1%eth0
   nameserver	192.0.2.53;trailing
#nameserver 192.0.2.99
nameserver dns.example
nameserver
nameserver 198.51.100.53
`), 0o644)
	got, err := Upstreams(conf)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.53:53", "[2001:db8::53]:53", "[fe80::1%eth0]:53", "192.0.2.53:53", "198.51.100.53:53"}
	if !slices.Equal(got, want) {
		t.Errorf("Upstreams = %q, want %q", got, want)
	}
	for _, u := range got {
		if err := (Config{Listen: "127.0.0.1:0", Upstreams: []string{u}}).Validate(); err != nil {
			t.Errorf("Upstreams gave %q, which Config does not take: %v", u, err)
		}
	}
	if _, err := Upstreams(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want a not-exist error", err)
	}
}

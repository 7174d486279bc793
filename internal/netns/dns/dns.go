// Package dns is the resolver Slipway serves to its instances: a small
// forwarding DNS server with a cache, listening (UDP and TCP) on the
// gateway address of the instances' bridge, whose /etc/resolv.conf points
// at it.
//
// For each query it answers, in order:
//
//   - ANY with a minimal RFC 8482 answer (one HINFO record), and zone
//     transfers and non-IN classes with REFUSED, so that the server is no
//     amplifier;
//   - names under ".internal." itself, from Config.Internal (private
//     networking); they are never forwarded;
//   - from its cache, keyed by (name lowercased, type, class), with the
//     TTLs counted down;
//   - otherwise by forwarding the question to the upstream resolvers in
//     order (UDP, again over TCP when the answer is truncated; 2 s for
//     each), answering SERVFAIL when all fail or when too many forwards
//     are already in flight.
//
// Answers to UDP clients never exceed what the client advertised, nor
// 1232 bytes: anything longer is truncated so the client retries over TCP.
// What a client can make the server hold is bounded: MaxInFlight forwards,
// MaxTCPConns connections, DefaultCacheSize (or Config.CacheSize) answers.
//
// Use:
//
//	srv, err := dns.Serve(dns.Config{Listen: "10.88.0.1:53", Internal: lookup})
//	if err != nil { … }
//	defer srv.Close()
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/netutil"
)

const (
	// DefaultCacheSize is the cache's bound when Config.CacheSize is zero.
	DefaultCacheSize = 4096
	// MaxInFlight bounds the forwards in flight at once; a query that
	// would exceed it is answered SERVFAIL at once.
	MaxInFlight = 256
	// MaxTCPConns bounds the TCP connections served at once; more wait
	// in the listen backlog.
	MaxTCPConns = 1024

	maxTTL      = 5 * time.Minute  // longest an answer stays cached
	maxNegTTL   = 30 * time.Second // longest a negative answer stays cached
	upstreamTTL = 2 * time.Second  // per upstream and per transport
	internalTTL = 10               // seconds, for answers from Config.Internal
	// udpSize is the largest UDP answer we send and the buffer we
	// advertise upstream (the DNS flag day 2020 value: no fragmentation).
	udpSize = 1232
)

// ErrNoUpstreams is returned by Serve when there is nowhere to forward to:
// Config.Upstreams and resolv.conf name no resolver (or only the server
// itself).
var ErrNoUpstreams = errors.New("no upstream resolvers")

// Config configures a Server. Only Listen is required.
type Config struct {
	// Listen is the address to serve on, UDP and TCP (e.g. the gateway
	// "10.88.0.1:53"). Required. With port 0, UDP and TCP share the port
	// the system picks.
	Listen string

	// Upstreams are IP:PORT resolvers to forward to, tried in order. If
	// empty, the nameservers of /etc/resolv.conf, on port 53. Loopback
	// nameservers are kept (a host whose resolv.conf says 127.0.0.53,
	// systemd-resolved, still works: the server runs on the host, so it
	// reaches the host's loopback). Only an upstream that is the server's
	// own address is dropped, as it would loop.
	Upstreams []string

	// CacheSize bounds the cache in entries. If zero, DefaultCacheSize.
	// An answer stays cached for its smallest TTL, at most 5 minutes; a
	// negative answer (NXDOMAIN, NODATA) for its SOA's negative TTL, at
	// most 30 seconds, and not at all without a SOA (RFC 2308).
	CacheSize int

	// Internal, if set, answers names under ".internal." (private
	// networking). It gets the name lowercased and without its final dot
	// ("web.internal") and returns the address to answer with, or false
	// for NXDOMAIN. An IPv4 address answers A queries, an IPv6 one AAAA
	// queries; other types get an empty answer. If nil, every .internal
	// name is NXDOMAIN. Such names are never forwarded upstream.
	Internal func(name string) (netip.Addr, bool)

	// Log receives the server's start, its errors and (at debug level)
	// failed forwards. If nil, slog.Default().
	Log *slog.Logger
}

// Validate reports whether c can be served, without binding anything.
func (c Config) Validate() error {
	if c.Listen == "" {
		return errors.New("dns: listen address is required")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("dns: listen address %q: %w", c.Listen, err)
	}
	for _, u := range c.Upstreams {
		if _, err := netip.ParseAddrPort(u); err != nil {
			return fmt.Errorf("dns: upstream %q is not IP:PORT: %w", u, err)
		}
	}
	if c.CacheSize < 0 {
		return fmt.Errorf("dns: negative cache size %d", c.CacheSize)
	}
	return nil
}

// options are the knobs the tests turn; Serve uses the defaults.
type options struct {
	resolvConf  string           // read when Config.Upstreams is empty
	timeout     time.Duration    // per upstream and transport
	maxInFlight int              // forwards in flight at once
	now         func() time.Time // the cache's clock
}

func defaultOptions() options {
	return options{resolvConf: "/etc/resolv.conf", timeout: upstreamTTL, maxInFlight: MaxInFlight, now: time.Now}
}

// A Server is a running resolver. Close stops it.
type Server struct {
	internal  func(string) (netip.Addr, bool)
	log       *slog.Logger
	upstreams []string
	opts      options
	cache     *cache

	slots    chan struct{} // one per forward in flight
	inFlight atomic.Int64
	peak     atomic.Int64 // highest inFlight seen, for the tests

	ctx    context.Context // cancelled by Close: ends forwards in flight
	cancel context.CancelFunc
	udp    *dns.Server
	tcp    *dns.Server
	addr   string
	served chan error // each listener's end, two in all

	closeOnce sync.Once
	closeErr  error
}

// Serve binds cfg.Listen over UDP and TCP and serves in the background
// until Close. It returns the bind error, if any, and ErrNoUpstreams when
// there is nowhere to forward to.
func Serve(cfg Config) (*Server, error) {
	return serve(cfg, defaultOptions())
}

func serve(cfg Config, opts options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	upstreams := cfg.Upstreams
	if len(upstreams) == 0 {
		var err error
		if upstreams, err = Upstreams(opts.resolvConf); err != nil {
			return nil, fmt.Errorf("dns: %w", err)
		}
	}
	if len(upstreams) == 0 {
		return nil, fmt.Errorf("dns: %w in %s", ErrNoUpstreams, opts.resolvConf)
	}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}

	pc, ln, err := listen(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	self := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	var ups []string
	for _, u := range upstreams {
		if loops(self, u) {
			log.Warn("dns: dropping an upstream that is this server", "upstream", u, "listen", self.String())
			continue
		}
		ups = append(ups, u)
	}
	if len(ups) == 0 {
		pc.Close()
		ln.Close()
		return nil, fmt.Errorf("dns: %w (listening on %s, upstreams %q)", ErrNoUpstreams, self, upstreams)
	}

	s := &Server{
		internal:  cfg.Internal,
		log:       log,
		upstreams: ups,
		opts:      opts,
		cache:     newCache(size),
		slots:     make(chan struct{}, opts.maxInFlight),
		addr:      self.String(),
		served:    make(chan error, 2),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	handler := dns.HandlerFunc(s.serveDNS)
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: handler, UDPSize: dns.DefaultMsgSize, NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: netutil.LimitListener(ln, MaxTCPConns), Handler: handler, NotifyStartedFunc: notify}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		go func() { s.served <- srv.ActivateAndServe() }()
	}
	// Wait until both serve, so that Close can shut them down.
	for range 2 {
		select {
		case <-started:
		case err := <-s.served:
			s.cancel()
			pc.Close()
			ln.Close()
			return nil, fmt.Errorf("dns: serving %s: %w", s.addr, err)
		}
	}
	go s.watch()
	log.Info("dns: serving", "listen", s.addr, "upstreams", ups)
	return s, nil
}

// watch logs a listener that stops on its own (not by Close).
func (s *Server) watch() {
	for range 2 {
		select {
		case err := <-s.served:
			if err != nil && s.ctx.Err() == nil {
				s.log.Error("dns: listener stopped", "listen", s.addr, "err", err)
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// listen binds UDP then TCP on the same address; with port 0, TCP takes the
// port UDP got (trying again if it is taken over TCP).
func listen(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt == 10 {
			return nil, nil, err
		}
	}
}

// loops reports whether forwarding to upstream would reach the server
// listening on self.
func loops(self netip.AddrPort, upstream string) bool {
	up, err := netip.ParseAddrPort(upstream)
	if err != nil || up.Port() != self.Port() {
		return false
	}
	a, s := up.Addr().Unmap(), self.Addr().Unmap()
	return a == s || (s.IsUnspecified() && a.IsLoopback())
}

// Addr returns the address the server listens on (UDP and TCP), with the
// port the system picked if Config.Listen said 0.
func (s *Server) Addr() string { return s.addr }

// Close stops serving: it closes both listeners, ends the forwards in
// flight and waits for the handlers to return. It is safe to call twice.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.closeErr = errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("dns: closing %s: %w", s.addr, s.closeErr)
		}
	})
	return s.closeErr
}

// serveDNS answers one query: it resolves it, then shapes the answer for
// this client (ID, question, flags, EDNS, size).
func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := s.resolve(req)
	finish(req, m, w.RemoteAddr().Network() == "udp")
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns: writing an answer", "client", w.RemoteAddr().String(), "err", err)
	}
}

// resolve returns the answer to req, before finish.
func (s *Server) resolve(req *dns.Msg) *dns.Msg {
	if req.Opcode != dns.OpcodeQuery {
		return rcode(dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return rcode(dns.RcodeFormatError)
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	switch {
	case q.Qclass != dns.ClassINET:
		return rcode(dns.RcodeRefused)
	case q.Qtype == dns.TypeANY:
		return rfc8482(q)
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		return rcode(dns.RcodeRefused)
	case name == "internal." || strings.HasSuffix(name, ".internal."):
		return s.answerInternal(q, name)
	}

	key := cacheKey{name: name, qtype: q.Qtype, qclass: q.Qclass}
	if m := s.cache.get(key, s.opts.now()); m != nil {
		return m
	}

	select {
	case s.slots <- struct{}{}:
	default:
		s.log.Debug("dns: too many forwards in flight", "name", q.Name, "limit", cap(s.slots))
		return rcode(dns.RcodeServerFailure)
	}
	n := s.inFlight.Add(1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	resp, err := s.forward(s.ctx, q, req.Id)
	s.inFlight.Add(-1)
	<-s.slots
	if err != nil {
		s.log.Debug("dns: every upstream failed", "name", q.Name, "type", dns.TypeToString[q.Qtype], "err", err)
		return rcode(dns.RcodeServerFailure)
	}
	resp = clean(resp)
	if life := lifetime(resp); life > 0 {
		s.cache.put(key, resp, s.opts.now(), life)
		setTTLs(resp, uint32(life/time.Second))
	}
	return resp
}

// answerInternal answers a name under .internal. from Config.Internal.
func (s *Server) answerInternal(q dns.Question, name string) *dns.Msg {
	m := new(dns.Msg)
	m.Authoritative = true
	if s.internal == nil {
		m.Rcode = dns.RcodeNameError
		return m
	}
	addr, ok := s.internal(strings.TrimSuffix(name, "."))
	if !ok {
		m.Rcode = dns.RcodeNameError
		return m
	}
	addr = addr.Unmap()
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: internalTTL}
	switch {
	case q.Qtype == dns.TypeA && addr.Is4():
		hdr.Rrtype = dns.TypeA
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: addr.AsSlice()}}
	case q.Qtype == dns.TypeAAAA && addr.Is6():
		hdr.Rrtype = dns.TypeAAAA
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()}}
	}
	return m
}

// rfc8482 is the minimal answer to an ANY query (RFC 8482 section 4.2):
// one synthesised HINFO record, never forwarded.
func rfc8482(q dns.Question) *dns.Msg {
	m := new(dns.Msg)
	m.Answer = []dns.RR{&dns.HINFO{
		Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: 8482},
		Cpu: "RFC8482",
	}}
	return m
}

func rcode(code int) *dns.Msg {
	m := new(dns.Msg)
	m.Rcode = code
	return m
}

// finish shapes m as the answer to req: the client's ID and question, our
// flags, an OPT record if the client sent one, and for UDP no more bytes
// than the client can take (truncated, TC set, beyond that).
func finish(req, m *dns.Msg, udp bool) {
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.RecursionAvailable = true
	m.CheckingDisabled = req.CheckingDisabled
	m.Zero = false
	m.Question = req.Question
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(udpSize, false)
		size = max(dns.MinMsgSize, min(int(opt.UDPSize()), udpSize))
	}
	if udp {
		m.Truncate(size)
	} else {
		m.Compress = true
	}
}

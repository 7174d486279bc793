package router

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// The front. net/http's server costs more per request than everything
// else the router does: a Request and its Header map, a context, a
// response writer, a goroutine for the background read. For the requests
// apps get most (a GET or HEAD without a body, for a host that is serving,
// answered with a Content-Length), the Front reads the request head itself,
// forwards its lines to a pooled connection of the deployment as they are
// (less the hop-by-hop and X-Forwarded-* ones, plus its own X-Forwarded-*),
// and copies the answer back the same way. It parses strictly: anything it
// does not fully understand (another method, a body, an upgrade, an absolute
// URL, HTTP/1.0, a bare LF, a head larger than its buffer, a Host the table
// does not serve) is handed, with the connection and every byte read from it
// so far, to an http.Server whose Handler is the Router, and that connection
// stays there. net/http therefore remains the reference for everything but
// the plain case, and for every error page.
//
// Two differences from net/http's path are deliberate and match what nginx
// does: the front never guesses a Content-Type the app did not send, and it
// passes header lines on with the case and spacing the app used.
//
// The front is in package router, not a package of its own, because it
// works on the Router's insides on every request: the Table's entries, the
// per-deployment pools, the header classification and the pages. Apart, it
// would need them exported, or reached through interfaces on the hot path.
//
// front.go serves connections and hands them over; front_parse.go reads
// heads; front_proxy.go exchanges a request with the app; front_watch.go
// notices clients that leave while the app works.

// frontBufferSize is the size of the buffer a request head must fit in to
// be read by the front; larger heads are handed to net/http, which accepts
// up to its MaxHeaderBytes.
const frontBufferSize = 8 << 10

// acmeChallengePrefix is the path of ACME http-01 challenges (RFC 8555,
// 8.3). Requests for it always go to the Fallback server, whose Handler
// answers them when certificates are managed (certs.ACME.HTTPHandler).
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// Front serves HTTP/1.1 for a Router on a listener: plain requests (see
// above) itself, everything else through Fallback. Serve and Shutdown
// mirror http.Server's.
//
//	front := &router.Front{Router: rt, Fallback: &http.Server{Handler: rt, ReadHeaderTimeout: 10 * time.Second}}
//	go front.Serve(ln)
//	...
//	front.Shutdown(ctx)
type Front struct {
	// Router routes and proxies the requests the front takes.
	Router *Router
	// Fallback serves the connections the front hands over. Its Handler
	// must route as Router does: the Router itself, or a wrapper of it (say,
	// one that answers ACME challenges first). Its ReadHeaderTimeout and
	// IdleTimeout (or ReadTimeout) apply to the front's connections too. Its
	// Addr is not used; Serve must not be called on it.
	Fallback *http.Server

	initOnce sync.Once
	handoff  *handoffListener
	served   chan error // Fallback.Serve's result

	// closing is set once Shutdown begins. Connections read it, and
	// their own idle flag, without mu: a connection stores idle then loads
	// closing, Shutdown stores closing then loads each idle, so one of the
	// two always sees the other (atomics are sequentially consistent).
	closing atomic.Bool

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*frontConn]struct{}
	finished sync.WaitGroup // one per connection in conns
}

func (f *Front) init() {
	f.Router.once.Do(f.Router.init)
	f.handoff = &handoffListener{conns: make(chan net.Conn), done: make(chan struct{})}
	f.served = make(chan error, 1)
	f.conns = make(map[*frontConn]struct{})
	go func() { f.served <- f.Fallback.Serve(f.handoff) }()
}

// Serve accepts connections on ln and serves them until Shutdown. It
// returns http.ErrServerClosed after Shutdown, or the error that made
// accepting fail.
func (f *Front) Serve(ln net.Listener) error {
	f.initOnce.Do(f.init)
	f.handoff.setAddr(ln.Addr())
	f.mu.Lock()
	if f.closing.Load() {
		f.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	f.ln = ln
	f.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.closing.Load() {
				return http.ErrServerClosed
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				// Out of file descriptors and the like: back off as
				// http.Server does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		fc := newFrontConn(f, c)
		f.mu.Lock()
		if f.closing.Load() {
			f.mu.Unlock()
			c.Close()
			continue
		}
		f.conns[fc] = struct{}{}
		f.finished.Add(1)
		f.mu.Unlock()
		go fc.serve()
	}
}

// Shutdown stops accepting, closes idle connections, waits for the
// requests in flight on the front's own connections to finish, then shuts
// Fallback down with ctx. Upgraded connections (WebSockets) are not waited
// for, as with http.Server.
func (f *Front) Shutdown(ctx context.Context) error {
	f.initOnce.Do(f.init)
	f.mu.Lock()
	f.closing.Store(true)
	if f.ln != nil {
		f.ln.Close()
	}
	for fc := range f.conns {
		if fc.idle.Load() {
			fc.c.Close()
		}
	}
	f.mu.Unlock()

	waited := make(chan struct{})
	go func() { f.finished.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		// Out of time: still stop Fallback's listening and idle
		// connections, as http.Server.Shutdown does for its own.
		f.Fallback.Shutdown(ctx)
		return ctx.Err()
	}
	err := f.Fallback.Shutdown(ctx)
	<-f.served
	return err
}

// setIdle records that fc waits for a request. It reports false if the
// front is shutting down, and fc should close instead.
func (fc *frontConn) setIdle() bool {
	fc.idle.Store(true)
	return !fc.f.closing.Load()
}

// forget removes fc from the connections Shutdown waits for, once.
func (f *Front) forget(fc *frontConn) {
	f.mu.Lock()
	_, ok := f.conns[fc]
	delete(f.conns, fc)
	f.mu.Unlock()
	if ok {
		f.finished.Done()
	}
}

// frontConn is one client connection while the front serves it.
type frontConn struct {
	f  *Front
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer

	idle atomic.Bool // waiting for a request (see Front.closing)

	remoteIP string // for X-Forwarded-For

	// The last Host value seen and its canonical form: a connection
	// usually asks for one host.
	rawHost   []byte
	canonical string

	watch clientWatch
}

func newFrontConn(f *Front, c net.Conn) *frontConn {
	fc := &frontConn{f: f, c: c,
		br: bufio.NewReaderSize(c, frontBufferSize),
		bw: bufio.NewWriterSize(c, 4<<10),
	}
	if ip, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		fc.remoteIP = ip
	}
	fc.watch.c = c
	return fc
}

// serve reads requests from fc until the connection ends or is handed
// over.
func (fc *frontConn) serve() {
	f := fc.f
	defer func() {
		// As net/http does: a panic ends this connection, not the server.
		if err := recover(); err != nil {
			if l := f.Router.ErrorLog; l != nil {
				l.Printf("router: panic serving %v: %v\n%s", fc.c.RemoteAddr(), err, debug.Stack())
			}
			fc.c.Close()
			f.forget(fc)
		}
	}()
	srv := f.Fallback
	idleTimeout := srv.IdleTimeout
	if idleTimeout == 0 {
		idleTimeout = srv.ReadTimeout
	}
	headerTimeout := srv.ReadHeaderTimeout
	if headerTimeout == 0 {
		headerTimeout = srv.ReadTimeout
	}
	for {
		if fc.br.Buffered() == 0 {
			if !fc.setIdle() {
				break
			}
			fc.c.SetReadDeadline(deadline(idleTimeout))
			_, err := fc.br.Peek(1)
			// A request that arrived is served, even during a shutdown
			// (with Connection: close), unless Shutdown closed the
			// connection first.
			fc.idle.Store(false)
			if err != nil {
				break
			}
		}
		fc.c.SetReadDeadline(deadline(headerTimeout))
		head, err := peekHead(fc.br)
		if err == errNotPlain {
			fc.handOver()
			return
		}
		if err != nil {
			// The client went away, or sent half a head and stopped:
			// net/http would close without an answer too.
			break
		}
		var req plainRequest
		if !req.parse(head) || bytes.HasPrefix(req.target, []byte(acmeChallengePrefix)) {
			fc.handOver()
			return
		}
		e := fc.route(req.host)
		if e == nil || e.route.State != Serving || e.route.Backend == nil {
			// Unknown host, a page to show, a malformed Host: net/http's
			// path answers those.
			fc.handOver()
			return
		}
		if !fc.proxy(&req, head, e, req.close || f.closing.Load()) {
			break
		}
	}
	fc.c.Close()
	f.forget(fc)
}

func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// route looks the raw Host value up in the table.
func (fc *frontConn) route(raw []byte) *entry {
	if !bytes.Equal(raw, fc.rawHost) || fc.rawHost == nil {
		host, ok := CanonicalHost(string(raw))
		if !ok {
			return nil
		}
		fc.rawHost = append(fc.rawHost[:0], raw...)
		fc.canonical = host
	}
	return fc.f.Router.Table.get(fc.canonical)
}

// handOver gives the connection, with what has been read from it and not
// yet served, to the Fallback server.
func (fc *frontConn) handOver() {
	fc.c.SetReadDeadline(time.Time{})
	var c net.Conn = fc.c
	if n := fc.br.Buffered(); n > 0 {
		buf, _ := fc.br.Peek(n)
		c = &replayConn{Conn: fc.c, buf: bytes.Clone(buf)}
	}
	fc.f.forget(fc)
	if !fc.f.handoff.give(c) {
		c.Close()
	}
}

// handoffListener is the net.Listener the Fallback server accepts the
// handed-over connections from.
type handoffListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	addr  net.Addr
}

func (l *handoffListener) setAddr(a net.Addr) {
	l.mu.Lock()
	l.addr = a
	l.mu.Unlock()
}

// give passes c to the Fallback server; false if it is closed.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.addr == nil {
		return &net.TCPAddr{}
	}
	return l.addr
}

// replayConn is a connection whose first reads return buf, bytes the front
// read before handing it over.
type replayConn struct {
	net.Conn
	buf []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

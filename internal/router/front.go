package router

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
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

// frontBufferSize is the size of the buffer a request head must fit in to
// be read by the front; larger heads are handed to net/http, which accepts
// up to its MaxHeaderBytes.
const frontBufferSize = 8 << 10

// clientWatchDelay is how long a request waits on its app before the front
// starts watching the client's connection for a close, so that a client that
// gives up on a slow answer cancels the request at the app, as net/http's
// background read does. Quick answers never pay for the watch.
const clientWatchDelay = 50 * time.Millisecond

// acmeChallengePrefix is the path of ACME http-01 challenges (RFC 8555,
// 8.3). Requests for it always go to the Fallback server, whose Handler
// answers them when certificates are managed (certs.ACME.HTTPHandler).
const acmeChallengePrefix = "/.well-known/acme-challenge/"

var errNotPlain = errors.New("not a plain request")

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

// peekHead returns the request or response head at the start of br, through
// its blank line, without consuming it. It returns errNotPlain if the head
// does not fit in br's buffer or ends a line with a bare LF.
func peekHead(br *bufio.Reader) ([]byte, error) {
	for {
		buf, _ := br.Peek(br.Buffered())
		end, ok := headEnd(buf)
		if !ok {
			return nil, errNotPlain
		}
		if end > 0 {
			return buf[:end], nil
		}
		if len(buf) >= br.Size() {
			return nil, errNotPlain
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// headEnd returns the length of the head at the start of buf (through the
// CRLF of its empty line), or 0 if buf does not hold a whole head yet. ok is
// false if a line ends with a bare LF.
func headEnd(buf []byte) (end int, ok bool) {
	start := 0
	for {
		i := bytes.IndexByte(buf[start:], '\n')
		if i < 0 {
			return 0, true
		}
		i += start
		if i == 0 || buf[i-1] != '\r' {
			return 0, false
		}
		if i-1 == start {
			if start == 0 {
				return 0, false // an empty first line
			}
			return i + 1, true
		}
		start = i + 1
	}
}

// headerLines iterates over the header lines of head (after its first line),
// without their CRLF.
func headerLines(head []byte, yield func(line []byte) bool) {
	i := bytes.IndexByte(head, '\n')
	rest := head[i+1:]
	for {
		j := bytes.IndexByte(rest, '\n')
		line := rest[:j-1]
		if len(line) == 0 {
			return
		}
		if !yield(line) {
			return
		}
		rest = rest[j+1:]
	}
}

// splitHeader splits "Name: value" into its name and its value without
// surrounding blanks. ok is false if the name is not a token or the value
// holds a control character other than HTAB.
func splitHeader(line []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, false
	}
	name = line[:colon]
	for _, c := range name {
		if !isTokenChar(c) {
			return nil, nil, false
		}
	}
	value = bytes.Trim(line[colon+1:], " \t")
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, nil, false
		}
	}
	return name, value, true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// connectionClose parses a Connection value: close reports a "close" token;
// ok is false if it names anything but close and keep-alive (the headers it
// names would have to be dropped: net/http's path does that).
func connectionClose(v []byte) (close, ok bool) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = bytes.Trim(tok, " \t")
		switch {
		case len(tok) == 0, bytes.EqualFold(tok, []byte("keep-alive")):
		case bytes.EqualFold(tok, []byte("close")):
			close = true
		default:
			return false, false
		}
	}
	return close, true
}

// parseLength parses a Content-Length value.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// plainRequest is a request head the front serves itself.
type plainRequest struct {
	head   bool // HEAD, not GET
	target []byte
	host   []byte // the Host header as sent
	accept []byte // the first Accept header, for error pages
	close  bool   // the client asked to close the connection
}

// parse parses head and reports whether the front can serve it: a GET or
// HEAD of an origin-form target over HTTP/1.1, with one Host, no body, and
// none of Transfer-Encoding, Upgrade, Expect, TE, Trailer or a Connection
// naming other headers.
func (r *plainRequest) parse(head []byte) bool {
	eol := bytes.IndexByte(head, '\r')
	line := head[:eol]
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		line, r.head = line[5:], true
	default:
		return false
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || string(line[sp+1:]) != "HTTP/1.1" {
		return false
	}
	r.target = line[:sp]
	if r.target[0] != '/' {
		return false
	}
	for _, c := range r.target {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	ok, hosts := true, 0
	headerLines(head, func(line []byte) bool {
		name, value, valid := splitHeader(line)
		if !valid {
			ok = false
			return false
		}
		switch classifyHeader(name) {
		case kindHost:
			hosts++
			r.host = value
		case kindAccept:
			if r.accept == nil {
				r.accept = value
			}
		case kindContentLength:
			if n, valid := parseLength(value); !valid || n != 0 {
				ok = false
			}
		case kindConnection:
			c, valid := connectionClose(value)
			ok = ok && valid
			r.close = r.close || c
		case kindTransferEncoding, kindTE, kindTrailer, kindUpgrade, kindExpect:
			ok = false
		}
		return ok
	})
	return ok && hosts == 1 && len(r.host) > 0
}

// writeTo writes the request to an app: the request line, Host, every
// end-to-end header as the client sent it, and X-Forwarded-For, -Host and
// -Proto, as writeRequest does for net/http's requests.
func (r *plainRequest) writeTo(bw *bufio.Writer, head []byte, remoteIP string) error {
	if r.head {
		bw.WriteString("HEAD ")
	} else {
		bw.WriteString("GET ")
	}
	bw.Write(r.target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.Write(r.host)
	bw.WriteString("\r\n")
	headerLines(head, func(line []byte) bool {
		name, _, _ := splitHeader(line)
		if classifyHeader(name).inRequest() {
			bw.Write(line)
			bw.WriteString("\r\n")
		}
		return true
	})
	if remoteIP != "" {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(remoteIP)
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-Host: ")
	bw.Write(r.host)
	bw.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	return bw.Flush()
}

// proxy forwards req to e and copies the answer to the client. It reports
// whether the client connection can carry another request: not if
// closeAfter, or if the front began to shut down in the meantime.
func (fc *frontConn) proxy(req *plainRequest, head []byte, e *entry, closeAfter bool) bool {
	rt := fc.f.Router
	if f := rt.OnRequest; f != nil {
		f(e.route.Deployment)
	}
	if f := rt.OnRequestDone; f != nil {
		defer f(e.route.Deployment)
	}
	pool := rt.pool(e)
	var bc *backendConn
	for {
		reused := true
		if bc = pool.get(); bc == nil {
			reused = false
			c, err := rt.dialEntry(context.Background(), e)
			if err != nil {
				fc.br.Discard(len(head))
				return fc.errorPage(req, e, err, closeAfter)
			}
			bc = newBackendConn(c)
		}
		err := req.writeTo(bc.bw, head, fc.remoteIP)
		if err == nil {
			fc.watch.start(bc.conn)
			_, err = bc.br.Peek(1)
		}
		if err == nil {
			break
		}
		gone := fc.watch.stop()
		bc.conn.Close()
		if !reused || gone {
			fc.br.Discard(len(head))
			if gone {
				return false
			}
			return fc.errorPage(req, e, err, closeAfter)
		}
	}
	fc.br.Discard(len(head))

	// A shutdown that began while the app worked closes the connection
	// after this answer, and says so in it.
	closeAfter = closeAfter || fc.f.closing.Load()
	res, err := fc.copyResponse(bc, req.head, closeAfter)
	gone := fc.watch.stop()
	if res.reuse && !gone && err == nil {
		pool.put(bc)
	} else {
		bc.conn.Close()
	}
	if err != nil && !res.wroteHead && !gone && res.clientOK {
		return fc.errorPage(req, e, err, closeAfter)
	}
	return err == nil && !gone && res.clientOK && !closeAfter
}

// responseResult is how copying a response went.
type responseResult struct {
	wroteHead bool // the client has seen the status line
	clientOK  bool // the client connection is fine (whatever the app did)
	reuse     bool // the app's connection can serve another request
}

// copyResponse copies the app's answer to the client: by its lines when it
// is a final response with a Content-Length (or without a body), else
// through copyResponseSlow. An error means the app failed (if
// res.clientOK) or the client did.
func (fc *frontConn) copyResponse(bc *backendConn, headReq, closeAfter bool) (responseResult, error) {
	rh, err := peekHead(bc.br)
	if err == errNotPlain {
		return fc.copyResponseSlow(bc, headReq, closeAfter)
	}
	if err != nil {
		return responseResult{clientOK: true}, err
	}
	var (
		length    int64 = -1
		hasDate   bool
		appCloses bool
		plain     = true
	)
	status := rh[:bytes.IndexByte(rh, '\r')]
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 ")) || len(status) < 12 ||
		!isDigits(status[9:12]) || len(status) > 12 && status[12] != ' ' || status[9] < '2' {
		// HTTP/1.0, 1xx, or garbage: the general path decides.
		return fc.copyResponseSlow(bc, headReq, closeAfter)
	}
	for _, c := range status[9:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return fc.copyResponseSlow(bc, headReq, closeAfter)
		}
	}
	headerLines(rh, func(line []byte) bool {
		name, value, ok := splitHeader(line)
		if !ok || bytes.IndexByte(line, '\r') >= 0 {
			plain = false
			return false
		}
		switch classifyHeader(name) {
		case kindContentLength:
			n, ok := parseLength(value)
			if !ok || length >= 0 {
				plain = false
			}
			length = n
		case kindDate:
			hasDate = true
		case kindConnection:
			c, ok := connectionClose(value)
			plain = plain && ok
			appCloses = appCloses || c
		case kindTransferEncoding, kindTrailer, kindUpgrade, kindTE:
			plain = false
		}
		return plain
	})
	code := status[9:12]
	bodiless := headReq || string(code) == "204" || string(code) == "304"
	if !plain || length < 0 && !bodiless {
		return fc.copyResponseSlow(bc, headReq, closeAfter)
	}
	if bodiless {
		length = 0
	}

	bw := fc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(status[9:])
	bw.WriteString("\r\n")
	headerLines(rh, func(line []byte) bool {
		name, _, _ := splitHeader(line)
		if !classifyHeader(name).hopByHop() {
			bw.Write(line)
			bw.WriteString("\r\n")
		}
		return true
	})
	if !hasDate {
		writeDate(bw)
	}
	if closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	bc.br.Discard(len(rh))

	res := responseResult{wroteHead: true, clientOK: true}
	for length > 0 {
		if bc.br.Buffered() == 0 {
			// About to wait for the app: send what is here first.
			if err := bw.Flush(); err != nil {
				return responseResult{wroteHead: true}, err
			}
		}
		if _, err := bc.br.Peek(1); err != nil {
			return res, err
		}
		n := min(int64(bc.br.Buffered()), length)
		p, _ := bc.br.Peek(int(n))
		bw.Write(p)
		bc.br.Discard(int(n))
		length -= n
	}
	if err := bw.Flush(); err != nil {
		return responseResult{wroteHead: true}, err
	}
	res.reuse = !appCloses && bc.br.Buffered() == 0
	return res, nil
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// copyResponseSlow copies any other answer of the app with http.ReadResponse:
// informational responses, HTTP/1.0, bodies chunked or delimited by the
// app closing, trailers. The client gets the body chunked when its length is
// not known, flushed as it arrives.
func (fc *frontConn) copyResponseSlow(bc *backendConn, headReq, closeAfter bool) (responseResult, error) {
	method := http.MethodGet
	if headReq {
		method = http.MethodHead
	}
	stub := &http.Request{Method: method}
	bw := fc.bw
	// Informational heads go out as they come; they do not count as the
	// head: a final one, or an error page, can still follow.
	var clientErr error
	res, err := bc.readFinal(stub, func(info *http.Response) error {
		removeHopByHop(info.Header)
		writeStatusLine(bw, info.StatusCode)
		info.Header.Write(bw)
		bw.WriteString("\r\n")
		clientErr = bw.Flush()
		return clientErr
	})
	if clientErr != nil {
		return responseResult{wroteHead: true}, clientErr
	}
	if err != nil {
		return responseResult{clientOK: true}, err
	}
	defer res.Body.Close()

	removeHopByHop(res.Header)
	h := res.Header
	hasBody := res.Body != http.NoBody
	chunked := hasBody && res.ContentLength < 0
	if hasBody {
		h.Del("Content-Length")
	}
	var announced []string
	for k := range res.Trailer {
		announced = append(announced, k)
	}
	writeStatusLine(bw, res.StatusCode)
	h.Write(bw)
	if _, ok := h["Date"]; !ok {
		writeDate(bw)
	}
	switch {
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		for _, k := range announced {
			bw.WriteString("Trailer: ")
			bw.WriteString(k)
			bw.WriteString("\r\n")
		}
	case hasBody:
		writeHeaderLine(bw, "Content-Length", strconv.FormatInt(res.ContentLength, 10))
	}
	if closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	out := responseResult{wroteHead: true, clientOK: true}
	if !hasBody {
		if err := bw.Flush(); err != nil {
			return responseResult{wroteHead: true}, err
		}
		out.reuse = !res.Close && bc.br.Buffered() == 0
		return out, nil
	}

	bp := copyBufferPool.Get().(*[copyBufferSize]byte)
	defer copyBufferPool.Put(bp)
	buf := bp[:]
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if chunked {
				bw.WriteString(strconv.FormatInt(int64(n), 16))
				bw.WriteString("\r\n")
				bw.Write(buf[:n])
				bw.WriteString("\r\n")
			} else {
				bw.Write(buf[:n])
			}
			// Streams are flushed as they come; a body of known length
			// when the app has nothing more buffered.
			if chunked || bc.br.Buffered() == 0 {
				if err := bw.Flush(); err != nil {
					return responseResult{wroteHead: true}, err
				}
			}
		}
		if rerr != nil {
			if rerr != io.EOF {
				return out, rerr
			}
			break
		}
	}
	if chunked {
		bw.WriteString("0\r\n")
		for k, vv := range res.Trailer {
			for _, v := range vv {
				writeHeaderLine(bw, k, v)
			}
		}
		bw.WriteString("\r\n")
	}
	if err := bw.Flush(); err != nil {
		return responseResult{wroteHead: true}, err
	}
	out.reuse = !res.Close && bc.br.Buffered() == 0
	return out, nil
}

func writeStatusLine(bw *bufio.Writer, code int) {
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
}

// errorPage answers the request with the page for err (see fastError). It
// reports whether the connection can carry another request.
func (fc *frontConn) errorPage(req *plainRequest, e *entry, err error, closeAfter bool) bool {
	r := &http.Request{Method: http.MethodGet, Header: http.Header{}}
	if req.head {
		r.Method = http.MethodHead
	}
	if req.accept != nil {
		r.Header.Set("Accept", string(req.accept))
	}
	w := &pageWriter{bw: fc.bw, h: http.Header{}, head: req.head, close: closeAfter}
	fc.f.Router.fastError(w, r, e, err)
	return fc.bw.Flush() == nil && !closeAfter
}

// pageWriter is the http.ResponseWriter the front renders its pages to.
type pageWriter struct {
	bw    *bufio.Writer
	h     http.Header
	head  bool // a HEAD request: no body
	close bool
	wrote bool
}

func (w *pageWriter) Header() http.Header { return w.h }

func (w *pageWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	writeStatusLine(w.bw, code)
	w.h.Write(w.bw)
	writeDate(w.bw)
	if w.close {
		w.bw.WriteString("Connection: close\r\n")
	}
	w.bw.WriteString("\r\n")
}

func (w *pageWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.head {
		return len(p), nil
	}
	return w.bw.Write(p)
}

// clientWatch notices a client closing its connection while its request
// waits on the app, and then closes the connection to the app (which ends
// the wait). It starts watching only clientWatchDelay after start, and
// watches without reading anything (a pipelined request stays where it
// is), so quick requests cost one timer reset.
type clientWatch struct {
	c net.Conn

	mu      sync.Mutex
	timer   *time.Timer
	app     net.Conn // closed when the client goes
	state   uint8    // watchIdle, watchArmed, watchRunning
	gone    bool
	stopped chan struct{} // closed when a running watch returns
}

const (
	watchIdle = iota
	watchArmed
	watchRunning
)

// start arms the watch for a request forwarded on app.
func (w *clientWatch) start(app net.Conn) {
	if _, ok := w.c.(syscall.Conn); !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.app, w.gone, w.state = app, false, watchArmed
	if w.timer == nil {
		w.timer = time.AfterFunc(clientWatchDelay, w.run)
	} else {
		w.timer.Reset(clientWatchDelay)
	}
}

// stop ends the watch and reports whether the client went away.
func (w *clientWatch) stop() bool {
	w.mu.Lock()
	switch w.state {
	case watchIdle:
		w.mu.Unlock()
		return false
	case watchArmed:
		w.timer.Stop()
		w.state = watchIdle
		gone := w.gone
		w.mu.Unlock()
		return gone
	}
	// Running: interrupt the wait for readability and wait for it to end.
	w.state = watchIdle
	stopped := w.stopped
	w.mu.Unlock()
	w.c.SetReadDeadline(aLongTimeAgo)
	<-stopped
	w.c.SetReadDeadline(time.Time{})
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone
}

var aLongTimeAgo = time.Unix(1, 0)

func (w *clientWatch) run() {
	w.mu.Lock()
	if w.state != watchArmed {
		w.mu.Unlock()
		return
	}
	w.state = watchRunning
	w.stopped = make(chan struct{})
	stopped, app := w.stopped, w.app
	// The read deadline of the head may still be set; the watch lasts as
	// long as the request does. Cleared under the lock, so that stop's
	// deadline, which ends the watch, always comes after.
	w.c.SetReadDeadline(time.Time{})
	w.mu.Unlock()
	defer close(stopped)

	rc, err := w.c.(syscall.Conn).SyscallConn()
	if err != nil {
		return
	}
	gone := false
	rerr := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			return false // nothing yet: wait for readability
		}
		// End of stream or an error: the client is gone. Data: a
		// pipelined request, and the client is still there.
		gone = n == 0 || err != nil
		return true
	})
	if rerr != nil {
		return // stopped
	}
	if gone {
		w.mu.Lock()
		w.gone = true
		w.mu.Unlock()
		app.Close()
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

// writeDate writes a Date header for now, formatted at most once a second.
func writeDate(bw *bufio.Writer) {
	now := time.Now()
	sec := now.Unix()
	d := cachedDate.Load()
	if d == nil || d.sec != sec {
		d = &dateLine{sec: sec, line: "Date: " + now.UTC().Format(http.TimeFormat) + "\r\n"}
		cachedDate.Store(d)
	}
	bw.WriteString(d.line)
}

type dateLine struct {
	sec  int64
	line string
}

var cachedDate atomic.Pointer[dateLine]

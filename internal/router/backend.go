package router

// Connections to apps, for the fast path and the front: dialling a
// deployment's Backend within DialTimeout, the per-deployment pools of idle
// connections, and reading an app's answer up to its final response.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// dialError is a failure to get a connection from a Backend.
type dialError struct {
	deployment string
	timedOut   bool // the Backend did not answer within DialTimeout
	err        error
}

func (e *dialError) Error() string {
	if e.timedOut {
		return fmt.Sprintf("dialing deployment %s: timed out: %v", e.deployment, e.err)
	}
	return fmt.Sprintf("dialing deployment %s: %v", e.deployment, e.err)
}

func (e *dialError) Unwrap() error { return e.err }

// dialEntry dials the Backend of e, bounded by DialTimeout (or the
// route's own, if longer) even when the Backend ignores its context.
func (rt *Router) dialEntry(ctx context.Context, e *entry) (net.Conn, error) {
	wait := max(rt.dialWait, e.route.DialTimeout)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()

	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	b := e.route.Backend
	go func() {
		c, err := b.DialContext(ctx)
		done <- result{c, err}
	}()
	select {
	case res := <-done:
		switch {
		case res.err != nil:
			timedOut := ctx.Err() != nil || errors.Is(res.err, context.DeadlineExceeded)
			return nil, &dialError{deployment: e.route.Deployment, timedOut: timedOut, err: res.err}
		case res.c == nil:
			return nil, &dialError{deployment: e.route.Deployment, err: errors.New("backend returned no connection")}
		}
		return res.c, nil
	case <-ctx.Done():
		// The Backend ignored ctx. Stop waiting; close whatever it returns.
		go func() {
			if res := <-done; res.c != nil {
				res.c.Close()
			}
		}()
		return nil, &dialError{deployment: e.route.Deployment, timedOut: true, err: ctx.Err()}
	}
}

// maxResponseHeaderBytes bounds a response head from an app, as
// http.Transport's default does.
const maxResponseHeaderBytes = 10 << 20

// max1xxResponses is how many informational responses the router forwards
// before a final one, as http.Transport allows.
const max1xxResponses = 5

var (
	errHeadTooLong  = errors.New("response head too long")
	errTooMany1xx   = errors.New("too many 1xx informational responses")
	errUnexpected1x = errors.New("101 Switching Protocols without an upgrade request")
)

// backendConn is a pooled connection to one deployment.
type backendConn struct {
	conn   net.Conn
	lr     limitedConn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time // when it was last put into its pool
	// epoch is its pool's epoch when it was dialed: a connection dialed
	// before the pool's idle connections were closed (its instance
	// stopped) is not pooled when its request ends.
	epoch uint64
}

// limitedConn reads from conn, at most limit bytes while limit >= 0.
type limitedConn struct {
	conn  net.Conn
	limit int64
}

func (l *limitedConn) Read(p []byte) (int, error) {
	if l.limit == 0 {
		return 0, errHeadTooLong
	}
	if l.limit > 0 && int64(len(p)) > l.limit {
		p = p[:l.limit]
	}
	n, err := l.conn.Read(p)
	if l.limit > 0 {
		l.limit -= int64(n)
	}
	return n, err
}

// newBackendConn wraps c, dialed when its pool was at epoch (what get
// returned with no connection).
func newBackendConn(c net.Conn, epoch uint64) *backendConn {
	bc := &backendConn{conn: c, lr: limitedConn{conn: c, limit: -1}, epoch: epoch}
	bc.br = bufio.NewReader(&bc.lr)
	bc.bw = bufio.NewWriter(c)
	return bc
}

// connPool holds the idle connections to one deployment, most recently
// used last. Connections idle longer than the timeout are closed by a
// timer that runs only while the pool is not empty.
type connPool struct {
	mu      sync.Mutex
	epoch   uint64 // advanced by closeIdle
	idle    []*backendConn
	max     int
	timeout time.Duration
	timer   *time.Timer // armed while idle is not empty
}

// get returns the most recently used idle connection, or nil and the
// pool's epoch, for the connection the caller dials instead.
func (p *connPool) get() (*backendConn, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		bc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if time.Since(bc.idleAt) < p.timeout {
			return bc, p.epoch
		}
		bc.conn.Close()
	}
	return nil, p.epoch
}

// put returns bc to the pool, or closes it if the pool is full or its
// idle connections were closed since bc was dialed.
func (p *connPool) put(bc *backendConn) {
	bc.idleAt = time.Now()
	p.mu.Lock()
	if len(p.idle) >= p.max || bc.epoch != p.epoch {
		p.mu.Unlock()
		bc.conn.Close()
		return
	}
	p.idle = append(p.idle, bc)
	if len(p.idle) == 1 {
		if p.timer == nil {
			p.timer = time.AfterFunc(p.timeout, p.expire)
		} else {
			p.timer.Reset(p.timeout)
		}
	}
	p.mu.Unlock()
}

// expire closes the connections that have been idle for the timeout and
// rearms the timer for the oldest of the others.
func (p *connPool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleAt) >= p.timeout {
		p.idle[n].conn.Close()
		n++
	}
	if n > 0 {
		rest := copy(p.idle, p.idle[n:])
		clear(p.idle[rest:])
		p.idle = p.idle[:rest]
	}
	if len(p.idle) > 0 {
		p.timer.Reset(p.timeout - now.Sub(p.idle[0].idleAt))
	}
}

// closeIdle closes every idle connection, and those in use when their
// requests end.
func (p *connPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.epoch++
	for _, bc := range p.idle {
		bc.conn.Close()
	}
	clear(p.idle)
	p.idle = p.idle[:0]
}

// pool returns the connection pool of the deployment e belongs to.
func (rt *Router) pool(e *entry) *connPool {
	if p, ok := rt.pools.Load(e.addr); ok {
		return p.(*connPool)
	}
	p, _ := rt.pools.LoadOrStore(e.addr, &connPool{max: rt.maxIdle, timeout: rt.idleTimeout})
	return p.(*connPool)
}

// readFinal reads the app's answer to req: it hands each informational
// (1xx) response to informational, refuses a 101 and more than
// max1xxResponses of them, and returns the final response with its body
// still to read. Response heads are bounded by maxResponseHeaderBytes.
func (bc *backendConn) readFinal(req *http.Request, informational func(*http.Response) error) (*http.Response, error) {
	bc.lr.limit = maxResponseHeaderBytes
	defer func() { bc.lr.limit = -1 }()
	for n1xx := 0; ; n1xx++ {
		res, err := http.ReadResponse(bc.br, req)
		if err != nil {
			return nil, err
		}
		code := res.StatusCode
		if code >= 200 || code < 100 {
			return res, nil
		}
		if code == http.StatusSwitchingProtocols {
			return nil, errUnexpected1x
		}
		if n1xx == max1xxResponses {
			return nil, errTooMany1xx
		}
		if err := informational(res); err != nil {
			return nil, err
		}
	}
}

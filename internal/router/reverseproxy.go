package router

// The general path: every request the fast path does not take (bodies,
// upgrades, Expect, other methods) goes through httputil.ReverseProxy and
// the Router's one shared http.Transport, which pools connections per
// deployment (see entry.addr).

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
)

// rewrite points the outbound request at the pool of the deployment the
// request was routed to. The Host header is kept as the client sent it.
func rewrite(pr *httputil.ProxyRequest) {
	e := pr.In.Context().Value(entryKey{}).(*entry)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = e.addr
	pr.SetXForwarded()
}

var errNoRoute = errors.New("no route for this connection")

// dial is the shared Transport's DialContext. It dials the Backend of the
// entry the request was routed to, bounded by DialTimeout even when the
// Backend ignores its context.
func (rt *Router) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	e, _ := ctx.Value(entryKey{}).(*entry)
	if e == nil || e.addr != addr || e.route.Backend == nil {
		// Cannot happen for requests that came through ServeHTTP: the
		// Transport dials with the context of a request whose URL it set.
		return nil, &dialError{deployment: addr, err: errNoRoute}
	}
	return rt.dialEntry(ctx, e)
}

// proxyError is the ReverseProxy's ErrorHandler. It writes a page that
// names the deployment and leaks nothing about the error.
func (rt *Router) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var route Route
	if e, ok := r.Context().Value(entryKey{}).(*entry); ok {
		route = e.route
	}
	appErrorPage(route, err).write(w, r)
}

// copyBufferSize is the size of the buffers the proxy copies bodies with
// (what ReverseProxy would otherwise allocate for every request).
const copyBufferSize = 32 << 10

var copyBufferPool = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

// copyBuffers is an httputil.BufferPool over copyBufferPool. It pools array
// pointers, so neither Get nor Put allocates.
type copyBuffers struct{}

func (copyBuffers) Get() []byte { return copyBufferPool.Get().(*[copyBufferSize]byte)[:] }

func (copyBuffers) Put(b []byte) {
	if cap(b) >= copyBufferSize {
		copyBufferPool.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
	}
}

var _ httputil.BufferPool = copyBuffers{}

// Package router is Slipway's host-based reverse proxy: the HTTP handler in
// front of every app.
//
// The control plane computes which hosts lead to which deployment (preview
// URLs, project and environment hostnames, custom domains) and writes them
// into a Table; the router knows nothing about projects or the store. For
// each request, the Router looks the Host up in the Table and either proxies
// the request to the deployment's Backend or answers with a small page:
// 400 for a malformed Host, 404 for an unknown host, 410 for a stopped
// deployment, 503 for a failed or still-starting one, 502 or 503 when the
// app cannot be reached, 405 for CONNECT.
//
// Switching a host to another deployment is one Table write: requests that
// start afterwards go to the new deployment, requests already in flight
// finish on the old one. Connections are pooled per deployment, so a pool
// never mixes deployments. GETs and HEADs without a body take a fast path
// (fast.go) with the router's own per-deployment pools (backend.go); all
// other requests go through httputil.ReverseProxy and one shared Transport
// (reverseproxy.go). Every path passes headers on by one classification
// (headers.go) and answers with the same pages (pages.go).
//
// The Router is an http.Handler. A Front (front*.go) serves it on a plain
// HTTP listener faster than net/http's server can: it answers the plain
// requests itself and hands every other connection to an http.Server.
//
// Certificates for a TLS listener are package certs's
// (internal/router/certs); this package imports only the standard library.
//
// Use:
//
//	var t router.Table
//	t.Set("d0123456789a.slipway.localhost", router.Route{Deployment: "d0123456789a", Backend: b})
//	rt := &router.Router{Table: &t}
//	front := &router.Front{Router: rt, Fallback: &http.Server{Handler: rt}}
//	go front.Serve(ln)
package router

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// maxFlushDelay is the longest the proxy holds response bytes of a
// response with a known length before flushing them to the client.
const maxFlushDelay = 100 * time.Millisecond

// Defaults for the zero Router.
const (
	DefaultDialTimeout               = 30 * time.Second
	DefaultMaxIdleConnsPerDeployment = 1024
	DefaultIdleConnTimeout           = 90 * time.Second
)

// Router is an http.Handler that routes requests by Host to the deployments
// in its Table. The zero value is usable (it answers 404 to everything until
// given a Table). Fields must not be changed after the first request.
type Router struct {
	// Table holds the routes. If nil, every host is unknown.
	Table *Table

	// DialTimeout bounds how long a request waits for its Backend to
	// return a connection, including any wake from zero. A request whose
	// backend could not be reached in that time gets 503. If zero,
	// DefaultDialTimeout (30 s). A Route's own DialTimeout, if longer,
	// replaces it for that route.
	DialTimeout time.Duration

	// MaxIdleConnsPerDeployment is how many idle keep-alive connections to
	// one deployment are kept for reuse. If zero,
	// DefaultMaxIdleConnsPerDeployment (1024).
	MaxIdleConnsPerDeployment int

	// IdleConnTimeout is how long an idle connection to a deployment is
	// kept. If zero, DefaultIdleConnTimeout (90 s).
	IdleConnTimeout time.Duration

	// OnRequest, if set, is called once for each request that is proxied
	// (not for the router's own pages), with the deployment's id, before the
	// request is forwarded. It runs on the request path, concurrently: it
	// must be fast and safe for concurrent use.
	OnRequest func(deployment string)

	// OnRequestDone, if set, is called once for each request OnRequest was
	// called for, with the same id, when the router is done with it: the
	// response is written, or an upgraded connection (a WebSocket) is
	// closed. Together they tell how many requests a deployment has in
	// flight, so that a long-lived one keeps it from being idle.
	OnRequestDone func(deployment string)

	// Metrics, if set, is told of every request that is proxied (those
	// OnRequest sees): its status, duration and body bytes, per
	// deployment. If nil, the router measures nothing.
	Metrics Metrics

	// ErrorLog receives the few errors the proxy itself logs (such as a
	// backend failing in the middle of a response body). If nil, they are
	// discarded: the router does no per-request logging.
	ErrorLog *log.Logger

	once        sync.Once
	proxy       *httputil.ReverseProxy
	transport   *http.Transport
	dialWait    time.Duration
	maxIdle     int
	idleTimeout time.Duration
	pools       sync.Map // entry.addr → *connPool, for the fast path
}

// entryKey is the request-context key under which ServeHTTP stores the
// *entry a request was routed to. Rewrite, the Transport's dial and the
// ErrorHandler all read it, so a request stays with the deployment it was
// routed to even if the table changes while it is in flight.
type entryKey struct{}

func (rt *Router) init() {
	rt.dialWait = rt.DialTimeout
	if rt.dialWait <= 0 {
		rt.dialWait = DefaultDialTimeout
	}
	idle := rt.MaxIdleConnsPerDeployment
	if idle <= 0 {
		idle = DefaultMaxIdleConnsPerDeployment
	}
	idleTimeout := rt.IdleConnTimeout
	if idleTimeout <= 0 {
		idleTimeout = DefaultIdleConnTimeout
	}
	rt.maxIdle, rt.idleTimeout = idle, idleTimeout
	logger := rt.ErrorLog
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	rt.transport = &http.Transport{
		// Proxy stays nil: never send app traffic to an environment proxy.
		DialContext:         rt.dial,
		MaxIdleConns:        0, // no global limit; the per-deployment one applies
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     idleTimeout,
		// A proxy must pass bodies through as they are, not ask for gzip
		// and decompress on the app's behalf.
		DisableCompression: true,
	}
	rt.proxy = &httputil.ReverseProxy{
		Rewrite:   rewrite,
		Transport: rt.transport,
		// Streams (unknown length, text/event-stream) are flushed on every
		// write: ReverseProxy does that by itself. Other responses are
		// flushed at least every maxFlushDelay, so a slow body with a
		// Content-Length still trickles through. (-1 for everything would
		// cost an extra write syscall per request: ReverseProxy then
		// flushes the headers on their own.)
		FlushInterval: maxFlushDelay,
		BufferPool:    copyBuffers{},
		ErrorLog:      logger,
		ErrorHandler:  rt.proxyError,
	}
}

// ServeHTTP routes r by its Host.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt.once.Do(rt.init)
	host, ok := CanonicalHost(r.Host)
	if !ok {
		badRequestPage().write(w, r)
		return
	}
	e := rt.Table.get(host)
	if e == nil {
		unknownHostPage(host).write(w, r)
		return
	}
	if e.route.State != Serving || e.route.Backend == nil {
		statePage(e.route).write(w, r)
		return
	}
	if r.Method == http.MethodConnect {
		// A tunnel has no meaning for an app behind a host router.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		methodNotAllowedPage().write(w, r)
		return
	}
	if f := rt.OnRequest; f != nil {
		f(e.route.Deployment)
	}
	if f := rt.OnRequestDone; f != nil {
		defer f(e.route.Deployment)
	}
	if rec := rt.recorder(e); rec != nil {
		serveRecorded(rec, w, r, func(w http.ResponseWriter, r *http.Request) { rt.serveEntry(w, r, e) })
		return
	}
	rt.serveEntry(w, r, e)
}

// serveEntry proxies r to e's deployment.
func (rt *Router) serveEntry(w http.ResponseWriter, r *http.Request, e *entry) {
	if fastEligible(r) {
		rt.serveFast(w, r, e)
		return
	}
	rt.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), entryKey{}, e)))
}

// CloseIdleConnections closes the idle connections to all deployments. It
// does not interrupt requests in flight.
func (rt *Router) CloseIdleConnections() {
	rt.once.Do(rt.init)
	rt.transport.CloseIdleConnections()
	rt.pools.Range(func(_, p any) bool {
		p.(*connPool).closeIdle()
		return true
	})
}

// CloseIdleConnectionsTo closes the idle connections to deployment, to
// call when its instance has stopped (scaled to zero, restarted, stopped):
// an instance whose end sends no FIN or RST — a VM that was switched off
// — would otherwise leave pooled connections on which a request waits for
// an answer that never comes. net/http's Transport cannot close one host's
// idle connections, so those of every deployment on the fallback path are
// closed (stops are rare next to requests; a closed idle connection costs
// one dial).
func (rt *Router) CloseIdleConnectionsTo(deployment string) {
	rt.once.Do(rt.init)
	if p, ok := rt.pools.Load(poolKey(deployment) + ":80"); ok {
		p.(*connPool).closeIdle()
	}
	rt.transport.CloseIdleConnections()
}

var (
	_ http.Handler = (*Router)(nil)
	_ Backend      = BackendFunc(nil)
)

package router

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is how the router reaches one deployment's app. The control plane
// implements it, typically with runtime.Driver.Dial into the instance's
// network namespace. DialContext may block (for example while a
// scaled-to-zero instance wakes) but must return once ctx is done; the
// router bounds every dial with Router.DialTimeout and gives up waiting at
// that deadline even if DialContext does not. ctx governs only the dial: a
// connection once returned must outlive it.
//
// The router pools connections per deployment, so every connection a
// Backend returns must reach the same deployment.
type Backend interface {
	DialContext(ctx context.Context) (net.Conn, error)
}

// BackendFunc adapts a function to the Backend interface.
type BackendFunc func(ctx context.Context) (net.Conn, error)

// DialContext calls f(ctx).
func (f BackendFunc) DialContext(ctx context.Context) (net.Conn, error) { return f(ctx) }

// State is what the router does with requests for a host.
type State uint8

const (
	// Serving proxies requests to the route's Backend. It is the zero value.
	Serving State = iota
	// Deploying answers 503 with a page saying the deployment is starting
	// (and asking browsers to retry shortly).
	Deploying
	// Stopped answers 410 Gone with a page saying the deployment is stopped.
	Stopped
	// Failed answers 503 with a page saying the deployment failed.
	Failed
)

func (s State) String() string {
	switch s {
	case Serving:
		return "serving"
	case Deploying:
		return "deploying"
	case Stopped:
		return "stopped"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Route is where requests for one host go.
type Route struct {
	// Deployment is the deployment's id. It names the deployment on error
	// pages and keys the connection pool, so it must be unique per
	// deployment; ids that are DNS labels (as Slipway's are) are used as
	// they are, others are hashed.
	Deployment string
	// Project is the project's name, shown on pages. May be empty.
	Project string
	// Environment is the environment's name, for metrics. May be empty.
	Environment string
	// State says whether requests are proxied (Serving) or answered with a
	// page (Deploying, Stopped, Failed).
	State State
	// Reason is shown to visitors on the Stopped and Failed pages. It must
	// be safe to show to anyone (no internal detail). May be empty.
	Reason string
	// Backend reaches the deployment's app. Required when State is
	// Serving; a Serving route without one answers 503. Giving a
	// deployment a new Backend (say, a restarted instance) needs no more
	// than Set: new connections are dialled through it, while pooled ones
	// stay in use until they close (they do when the old instance goes).
	Backend Backend
	// DialTimeout, if longer than Router.DialTimeout, is how long a
	// request may wait for Backend to give it a connection: a deployment
	// woken from zero whose app may take that long to start (its
	// deployment window) holds its requests that long rather than
	// answering 503 while the app is still starting.
	DialTimeout time.Duration
}

// entry is a Route as stored: immutable once published, shared by pointer
// so the hot path copies nothing.
type entry struct {
	route Route
	// addr is the outbound "host:port" that keys the shared Transport's
	// connection pool for this deployment. Requests for different
	// deployments never share an addr, so pools never mix deployments.
	addr string
	// rec caches the Router's RequestRecorder for route (see recorder).
	rec atomic.Pointer[recorderFor]
}

func newEntry(r Route) *entry {
	return &entry{route: r, addr: poolKey(r.Deployment) + ":80"}
}

// poolKey turns a deployment id into a host name for the outbound URL.
func poolKey(deployment string) string {
	if isLabel(deployment) {
		return deployment + ".deployment.invalid"
	}
	sum := sha256.Sum256([]byte(deployment))
	return "x" + hex.EncodeToString(sum[:12]) + ".deployment.invalid"
}

// isLabel reports whether s is a lowercase DNS label.
func isLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Table maps hosts to routes. It is safe for concurrent use; the zero value
// is an empty table.
//
// Lookups take no lock: the table is an immutable map behind an atomic
// pointer, and every change publishes a new map (copy on write). A change
// is atomic: a lookup sees either all of an Update or none of it, and every
// lookup that starts after Set, Delete or Update returns sees the change.
// Writes are serialised and cost O(hosts); they are meant for deploy
// switches, not for the request path.
//
// Hosts are matched in canonical form (see CanonicalHost): case-insensitive,
// without port or trailing dot. Hosts given to Set or Update that are not
// valid are ignored.
type Table struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[string]*entry]
}

// Lookup returns the route for host (a Host header or hostname in any
// case, with or without port or trailing dot).
func (t *Table) Lookup(host string) (Route, bool) {
	e := t.lookup(host)
	if e == nil {
		return Route{}, false
	}
	return e.route, true
}

// lookup returns the entry for host, or nil. t may be nil.
func (t *Table) lookup(host string) *entry {
	h, ok := CanonicalHost(host)
	if !ok {
		return nil
	}
	return t.get(h)
}

// get returns the entry for a canonical host, or nil. t may be nil.
func (t *Table) get(canonical string) *entry {
	if t == nil {
		return nil
	}
	m := t.m.Load()
	if m == nil {
		return nil
	}
	return (*m)[canonical]
}

// Set routes host to r, replacing any earlier route for host.
func (t *Table) Set(host string, r Route) {
	h, ok := CanonicalHost(host)
	if !ok {
		return
	}
	e := newEntry(r)
	t.mu.Lock()
	defer t.mu.Unlock()
	next := t.clone(1)
	next[h] = e
	t.m.Store(&next)
}

// Delete removes host's route; later requests for host get the
// unknown-host page. Deleting a host that has no route does nothing.
func (t *Table) Delete(host string) {
	h, ok := CanonicalHost(host)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.get(h) == nil {
		return
	}
	next := t.clone(0)
	delete(next, h)
	t.m.Store(&next)
}

// Update changes many routes in one atomic swap. fn receives a copy of the
// table keyed by canonical host and may add, change and delete entries
// freely; when it returns, the result replaces the table as a whole (hosts
// fn added are canonicalised then). Writers are serialised while fn runs,
// so fn must not call other methods of t. If fn panics, the table is left
// unchanged.
func (t *Table) Update(fn func(m map[string]Route)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var cur map[string]*entry
	if p := t.m.Load(); p != nil {
		cur = *p
	}
	m := make(map[string]Route, len(cur))
	for h, e := range cur {
		m[h] = e.route
	}
	fn(m)
	next := make(map[string]*entry, len(m))
	for h, r := range m {
		c, ok := CanonicalHost(h)
		if !ok {
			continue
		}
		next[c] = newEntry(r)
	}
	t.m.Store(&next)
}

// clone copies the current map with room for extra more entries. The caller
// holds t.mu.
func (t *Table) clone(extra int) map[string]*entry {
	var cur map[string]*entry
	if p := t.m.Load(); p != nil {
		cur = *p
	}
	next := make(map[string]*entry, len(cur)+extra)
	for h, e := range cur {
		next[h] = e
	}
	return next
}

package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Metrics receives the router's measurements of proxied requests, per
// deployment. The router itself keeps none: package metrics implements
// this with Prometheus counters.
type Metrics interface {
	// Deployment returns the recorder for route's deployment. The router
	// calls it once per route it routes by (again after the Table
	// changes), not per request, and keeps the result; it must be safe for
	// concurrent use.
	Deployment(route Route) RequestRecorder
}

// RequestRecorder counts the requests of one deployment.
type RequestRecorder interface {
	// Observe records one proxied request once the router is done with it:
	// the final status the client got (the app's, or the router's 502/503
	// page when the app could not be reached; 101 for a protocol switch,
	// recorded when the upgraded connection closes), how long the router
	// took from reading the request to writing the last byte, and the request
	// and response body bytes that passed through. A request that got no
	// answer (the client left first) is not recorded. It is called
	// concurrently, on the request path: it must be fast.
	Observe(status int, took time.Duration, in, out int64)
}

// recorderFor is a Router's recorder for an entry, cached in the entry.
type recorderFor struct {
	rt  *Router
	rec RequestRecorder
}

// recorder returns the recorder of e's deployment, or nil without Metrics.
// It asks Metrics once per entry: entries are immutable and replaced when
// the Table changes.
func (rt *Router) recorder(e *entry) RequestRecorder {
	m := rt.Metrics
	if m == nil {
		return nil
	}
	if c := e.rec.Load(); c != nil && c.rt == rt {
		return c.rec
	}
	rec := m.Deployment(e.route)
	e.rec.Store(&recorderFor{rt: rt, rec: rec})
	return rec
}

// recordingWriter is the http.ResponseWriter the net/http paths write to
// when Metrics is set: it notes the final status and counts body bytes.
// Flush, Hijack and the like reach the real writer through Unwrap (for
// http.ResponseController, which ReverseProxy and the fast path use).
type recordingWriter struct {
	http.ResponseWriter
	status int
	out    int64
}

func (w *recordingWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.out += int64(n)
	return n, err
}

func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands the connection over: ReverseProxy does so only to switch
// protocols (a WebSocket), after the app answered 101, and writes that
// answer itself.
func (w *recordingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// countingBody counts the request body bytes read from it.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64 // read by ServeHTTP after the proxy's copy is done
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// serveRecorded serves r as serve would, and records it with rec.
func serveRecorded(rec RequestRecorder, w http.ResponseWriter, r *http.Request, serve func(http.ResponseWriter, *http.Request)) {
	began := time.Now()
	rw := &recordingWriter{ResponseWriter: w}
	var body *countingBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingBody{ReadCloser: r.Body}
		r.Body = body
	}
	defer func() {
		if rw.status == 0 {
			return
		}
		var in int64
		if body != nil {
			in = body.n.Load()
		}
		rec.Observe(rw.status, time.Since(began), in, rw.out)
	}()
	serve(rw, r)
}

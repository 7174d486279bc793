package router

import (
	"bufio"
	"context"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// The fast path. Most requests an app gets are GETs and HEADs without a
// body. For those, the router writes the request to a pooled connection of
// the deployment itself and reads the answer with http.ReadResponse, instead
// of going through httputil.ReverseProxy and http.Transport: no request
// clone, no header clone, no per-request goroutine hand-offs between the
// Transport's read and write loops. Everything else (bodies, upgrades,
// Expect, CONNECT-like oddities) takes the ReverseProxy path, which stays
// the reference for behaviour: the fast path forwards and answers the same
// headers, pages, trailers and flushes.

// fastEligible reports whether r can take the fast path: a GET or HEAD
// without a body and without an upgrade or expectation.
func fastEligible(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Body != nil && r.Body != http.NoBody || r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
		return false
	}
	h := r.Header
	return len(h["Upgrade"]) == 0 && len(h["Expect"]) == 0 && len(h["Transfer-Encoding"]) == 0
}

// serveFast proxies a request that fastEligible accepted to e.
func (rt *Router) serveFast(w http.ResponseWriter, r *http.Request, e *entry) {
	ctx := r.Context()
	pool := rt.pool(e)
	var (
		bc   *backendConn
		stop func() bool
		res  *http.Response
		err  error
	)
	// A pooled connection the app has closed in the meantime fails before
	// any answer arrives: retry on another one (GET and HEAD are
	// idempotent), and finally on a new one, as http.Transport does.
	for {
		reused := true
		var epoch uint64
		if bc, epoch = pool.get(); bc == nil {
			reused = false
			c, err := rt.dialEntry(ctx, e)
			if err != nil {
				appErrorPage(e.route, err).write(w, r)
				return
			}
			bc = newBackendConn(c, epoch)
		}
		// The connection is this request's now. If the client goes away,
		// close it: that unblocks whatever waits on the app and tells the
		// app, as http.Transport does.
		c := bc.conn
		stop = context.AfterFunc(ctx, func() { c.Close() })
		if err = writeRequest(bc.bw, r); err == nil {
			_, err = bc.br.Peek(1)
		}
		if err == nil {
			break
		}
		stop()
		c.Close()
		if !reused || ctx.Err() != nil {
			appErrorPage(e.route, err).write(w, r)
			return
		}
	}
	reusable := false
	defer func() {
		if stop() && reusable {
			pool.put(bc)
			return
		}
		bc.conn.Close()
	}()

	// Forward informational responses (103 Early Hints) as ReverseProxy
	// does.
	res, err = bc.readFinal(r, func(info *http.Response) error {
		h := w.Header()
		copyHeader(h, info.Header)
		w.WriteHeader(info.StatusCode)
		clear(h)
		return nil
	})
	if err != nil {
		appErrorPage(e.route, err).write(w, r)
		return
	}

	removeHopByHop(res.Header)
	moveHeader(w.Header(), res.Header)
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		w.Header().Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)

	if err := rt.copyBody(w, res); err != nil {
		// The head is out: all that is left is to abort the response, as
		// ReverseProxy does.
		panic(http.ErrAbortHandler)
	}
	if len(res.Trailer) > 0 {
		// Force chunking, so net/http does not compute a length for a
		// short body and drop the trailers.
		http.NewResponseController(w).Flush()
		if len(res.Trailer) == announced {
			copyHeader(w.Header(), res.Trailer)
		} else {
			for k, vv := range res.Trailer {
				for _, v := range vv {
					w.Header().Add(http.TrailerPrefix+k, v)
				}
			}
		}
	}
	reusable = !res.Close && bc.br.Buffered() == 0
}

// writeRequest writes the head of r, as the ReverseProxy path would send
// it: hop-by-hop headers and any X-Forwarded-* or Forwarded the client
// sent are dropped, X-Forwarded-For, -Host and -Proto set, Host kept.
func writeRequest(bw *bufio.Writer, r *http.Request) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(r.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if !classifyHeader(k).inRequest() || len(conn) > 0 && containsToken(conn, k) {
			continue
		}
		for _, v := range vv {
			writeHeaderLine(bw, k, v)
		}
	}
	if containsToken(r.Header["Te"], "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		writeHeaderLine(bw, "X-Forwarded-For", ip)
	}
	writeHeaderLine(bw, "X-Forwarded-Host", r.Host)
	if r.TLS != nil {
		bw.WriteString("X-Forwarded-Proto: https\r\n\r\n")
	} else {
		bw.WriteString("X-Forwarded-Proto: http\r\n\r\n")
	}
	return bw.Flush()
}

// writeHeaderLine writes "k: v\r\n", with any CR or LF in v turned into a
// space and surrounding blanks trimmed, as net/http does.
func writeHeaderLine(bw *bufio.Writer, k, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	v = strings.Trim(v, " \t")
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// moveHeader adds the headers of src, which is not used afterwards, to dst,
// handing src's value slices over where dst has none of its own.
func moveHeader(dst, src http.Header) {
	for k, vv := range src {
		if len(dst[k]) == 0 {
			dst[k] = vv
			continue
		}
		dst[k] = append(dst[k], vv...)
	}
}

func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		for _, v := range vv {
			dst.Add(k, v)
		}
	}
}

// copyBody copies the body of res to w and closes it. Streams (unknown
// length, text/event-stream) are flushed on every write; others at the
// latest maxFlushDelay after a write that left more to come, like
// ReverseProxy's FlushInterval, but without arming a timer for a body that
// arrives in one read.
func (rt *Router) copyBody(w http.ResponseWriter, res *http.Response) error {
	defer res.Body.Close()
	if res.Body == http.NoBody {
		return nil
	}
	rc := http.NewResponseController(w)
	every := res.ContentLength < 0
	if !every {
		if ct := res.Header.Get("Content-Type"); ct != "" && strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "text/event-stream") {
			if mt, _, _ := mime.ParseMediaType(ct); mt == "text/event-stream" {
				every = true
			}
		}
	}
	bp := copyBufferPool.Get().(*[copyBufferSize]byte)
	defer copyBufferPool.Put(bp)
	buf := bp[:]

	var lw *latencyWriter
	defer func() {
		if lw != nil {
			lw.stop()
		}
	}()
	var written int64
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			var werr error
			if lw != nil {
				werr = lw.write(buf[:n])
			} else {
				_, werr = w.Write(buf[:n])
			}
			if werr != nil {
				return werr
			}
			written += int64(n)
			switch {
			case every:
				if err := rc.Flush(); err != nil {
					return err
				}
			case lw == nil && written < res.ContentLength:
				// More is to come: from now on, flush what lingers.
				lw = &latencyWriter{w: w, rc: rc}
				lw.armed()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			if rerr != context.Canceled && res.Request.Context().Err() == nil && rt.ErrorLog != nil {
				rt.ErrorLog.Printf("router: read error during body copy: %v", rerr)
			}
			return rerr
		}
	}
}

// latencyWriter writes to w and flushes what was written at the latest
// maxFlushDelay later.
type latencyWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	mu      sync.Mutex // guards writes against the timer's flush
	t       *time.Timer
	pending bool
}

// armed records that a write just happened and starts the timer.
func (l *latencyWriter) armed() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = true
	l.t = time.AfterFunc(maxFlushDelay, l.flush)
}

func (l *latencyWriter) write(p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(p)
	if !l.pending {
		l.pending = true
		l.t.Reset(maxFlushDelay)
	}
	return err
}

func (l *latencyWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.pending {
		return
	}
	l.pending = false
	l.rc.Flush()
}

func (l *latencyWriter) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = false
	l.t.Stop()
}

package router

// The front's exchange with an app: forwarding a plain request on a pooled
// connection and copying the answer back, by its lines when it is a final
// response with a Content-Length, else through http.ReadResponse; and the
// error pages written straight to the client's connection.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

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
	rec := rt.recorder(e)
	var began time.Time
	if rec != nil {
		began = time.Now()
	}
	pool := rt.pool(e)
	var bc *backendConn
	for {
		reused := true
		var epoch uint64
		if bc, epoch = pool.get(); bc == nil {
			reused = false
			c, err := rt.dialEntry(context.Background(), e)
			if err != nil {
				fc.br.Discard(len(head))
				return fc.errorPage(req, e, err, closeAfter, rec, began)
			}
			bc = newBackendConn(c, epoch)
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
			return fc.errorPage(req, e, err, closeAfter, rec, began)
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
		return fc.errorPage(req, e, err, closeAfter, rec, began)
	}
	if rec != nil && res.wroteHead && res.status != 0 {
		rec.Observe(res.status, time.Since(began), 0, res.body)
	}
	return err == nil && !gone && res.clientOK && !closeAfter
}

// responseResult is how copying a response went.
type responseResult struct {
	wroteHead bool  // the client has seen the status line
	clientOK  bool  // the client connection is fine (whatever the app did)
	reuse     bool  // the app's connection can serve another request
	status    int   // the final status sent, once wroteHead
	body      int64 // body bytes sent
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
	status := firstLine(rh)
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

	res := responseResult{wroteHead: true, clientOK: true,
		status: int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')}
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

	for length > 0 {
		if bc.br.Buffered() == 0 {
			// About to wait for the app: send what is here first.
			if err := bw.Flush(); err != nil {
				res.clientOK = false
				return res, err
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
		res.body += n
	}
	if err := bw.Flush(); err != nil {
		res.clientOK = false
		return res, err
	}
	res.reuse = !appCloses && bc.br.Buffered() == 0
	return res, nil
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
	out := responseResult{wroteHead: true, clientOK: true, status: res.StatusCode}
	if !hasBody {
		if err := bw.Flush(); err != nil {
			out.clientOK = false
			return out, err
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
			out.body += int64(n)
			// Streams are flushed as they come; a body of known length
			// when the app has nothing more buffered.
			if chunked || bc.br.Buffered() == 0 {
				if err := bw.Flush(); err != nil {
					out.clientOK = false
					return out, err
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
		out.clientOK = false
		return out, err
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

// errorPage answers the request with the page for err (appErrorPage), and
// records it with rec if set. It reports whether the connection can carry
// another request.
func (fc *frontConn) errorPage(req *plainRequest, e *entry, err error, closeAfter bool, rec RequestRecorder, began time.Time) bool {
	r := &http.Request{Method: http.MethodGet, Header: http.Header{}}
	if req.head {
		r.Method = http.MethodHead
	}
	if req.accept != nil {
		r.Header.Set("Accept", string(req.accept))
	}
	w := &pageWriter{bw: fc.bw, h: http.Header{}, head: req.head, close: closeAfter}
	p := appErrorPage(e.route, err)
	p.write(w, r)
	ok := fc.bw.Flush() == nil
	if rec != nil {
		rec.Observe(p.Status, time.Since(began), 0, w.n)
	}
	return ok && !closeAfter
}

// pageWriter is the http.ResponseWriter the front renders its pages to.
type pageWriter struct {
	bw    *bufio.Writer
	h     http.Header
	head  bool // a HEAD request: no body
	close bool
	wrote bool
	n     int64 // body bytes written
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
	n, err := w.bw.Write(p)
	w.n += int64(n)
	return n, err
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

package router

// Reading HTTP/1.1 heads for the front: finding a head in the read buffer,
// its header lines, and deciding whether a request is plain enough for the
// front to serve it itself.

import (
	"bufio"
	"bytes"
	"errors"
)

var errNotPlain = errors.New("not a plain request")

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

// firstLine returns the first line of head, a head peekHead returned, without
// its CRLF. A CR anywhere else in the line stays in it, for the caller to
// refuse as the control character it is.
func firstLine(head []byte) []byte {
	return head[:bytes.IndexByte(head, '\n')-1]
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

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
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
// HEAD of an origin-form target (whose path net/http would accept) over
// HTTP/1.1, with one Host, no body, and none of Transfer-Encoding, Upgrade,
// Expect, TE, Trailer or a Connection naming other headers.
func (r *plainRequest) parse(head []byte) bool {
	line := firstLine(head)
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
	if !validEscapes(r.target) {
		return false
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

// validEscapes reports whether every '%' in the path of target (before any
// '?') starts an escape of two hex digits. net/http refuses other paths with
// 400; the front leaves them to it.
func validEscapes(target []byte) bool {
	if bytes.IndexByte(target, '%') < 0 {
		return true
	}
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		target = target[:q]
	}
	for i := 0; i < len(target); i++ {
		if target[i] == '%' {
			if i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
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

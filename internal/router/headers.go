package router

import (
	"net/http"
	"strings"
)

// The one classification of header names. Every proxy path decides with it
// what to pass on: the front on the raw lines it copies (front_*.go), the
// fast path on net/http's Header maps (fast.go). The general path is
// httputil.ReverseProxy, which drops the same hop-by-hop headers by itself
// and cannot be told not to; TestHeadersOnEveryPath holds all three paths to
// this table.

// headerKind is what a proxy does with a header, by its name.
type headerKind uint8

const (
	// kindEndToEnd headers are passed on as they are, in requests and in
	// responses. Every header not in headerKinds is one.
	kindEndToEnd headerKind = iota
	kindDate                // end to end; the front adds one to a response without
	kindAccept              // end to end; the front reads it for its error pages
	kindExpect              // end to end; only net/http's path handles 100-continue

	// Request headers the proxy writes itself, passed on in responses.
	kindHost          // Host: the request's own host
	kindContentLength // Content-Length: each hop frames its message itself
	kindForwarded     // X-Forwarded-For, -Host, -Proto, Forwarded: the client's are dropped

	// The hop-by-hop headers (RFC 9110, 7.6.1, and those
	// httputil.ReverseProxy drops): never passed on.
	kindConnection       // Connection, which names further hop-by-hop headers
	kindTransferEncoding // Transfer-Encoding
	kindTE               // TE (its "trailers" is passed on as a new TE)
	kindTrailer          // Trailer (trailers are announced anew)
	kindUpgrade          // Upgrade
	kindHop              // Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization
)

// headerKinds names, in canonical form, every header that is not
// kindEndToEnd. The most frequent request headers come first: the front
// looks up every line of every request.
var headerKinds = [...]struct {
	name string
	kind headerKind
}{
	{"Host", kindHost},
	{"Accept", kindAccept},
	{"Connection", kindConnection},
	{"Date", kindDate},
	{"Expect", kindExpect},
	{"Content-Length", kindContentLength},
	{"Transfer-Encoding", kindTransferEncoding},
	{"Te", kindTE},
	{"Trailer", kindTrailer},
	{"Upgrade", kindUpgrade},
	{"Keep-Alive", kindHop},
	{"Proxy-Connection", kindHop},
	{"Proxy-Authenticate", kindHop},
	{"Proxy-Authorization", kindHop},
	{"X-Forwarded-For", kindForwarded},
	{"X-Forwarded-Host", kindForwarded},
	{"X-Forwarded-Proto", kindForwarded},
	{"Forwarded", kindForwarded},
}

// hopByHop reports whether headers of kind k concern one connection only.
func (k headerKind) hopByHop() bool {
	switch k {
	case kindConnection, kindTransferEncoding, kindTE, kindTrailer, kindUpgrade, kindHop:
		return true
	}
	return false
}

// inRequest reports whether a request header of kind k reaches the app as
// the client sent it. The others are hop-by-hop, or the proxy writes them
// itself (Host, Content-Length, X-Forwarded-*).
func (k headerKind) inRequest() bool {
	switch k {
	case kindEndToEnd, kindDate, kindAccept, kindExpect:
		return true
	}
	return false
}

// classifyHeader returns the kind of the header called name, in any case.
// It does not allocate.
func classifyHeader[N ~string | ~[]byte](name N) headerKind {
	for i := range headerKinds {
		if h := &headerKinds[i]; len(h.name) == len(name) && equalFoldASCII(name, h.name) {
			return h.kind
		}
	}
	return kindEndToEnd
}

// equalFoldASCII reports whether a and b, of equal length, are equal but
// for the case of ASCII letters, as header names compare.
func equalFoldASCII[N ~string | ~[]byte](a N, b string) bool {
	for i := 0; i < len(b); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// hopHeaders are the canonical names of the hop-by-hop headers.
var hopHeaders = func() []string {
	var names []string
	for _, h := range headerKinds {
		if h.kind.hopByHop() {
			names = append(names, h.name)
		}
	}
	return names
}()

// removeHopByHop deletes the hop-by-hop headers of h, including those
// named in its Connection header.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = strings.TrimSpace(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// containsToken reports whether the comma-separated values contain token,
// compared case-insensitively.
func containsToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

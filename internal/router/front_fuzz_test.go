package router

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// FuzzFrontRequest checks the front's request parser against net/http's:
// whatever the front accepts, net/http accepts too, with the same method,
// target and Host; and what the front forwards is a bodiless request that
// net/http parses, carrying none of the client's X-Forwarded-* or
// hop-by-hop headers.
func FuzzFrontRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"))
	f.Add([]byte("HEAD /a?b=c HTTP/1.1\r\nHost: App.Test:8080\r\nAccept: text/html\r\nConnection: keep-alive, close\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nKeep-Alive: 5\r\nContent-Length: 0\r\nX-A:  b \r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\nHost: a\n\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"))
	f.Add([]byte("HEAD / HTTP/1.1\r\r\nHost:0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(raw), frontBufferSize)
		head, err := peekHead(br)
		if err != nil {
			return
		}
		var req plainRequest
		if !req.parse(head) {
			return
		}
		ref, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("the front accepted %q, net/http refuses it: %v", head, err)
		}
		wantMethod := "GET"
		if req.head {
			wantMethod = "HEAD"
		}
		if ref.Method != wantMethod || ref.RequestURI != string(req.target) || ref.Host != string(req.host) {
			t.Fatalf("%q: front %s %q host %q; net/http %s %q host %q", head, wantMethod, req.target, req.host, ref.Method, ref.RequestURI, ref.Host)
		}
		if ref.ContentLength > 0 || len(ref.TransferEncoding) > 0 {
			t.Fatalf("%q: the front took a request with a body", head)
		}

		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		if err := req.writeTo(bw, head, "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		fwd, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out.Bytes())))
		if err != nil {
			t.Fatalf("%q forwarded as %q, which net/http refuses: %v", head, out.Bytes(), err)
		}
		if fwd.Method != wantMethod || fwd.Host != ref.Host || fwd.RequestURI != ref.RequestURI {
			t.Fatalf("forwarded %s %q host %q; want %s %q host %q", fwd.Method, fwd.RequestURI, fwd.Host, wantMethod, ref.RequestURI, ref.Host)
		}
		if fwd.ContentLength > 0 || len(fwd.TransferEncoding) > 0 {
			t.Fatalf("forwarded %q has a body", out.Bytes())
		}
		if got := fwd.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "192.0.2.1" {
			t.Fatalf("forwarded X-Forwarded-For %q; want only ours", got)
		}
		for _, k := range []string{"Forwarded", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Te", "Upgrade", "Connection"} {
			if v := fwd.Header.Values(k); len(v) > 0 {
				t.Fatalf("forwarded %q keeps %s: %q", out.Bytes(), k, v)
			}
		}
		// Every other header the client sent reaches the app.
		for k, vv := range ref.Header {
			if !classifyHeader(k).inRequest() {
				continue
			}
			if got := fwd.Header.Values(k); strings.Join(got, "\x00") != strings.Join(vv, "\x00") {
				t.Fatalf("header %s: forwarded %q; client sent %q", k, got, vv)
			}
		}
	})
}

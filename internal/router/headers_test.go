package router_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/router"
)

// TestHeadersOnEveryPath holds every proxy path to the one header
// classification: for each header it names (and one it does not), a client
// sends it on a request the front serves itself, on one it hands to net/http
// that takes the fast path, and on one that takes httputil.ReverseProxy; the
// app sends it back on the response. The app must see the client's value
// exactly when the classification says it is passed on in requests, and the
// client the app's exactly when it is not hop-by-hop.
func TestHeadersOnEveryPath(t *testing.T) {
	var tab router.Table
	tab.Set("app.test", router.Route{Deployment: "d1", Backend: startApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := r.URL.Query().Get("h"); h != "" {
			w.Header().Set(h, "app-"+strings.ToLower(h))
		}
		if r.URL.Query().Has("named") {
			w.Header().Set("Connection", "X-App-Named")
			w.Header().Set("X-App-Named", "app")
		}
		var lines []string
		for k, vv := range r.Header {
			for _, v := range vv {
				lines = append(lines, k+": "+v+"\n")
			}
		}
		sort.Strings(lines)
		io.WriteString(w, strings.Join(lines, ""))
	}))})
	addr := frontAddr(t, &tab)

	rules := append(router.HeaderRules(), router.HeaderRule{Name: "X-End-To-End", InRequest: true})
	paths := []struct{ name, start, extra string }{
		{"front", "GET /?h=%s HTTP/1.1", ""},
		{"fast path", "GET http://app.test/?h=%s HTTP/1.1", ""}, // absolute form: handed to net/http
		{"ReverseProxy", "POST /?h=%s HTTP/1.1", "Content-Length: 0\r\n"},
	}
	for _, p := range paths {
		for _, rule := range rules {
			t.Run(p.name+"/"+rule.Name, func(t *testing.T) {
				// What a request or response cannot carry as a free-form
				// header in this test: the framing of the test's own
				// messages, and Expect, which the app's net/http server
				// takes out of the header it hands to its handler.
				sendReq := !slices.Contains([]string{"Host", "Content-Length", "Transfer-Encoding", "Expect"}, rule.Name)
				sendRes := !slices.Contains([]string{"Content-Length", "Transfer-Encoding", "Trailer"}, rule.Name)
				clientValue := "client-" + strings.ToLower(rule.Name)
				h := ""
				if sendRes {
					h = rule.Name
				}
				raw := fmt.Sprintf(p.start, h) + "\r\nHost: app.test\r\n" + p.extra
				if sendReq {
					raw += rule.Name + ": " + clientValue + "\r\n"
				}
				raw += "\r\n"

				res, seen := rawExchange(t, addr, raw)
				if res.StatusCode != 200 {
					t.Fatalf("%d %q; want 200", res.StatusCode, seen)
				}
				if sendReq {
					passed := strings.Contains(seen, rule.Name+": "+clientValue+"\n")
					if passed != rule.InRequest || !passed && strings.Contains(seen, clientValue) {
						t.Errorf("the app saw\n%swant the client's %s passed on: %v", seen, rule.Name, rule.InRequest)
					}
				}
				if sendRes {
					got := res.Header.Values(rule.Name)
					if passed := slices.Contains(got, "app-"+strings.ToLower(rule.Name)); passed == rule.HopByHop {
						t.Errorf("the client got %s: %q; want the app's passed on: %v", rule.Name, got, !rule.HopByHop)
					}
				}
			})
		}
	}

	// A header named in Connection is hop-by-hop too, in either direction.
	for _, p := range paths {
		t.Run(p.name+"/named in Connection", func(t *testing.T) {
			res, seen := rawExchange(t, addr, fmt.Sprintf(p.start, "&named")+"\r\nHost: app.test\r\n"+p.extra+
				"Connection: X-Named\r\nX-Named: client\r\n\r\n")
			if res.StatusCode != 200 || strings.Contains(seen, "X-Named") || strings.Contains(seen, "Connection") {
				t.Errorf("%d; the app saw\n%swant 200 and neither Connection nor X-Named", res.StatusCode, seen)
			}
			if v := res.Header.Values("X-App-Named"); len(v) > 0 {
				t.Errorf("the client got X-App-Named: %q, named in the app's Connection", v)
			}
		})
	}
}

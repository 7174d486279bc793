package dns_test

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/slipwayhq/slipway/internal/netns/dns"
)

// The resolver answers names under .internal itself: here, one project's
// name leads to the gateway, where the router listens. Every other name is
// forwarded to the upstreams (none is asked in this example).
func Example() {
	gateway := netip.MustParseAddr("127.0.0.1") // the bridge's gateway, e.g. 10.88.0.1
	srv, err := dns.Serve(dns.Config{
		Listen:    netip.AddrPortFrom(gateway, 0).String(), // port 53 in production
		Upstreams: []string{"127.0.0.53:53"},               // if empty, /etc/resolv.conf's
		Internal: func(name string) (netip.Addr, bool) {
			// name is lowercased, without its final dot.
			if name == "shop.internal" || strings.HasSuffix(name, ".shop.internal") {
				return gateway, true
			}
			return netip.Addr{}, false
		},
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	// What an app's resolver does, with /etc/resolv.conf pointing at srv.
	c := &miekg.Client{Timeout: 10 * time.Second}
	for _, name := range []string{"shop.internal.", "Shop.Internal.", "blog.internal."} {
		q := new(miekg.Msg)
		q.SetQuestion(name, miekg.TypeA)
		resp, _, err := c.Exchange(q, srv.Addr())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Print(name, " ", miekg.RcodeToString[resp.Rcode])
		for _, rr := range resp.Answer {
			fmt.Print(" ", rr.(*miekg.A).A)
		}
		fmt.Println()
	}
	// Output:
	// shop.internal. NOERROR 127.0.0.1
	// Shop.Internal. NOERROR 127.0.0.1
	// blog.internal. NXDOMAIN
}

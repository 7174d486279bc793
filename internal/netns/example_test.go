package netns_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"

	"github.com/slipwayhq/slipway/internal/netns"
)

// A server opens the network at start, restores each project's egress,
// and forgets the instances that did not survive; the runtime attaches
// each new instance's namespace before its app starts and detaches it
// when the namespace goes. (Not run: it needs root and changes the host.)
func Example() {
	n, err := netns.Open(netns.Config{
		StateDir:     "/var/lib/slipway/network",
		GatewayPorts: []uint16{80}, // the router's private listener on the gateway
	})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close() // the kernel state stays for the next start

	db := netns.Allow{Prefix: netip.MustParsePrefix("10.77.0.5/32"), Port: 5432} // project.ParseEgressRule reads users' rules
	if err := n.SetEgress("project-1", netns.Egress{Allow: []netns.Allow{db}}); err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Reconcile(ctx, []string{"instance-a"}); err != nil {
		log.Fatal(err)
	}

	l, err := n.Attach(ctx, "instance-b", "project-1", "/run/netns/slipway-instance-b")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("eth0 %s via %s, nameserver %s\n", l.Addr, l.Gateway, l.DNS[0])
	// ... the app runs ...
	if err := n.Detach(ctx, "instance-b"); err != nil {
		log.Fatal(err)
	}
}

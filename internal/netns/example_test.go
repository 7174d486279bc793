package netns_test

import (
	"context"
	"fmt"
	"log"

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

	db, _ := netns.ParseAllow("10.77.0.5/32:5432")
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

func ExampleParseAllow() {
	for _, s := range []string{"10.1.2.3/32:5432", "10.0.0.0/8", "192.168.1.10", "[fd00::/8]:80"} {
		a, err := netns.ParseAllow(s)
		if err != nil {
			fmt.Println("refused:", s)
			continue
		}
		fmt.Println(a, a.Prefix.Bits(), a.Port)
	}
	// Output:
	// 10.1.2.3/32:5432 32 5432
	// 10.0.0.0/8 8 0
	// 192.168.1.10/32 32 0
	// refused: [fd00::/8]:80
}

package netns

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/netns/nettest"
)

// BenchmarkEgress measures TCP throughput to the stand-in internet (a
// sink in the world's namespace) from an instance on the bridge (veth,
// bridge, forwarding, Slipway's nftables policy, conntrack, masquerade)
// and from the host itself (the same link into the world, none of the
// rest), side by side: bench/run.sh reports the ratio. Each op writes
// 1 MiB over one connection.
func BenchmarkEgress(b *testing.B) {
	nettest.Require(b)
	suf := nettest.Suffix(b)
	n := open(b, testConfig(b, suf, "10.123.10.0/26"))
	w := nettest.NewWorld(b, n.cfg.Bridge)
	w.RouteFromHost(b, nettest.TestNet3)
	ns := nettest.NewNS(b, "swt-"+suf+"-egress")
	attach(b, n, "e"+suf, "g"+suf, ns)

	sink := nettest.ListenIn(b, w.Path, "tcp4", ":9000")
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	dst := netip.AddrPortFrom(nettest.TestNet3, 9000)
	for _, from := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"host", func() (net.Conn, error) { return net.DialTimeout("tcp4", dst.String(), 2*time.Second) }},
		{"instance", func() (net.Conn, error) { return nettest.DialFrom(b, ns, dst, 2*time.Second) }},
	} {
		b.Run(from.name, func(b *testing.B) {
			c, err := from.dial()
			if err != nil {
				b.Fatalf("dialling the world's sink from the %s: %v", from.name, err)
			}
			defer c.Close()
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

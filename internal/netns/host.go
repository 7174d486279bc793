package netns

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// candidates are the ranges Open tries, in order, when Config.Prefix is
// zero: the first that overlaps no route of the host wins.
func candidates() []netip.Prefix {
	var out []netip.Prefix
	for _, b := range []byte{88, 89, 90} {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, b, 0, 0}), 16))
	}
	for _, b := range []byte{29, 30, 31} {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, b, 0, 0}), 16))
	}
	for b := 91; b < 255; b++ {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(b), 0, 0}), 16))
	}
	return out
}

// reserved are the ranges the default policy denies whatever the host:
// loopback, link-local (cloud metadata included), RFC 1918, shared address
// space, "this network", IETF protocol assignments, benchmarking,
// multicast and the reserved class E (with broadcast).
var reserved = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// Reserved returns the ranges that instances never reach unless a
// project's egress policy opens them, whatever the host (loopback,
// link-local, RFC 1918, shared address space and the other reserved
// ranges); other runtimes that keep apps from them (the kubernetes
// driver's NetworkPolicy) use the same list.
func Reserved() []netip.Prefix { return slices.Clone(reserved) }

// hostRoutes lists the host's IPv4 routes in every table, leaving out
// those on the link with index skip (the bridge: its route is ours).
func hostRoutes(skip int) ([]netlink.Route, error) {
	rs, err := dump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("listing the host's routes: %w", err)
	}
	out := rs[:0]
	for _, r := range rs {
		if skip != 0 && r.LinkIndex == skip {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// choosePrefix returns the first candidate that overlaps no route of the
// host (the default route aside).
func choosePrefix(routes []netlink.Route) (netip.Prefix, error) {
	var used []netip.Prefix
	for _, r := range routes {
		if p, ok := routePrefix(r); ok && p.Bits() > 0 {
			used = append(used, p)
		}
	}
	for _, c := range candidates() {
		if !slices.ContainsFunc(used, c.Overlaps) {
			return c, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("choosing the instances' network: every candidate range overlaps a route of the host; set one")
}

// hostDenied returns the host's own addresses and its LAN: every IPv4
// address of an interface, every local route (the host answers for
// those), and the prefix of every directly connected route. The bridge's
// routes are left out by hostRoutes; the instance prefix is denied apart.
func hostDenied(routes []netlink.Route) ([]netip.Prefix, error) {
	var out []netip.Prefix
	addrs, err := dump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("listing the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap().Is4() {
			out = append(out, netip.PrefixFrom(ip.Unmap(), 32))
		}
	}
	for _, r := range routes {
		p, ok := routePrefix(r)
		if !ok || p.Bits() == 0 {
			continue
		}
		switch {
		case r.Type == unix.RTN_LOCAL:
			out = append(out, p)
		case r.Type == unix.RTN_UNICAST && r.Scope == netlink.SCOPE_LINK && r.Gw == nil && len(r.MultiPath) == 0:
			out = append(out, p)
		}
	}
	return out, nil
}

func routePrefix(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	if !ip.Is4() {
		return netip.Prefix{}, false
	}
	ones, bits := r.Dst.Mask.Size()
	if bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, ones).Masked(), true
}

// span is a closed range of IPv4 addresses.
type span struct{ lo, hi uint32 }

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// merge turns prefixes into the sorted, disjoint, non-adjacent ranges an
// nftables interval set wants (the kernel refuses overlapping intervals;
// nft(8) merges them in user space, as this does).
func merge(ps []netip.Prefix) []span {
	ss := make([]span, 0, len(ps))
	for _, p := range ps {
		if !p.IsValid() || !p.Addr().Is4() {
			continue
		}
		p = p.Masked()
		lo := u32(p.Addr())
		hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
		ss = append(ss, span{lo, hi})
	}
	slices.SortFunc(ss, func(a, b span) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	var out []span
	for _, s := range ss {
		if n := len(out); n > 0 && (s.lo <= out[n-1].hi || (out[n-1].hi != ^uint32(0) && s.lo == out[n-1].hi+1)) {
			out[n-1].hi = max(out[n-1].hi, s.hi)
			continue
		}
		out = append(out, s)
	}
	return out
}

// enableForwarding turns on IPv4 forwarding, as every container network
// on Linux must (Docker, Podman and CNI's bridge plugin do the same).
func enableForwarding() error {
	const path = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(path)
	if err == nil && bytes.Equal(bytes.TrimSpace(b), []byte("1")) {
		return nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enabling IPv4 forwarding: %w", err)
	}
	return nil
}

// bridgeMAC is a fixed, locally administered address for the bridge. A
// Linux bridge without one takes the lowest address of its ports, so its
// address (the instances' gateway) would change as instances come and go.
func bridgeMAC(name string) net.HardwareAddr {
	h := fnv64(name)
	return net.HardwareAddr{0x02, 0x53, byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h)}
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// dump retries a netlink dump that the kernel interrupted (a link,
// address or route changed while it was read: other containers, other
// tests), a few times; then it returns what it got with the error.
func dump[T any](fn func() (T, error)) (T, error) {
	var v T
	var err error
	for range 20 {
		if v, err = fn(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

package netns

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Egress is a group's egress policy. The zero value is the default: the
// public internet, nothing else.
type Egress struct {
	// None closes egress altogether: the group's instances reach nothing
	// but Slipway's DNS and the gateway ports, whatever Allow says.
	None bool
	// Allow opens destinations that the default denies.
	Allow []Allow
}

// Allow opens a destination: an IPv4 prefix and, if Port is not zero, only
// that port (TCP and UDP).
type Allow struct {
	Prefix netip.Prefix
	Port   uint16 // 0 = any
}

// ParseAllow reads CIDR[:PORT] as users write it: "10.1.2.3/32:5432",
// "10.0.0.0/8", "192.168.1.10" (its /32), "192.168.1.10:5432". Host bits
// of a CIDR are cleared ("10.1.2.3/8" is 10.0.0.0/8). IPv4 only, as
// instances' networks are: "[fd00::/8]:80" is refused.
func ParseAllow(s string) (Allow, error) {
	s = strings.TrimSpace(s)
	bad := func(why string) (Allow, error) {
		return Allow{}, fmt.Errorf("invalid egress rule %q: %s (write CIDR or CIDR:PORT, such as 10.1.2.3/32:5432)", s, why)
	}
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") > 1 {
		return bad("only IPv4 destinations are supported")
	}
	addr, port, hasPort := strings.Cut(s, ":")
	var a Allow
	if hasPort {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return bad("the port must be a number from 1 to 65535")
		}
		a.Port = uint16(p)
	}
	if strings.Contains(addr, "/") {
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return bad("not a CIDR")
		}
		a.Prefix = p.Masked()
	} else {
		ip, err := netip.ParseAddr(addr)
		if err != nil {
			return bad("not an address")
		}
		a.Prefix = netip.PrefixFrom(ip, ip.BitLen())
	}
	if !a.Prefix.Addr().Is4() {
		return bad("only IPv4 destinations are supported")
	}
	return a, nil
}

// String is the rule as ParseAllow reads it: 10.0.0.0/8, 10.1.2.3/32:5432.
func (a Allow) String() string {
	if a.Port == 0 {
		return a.Prefix.String()
	}
	return a.Prefix.String() + ":" + strconv.Itoa(int(a.Port))
}

// validate checks a policy handed to SetEgress and returns it normalised.
func (e Egress) validate() (Egress, error) {
	out := Egress{None: e.None}
	for _, a := range e.Allow {
		if !a.Prefix.IsValid() || !a.Prefix.Addr().Is4() {
			return Egress{}, fmt.Errorf("egress rule %s: only IPv4 destinations are supported", a)
		}
		out.Allow = append(out.Allow, Allow{Prefix: a.Prefix.Masked(), Port: a.Port})
	}
	return out, nil
}

func (e Egress) isDefault() bool { return !e.None && len(e.Allow) == 0 }

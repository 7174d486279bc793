package netns

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// Egress is a group's egress policy. The zero value is the default: the
// public internet, nothing else.
type Egress struct {
	// None closes egress altogether: the group's instances reach nothing
	// but Slipway's DNS and the gateway ports, whatever Allow says.
	None bool `json:"none,omitempty"`
	// Allow opens destinations that the default denies.
	Allow []Allow `json:"allow,omitempty"`
}

// Allow opens a destination: an IPv4 prefix and, if Port is not zero, only
// that port (TCP and UDP).
type Allow struct {
	Prefix netip.Prefix `json:"prefix"`
	Port   uint16       `json:"port,omitempty"` // 0 = any
}

// String is the rule as users write it (package project parses it):
// 10.0.0.0/8, 10.1.2.3/32:5432.
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

// equal reports whether e and o are the same policy.
func (e Egress) equal(o Egress) bool { return e.None == o.None && slices.Equal(e.Allow, o.Allow) }

package project

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/slipwayhq/slipway/internal/store"
)

// Egress: by default an app reaches the public internet and nothing else
// (not the host, link-local addresses, other instances, private and
// reserved ranges or the host's LAN). A project opens a destination the
// default denies with an allow rule, CIDR[:PORT], or closes egress
// altogether with None. Changes apply at once, to running instances too.

// Egress is a project's egress policy, parsed.
type Egress struct {
	None  bool
	Allow []EgressRule
}

// EgressRule allows a destination: a prefix and, if Port is not zero,
// only that port (TCP and UDP).
type EgressRule struct {
	Prefix netip.Prefix
	Port   uint16
}

// String is the rule as users write it: 10.0.0.0/8, 10.1.2.3/32:5432.
func (r EgressRule) String() string {
	if r.Port == 0 {
		return r.Prefix.String()
	}
	return r.Prefix.String() + ":" + strconv.Itoa(int(r.Port))
}

// ParseEgressRule reads CIDR[:PORT]; an address alone is its /32. IPv4
// only, as instances' networks are.
func ParseEgressRule(s string) (EgressRule, error) {
	s = strings.TrimSpace(s)
	bad := func(why string) (EgressRule, error) {
		return EgressRule{}, fmt.Errorf("invalid egress rule %q: %s (write CIDR or CIDR:PORT, such as 10.1.2.3/32:5432): %w", s, why, ErrInvalid)
	}
	addr, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		addr, port = s[:i], s[i+1:]
	}
	var r EgressRule
	if port != "" || strings.HasSuffix(s, ":") {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return bad("the port must be a number from 1 to 65535")
		}
		r.Port = uint16(p)
	}
	if strings.Contains(addr, "/") {
		pf, err := netip.ParsePrefix(addr)
		if err != nil {
			return bad("not a CIDR")
		}
		r.Prefix = pf.Masked()
	} else {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return bad("not an address")
		}
		r.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if !r.Prefix.Addr().Is4() {
		return bad("only IPv4 destinations are supported")
	}
	return r, nil
}

// EgressOf parses a project's stored egress policy.
func EgressOf(p store.Project) (Egress, error) {
	e := Egress{None: p.Egress.None}
	for _, s := range p.Egress.Allow {
		r, err := ParseEgressRule(s)
		if err != nil {
			return Egress{}, fmt.Errorf("project %s: %w", p.Name, err)
		}
		e.Allow = append(e.Allow, r)
	}
	return e, nil
}

// Firewall applies a project's egress policy to its running instances.
type Firewall interface {
	SetEgress(projectID string, e Egress) error
}

// AllowEgress adds an allow rule to p's egress policy (a rule already
// there is kept once).
func (s *Service) AllowEgress(ctx context.Context, p store.Project, rule string) (Egress, error) {
	r, err := ParseEgressRule(rule)
	if err != nil {
		return Egress{}, err
	}
	return s.changeEgress(ctx, p, func(e *store.Egress) error {
		if !slices.Contains(e.Allow, r.String()) {
			e.Allow = append(e.Allow, r.String())
		}
		return nil
	})
}

// DenyEgress removes an allow rule from p's egress policy.
func (s *Service) DenyEgress(ctx context.Context, p store.Project, rule string) (Egress, error) {
	r, err := ParseEgressRule(rule)
	if err != nil {
		return Egress{}, err
	}
	return s.changeEgress(ctx, p, func(e *store.Egress) error {
		i := slices.Index(e.Allow, r.String())
		if i < 0 {
			return fmt.Errorf("project %s has no egress rule %s: %w", p.Name, r, store.ErrNotFound)
		}
		e.Allow = slices.Delete(e.Allow, i, i+1)
		return nil
	})
}

// SetEgressNone closes (none) or reopens p's egress: with none, its
// instances reach nothing but Slipway's resolver and private network.
func (s *Service) SetEgressNone(ctx context.Context, p store.Project, none bool) (Egress, error) {
	return s.changeEgress(ctx, p, func(e *store.Egress) error {
		e.None = none
		return nil
	})
}

// changeEgress persists p's changed policy, then applies it.
func (s *Service) changeEgress(ctx context.Context, p store.Project, change func(*store.Egress) error) (Egress, error) {
	stored := store.Egress{None: p.Egress.None, Allow: slices.Clone(p.Egress.Allow)}
	if err := change(&stored); err != nil {
		return Egress{}, err
	}
	if err := s.store.SetProjectEgress(ctx, p.ID, stored); err != nil {
		return Egress{}, err
	}
	p.Egress = stored
	e, err := EgressOf(p)
	if err != nil {
		return Egress{}, err
	}
	if s.firewall != nil {
		if err := s.firewall.SetEgress(p.ID, e); err != nil {
			return e, fmt.Errorf("applying the egress policy of %s: %w", p.Name, err)
		}
	}
	return e, nil
}

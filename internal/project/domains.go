package project

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/store"
)

// CanonicalDomain returns a custom domain as it is stored and routed:
// trimmed, lower-case, without a trailing dot. ErrInvalid when it is not a
// hostname (a port, an IPv6 literal or a bad label).
func CanonicalDomain(name string) (string, error) {
	name = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	if h, ok := router.CanonicalHost(name); !ok || h != name || strings.ContainsAny(name, ":[]") {
		return "", fmt.Errorf("invalid domain %q: %w", name, ErrInvalid)
	}
	if net.ParseIP(name) != nil {
		return "", fmt.Errorf("%s is an IP address, not a domain: %w", name, ErrInvalid)
	}
	return name, nil
}

// AddDomain assigns a custom domain to env; it follows env's current
// deployment from then on. A domain belongs to one environment only
// (store.ErrExists otherwise), and the base domain and the names under it
// are Slipway's own: they are refused, so that no project can take
// another's preview, project or environment hostname.
func (s *Service) AddDomain(ctx context.Context, env store.Environment, name string) (store.Domain, error) {
	name, err := CanonicalDomain(name)
	if err != nil {
		return store.Domain{}, err
	}
	if s.hosts.Reserved(name) {
		return store.Domain{}, fmt.Errorf("%s is under the base domain %s, whose names Slipway gives to deployments, projects and environments; use a domain of your own: %w", name, s.hosts.base(), ErrInvalid)
	}
	dom, err := s.store.AddDomain(ctx, env.ID, name)
	if err != nil {
		return dom, err
	}
	s.life.Reroute(ctx, env, nil)
	return dom, nil
}

// RemoveDomain unassigns a custom domain of env; it answers 404 from then
// on. store.ErrNotFound when env has no such domain.
func (s *Service) RemoveDomain(ctx context.Context, env store.Environment, name string) error {
	doms, err := s.store.ListDomains(ctx, env.ID)
	if err != nil {
		return err
	}
	for _, d := range doms {
		if d.Name == name {
			if err := s.store.RemoveDomain(ctx, name); err != nil {
				return err
			}
			s.life.Reroute(ctx, env, []string{name})
			return nil
		}
	}
	return fmt.Errorf("domain %s is not assigned to environment %s: %w", name, env.Name, store.ErrNotFound)
}

package project

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// RegistryCredential lets a project pull its images from another registry
// (`slipway deploy --image HOST/REPO:TAG`). It is sealed at rest like a
// secret variable; the API shows the registry and the user name only.
type RegistryCredential struct {
	Registry string `json:"registry"` // host[:port], as in the image's reference
	Username string `json:"username"`
	Password string `json:"password,omitempty"`
}

// RegistryCredentials are a project's credentials, one per registry.
type RegistryCredentials []RegistryCredential

// For returns the credential for reg, if any.
func (cs RegistryCredentials) For(reg name.Registry) (RegistryCredential, bool) {
	for _, c := range cs {
		if r, err := name.NewRegistry(c.Registry); err == nil && r.RegistryStr() == reg.RegistryStr() {
			return c, true
		}
	}
	return RegistryCredential{}, false
}

// Masked returns cs without passwords.
func (cs RegistryCredentials) Masked() RegistryCredentials {
	out := RegistryCredentials{}
	for _, c := range cs {
		out = append(out, RegistryCredential{Registry: c.Registry, Username: c.Username})
	}
	return out
}

// ValidateRegistryCredential checks a credential before it is stored.
func ValidateRegistryCredential(c RegistryCredential) error {
	host := strings.TrimSpace(c.Registry)
	if host == "" || strings.ContainsAny(host, "/ @") || strings.Contains(c.Registry, "://") {
		return fmt.Errorf("invalid registry %q: write its host, and port if any (such as ghcr.io or registry.example.com:5000): %w", c.Registry, ErrInvalid)
	}
	if _, err := name.NewRegistry(host, name.StrictValidation); err != nil {
		return fmt.Errorf("invalid registry %q: %v: %w", c.Registry, err, ErrInvalid)
	}
	if c.Username == "" || c.Password == "" {
		return fmt.Errorf("a registry credential needs a username and a password (or token): %w", ErrInvalid)
	}
	if len(c.Username)+len(c.Password) > MaxVarValue {
		return fmt.Errorf("the credential for %s is over 64 KiB: %w", host, ErrInvalid)
	}
	return nil
}

// UnsealRegistryCredentials opens a project's sealed credentials (none if
// sealed is nil).
func UnsealRegistryCredentials(box *secrets.Box, sealed []byte) (RegistryCredentials, error) {
	if len(sealed) == 0 {
		return nil, nil
	}
	if box == nil {
		return nil, errors.New("registry credentials need a secret key")
	}
	plain, err := box.Unseal(sealed)
	if err != nil {
		return nil, err
	}
	var cs RegistryCredentials
	if err := json.Unmarshal(plain, &cs); err != nil {
		return nil, err
	}
	return cs, nil
}

// RegistryCredentials returns p's credentials, passwords removed.
func (s *Service) RegistryCredentials(p store.Project) (RegistryCredentials, error) {
	cs, err := UnsealRegistryCredentials(s.box, p.RegistryAuth)
	if err != nil {
		return nil, err
	}
	return cs.Masked(), nil
}

// SetRegistryCredential stores (or replaces) p's credential for c's
// registry, sealed. It applies to image deployments created from then on.
func (s *Service) SetRegistryCredential(ctx context.Context, p store.Project, c RegistryCredential) error {
	c.Registry = strings.TrimSpace(c.Registry)
	if err := ValidateRegistryCredential(c); err != nil {
		return err
	}
	if s.box == nil {
		return errors.New("registry credentials need a secret key (Config.Secrets)")
	}
	cs, err := UnsealRegistryCredentials(s.box, p.RegistryAuth)
	if err != nil {
		return err
	}
	cs = cs.without(c.Registry)
	cs = append(cs, c)
	return s.saveRegistryCredentials(ctx, p, cs)
}

// DeleteRegistryCredential removes p's credential for registry
// (store.ErrNotFound if it has none).
func (s *Service) DeleteRegistryCredential(ctx context.Context, p store.Project, registry string) error {
	cs, err := UnsealRegistryCredentials(s.box, p.RegistryAuth)
	if err != nil {
		return err
	}
	rest := cs.without(registry)
	if len(rest) == len(cs) {
		return fmt.Errorf("no credential for registry %q: %w", registry, store.ErrNotFound)
	}
	return s.saveRegistryCredentials(ctx, p, rest)
}

func (cs RegistryCredentials) without(registry string) RegistryCredentials {
	var out RegistryCredentials
	for _, c := range cs {
		if !strings.EqualFold(c.Registry, strings.TrimSpace(registry)) {
			out = append(out, c)
		}
	}
	return out
}

func (s *Service) saveRegistryCredentials(ctx context.Context, p store.Project, cs RegistryCredentials) error {
	if len(cs) == 0 {
		return s.store.SetProjectRegistryAuth(ctx, p.ID, nil)
	}
	b, err := json.Marshal(cs)
	if err != nil {
		return err
	}
	return s.store.SetProjectRegistryAuth(ctx, p.ID, s.box.Seal(b))
}

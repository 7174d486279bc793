package project

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// Var is an environment variable. As Vars returns it, a secret value is
// masked (Value holds only a hint); as Unseal returns it, it is in full.
type Var struct {
	Name   string
	Value  string
	Secret bool
}

var varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// MaxVarValue bounds a variable's value.
const MaxVarValue = 64 << 10

// SetVar sets an environment variable of env, encrypted at rest. It takes
// effect for deployments started from then on.
func (s *Service) SetVar(ctx context.Context, env store.Environment, name, value string, secret bool) error {
	name = strings.TrimSpace(name)
	if !varNameRE.MatchString(name) || len(name) > 256 {
		return fmt.Errorf("invalid variable name %q: use letters, digits and '_', not starting with a digit: %w", name, ErrInvalid)
	}
	if name == "PORT" || strings.HasPrefix(name, "SLIPWAY_") {
		return fmt.Errorf("variable %s is set by Slipway and cannot be overridden: %w", name, ErrInvalid)
	}
	if len(value) > MaxVarValue {
		return fmt.Errorf("the value of %s is over 64 KiB: %w", name, ErrInvalid)
	}
	if s.box == nil {
		return errors.New("environment variables need a secret key (Config.Secrets)")
	}
	return s.store.SetEnvVar(ctx, env.ID, store.EnvVar{Name: name, Value: s.box.Seal([]byte(value)), Secret: secret})
}

// DeleteVar removes a variable of env (store.ErrNotFound if it has none
// of that name).
func (s *Service) DeleteVar(ctx context.Context, env store.Environment, name string) error {
	return s.store.DeleteEnvVar(ctx, env.ID, name)
}

// Vars lists env's variables with secret values masked.
func (s *Service) Vars(ctx context.Context, env store.Environment) ([]Var, error) {
	stored, err := s.store.ListEnvVars(ctx, env.ID)
	if err != nil {
		return nil, err
	}
	plain, err := Unseal(s.box, stored)
	if err != nil {
		return nil, err
	}
	out := []Var{}
	for _, v := range plain {
		if v.Secret {
			v.Value = mask(v.Value)
		}
		out = append(out, v)
	}
	return out, nil
}

// mask keeps a hint of a secret: its length class and last characters only
// when it is long enough for that to reveal little.
func mask(s string) string {
	if len(s) >= 12 {
		return "••••••" + s[len(s)-3:]
	}
	return "••••••"
}

// Unseal decrypts stored variables with box, for the process environment
// of an instance.
func Unseal(box *secrets.Box, stored []store.EnvVar) ([]Var, error) {
	if len(stored) == 0 {
		return nil, nil
	}
	if box == nil {
		return nil, errors.New("environment variables are stored but no secret key is configured")
	}
	var out []Var
	for _, v := range stored {
		plain, err := box.Unseal(v.Value)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		out = append(out, Var{Name: v.Name, Value: string(plain), Secret: v.Secret})
	}
	return out, nil
}

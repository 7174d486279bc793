package deploy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/slipwayhq/slipway/internal/store"
)

// Var is an environment variable as shown to users: secret values are
// masked (Value holds only a hint), others are shown in full.
type Var struct {
	Name   string
	Value  string
	Secret bool
}

var varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// SetVar sets an environment variable of env, encrypted at rest. It takes
// effect for deployments started from then on.
func (c *Controller) SetVar(ctx context.Context, env store.Environment, name, value string, secret bool) error {
	if !varNameRE.MatchString(name) || len(name) > 256 {
		return fmt.Errorf("invalid variable name %q: use letters, digits and '_', not starting with a digit: %w", name, ErrInvalid)
	}
	if name == "PORT" || strings.HasPrefix(name, "SLIPWAY_") {
		return fmt.Errorf("variable %s is set by Slipway and cannot be overridden: %w", name, ErrInvalid)
	}
	if len(value) > 64<<10 {
		return fmt.Errorf("the value of %s is over 64 KiB: %w", name, ErrInvalid)
	}
	if c.cfg.Secrets == nil {
		return errors.New("environment variables need a secret key (Config.Secrets)")
	}
	return c.store.SetEnvVar(ctx, env.ID, store.EnvVar{Name: name, Value: c.cfg.Secrets.Seal([]byte(value)), Secret: secret})
}

// Vars lists env's variables with secret values masked.
func (c *Controller) Vars(ctx context.Context, env store.Environment) ([]Var, error) {
	plain, err := c.vars(ctx, env.ID)
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

// vars decrypts env's variables.
func (c *Controller) vars(ctx context.Context, envID string) ([]Var, error) {
	stored, err := c.store.ListEnvVars(ctx, envID)
	if err != nil || len(stored) == 0 {
		return nil, err
	}
	if c.cfg.Secrets == nil {
		return nil, errors.New("environment variables are stored but no secret key is configured")
	}
	var out []Var
	for _, v := range stored {
		plain, err := c.cfg.Secrets.Unseal(v.Value)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		out = append(out, Var{Name: v.Name, Value: string(plain), Secret: v.Secret})
	}
	return out, nil
}

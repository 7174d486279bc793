package project

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/slipwayhq/slipway/internal/store"
)

func TestValidateRegistryCredential(t *testing.T) {
	for _, tc := range []struct {
		c  RegistryCredential
		ok bool
	}{
		{RegistryCredential{Registry: "ghcr.io", Username: "u", Password: "p"}, true},
		{RegistryCredential{Registry: "registry.example.com:5000", Username: "u", Password: "p"}, true},
		{RegistryCredential{Registry: "127.0.0.1:5000", Username: "u", Password: "p"}, true},
		{RegistryCredential{Registry: "", Username: "u", Password: "p"}, false},
		{RegistryCredential{Registry: "https://ghcr.io", Username: "u", Password: "p"}, false},
		{RegistryCredential{Registry: "ghcr.io/org", Username: "u", Password: "p"}, false},
		{RegistryCredential{Registry: "ghcr.io", Username: "", Password: "p"}, false},
		{RegistryCredential{Registry: "ghcr.io", Username: "u", Password: ""}, false},
	} {
		err := ValidateRegistryCredential(tc.c)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateRegistryCredential(%+v) = %v, want ok %v", tc.c, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateRegistryCredential(%+v) = %v, not ErrInvalid", tc.c, err)
		}
	}
}

// TestRegistryCredentialsSealed stores credentials and checks that they are
// sealed at rest, listed without passwords, replaced per registry, found
// by an image's registry, and removed.
func TestRegistryCredentialsSealed(t *testing.T) {
	r := newRules(t)
	ctx := context.Background()
	p := func() store.Project {
		p, err := r.store.GetProject(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := r.svc.SetRegistryCredential(ctx, p(), RegistryCredential{Registry: "ghcr.io", Username: "bot", Password: "first-secret"}); err != nil {
		t.Fatal(err)
	}
	if err := r.svc.SetRegistryCredential(ctx, p(), RegistryCredential{Registry: "ghcr.io", Username: "bot", Password: "second-secret"}); err != nil {
		t.Fatal(err)
	}
	if err := r.svc.SetRegistryCredential(ctx, p(), RegistryCredential{Registry: "127.0.0.1:5000", Username: "local", Password: "third-secret"}); err != nil {
		t.Fatal(err)
	}
	sealed := p().RegistryAuth
	for _, s := range []string{"first-secret", "second-secret", "third-secret", "bot"} {
		if bytes.Contains(sealed, []byte(s)) {
			t.Errorf("the stored credentials hold %q in clear", s)
		}
	}
	listed, err := r.svc.RegistryCredentials(p())
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 || listed[0].Registry != "ghcr.io" || listed[0].Username != "bot" || listed[0].Password != "" || listed[1].Password != "" {
		t.Errorf("RegistryCredentials = %+v; want ghcr.io (bot) and 127.0.0.1:5000 without passwords", listed)
	}
	all, err := UnsealRegistryCredentials(r.box, sealed)
	if err != nil {
		t.Fatal(err)
	}
	ref := name.MustParseReference("ghcr.io/org/app:1")
	if c, ok := all.For(ref.Context().Registry); !ok || c.Password != "second-secret" {
		t.Errorf("For(ghcr.io) = %+v, %v; want the second secret", c, ok)
	}
	if _, ok := all.For(name.MustParseReference("quay.io/org/app:1").Context().Registry); ok {
		t.Errorf("For(quay.io) found a credential")
	}
	if err := r.svc.DeleteRegistryCredential(ctx, p(), "ghcr.io"); err != nil {
		t.Fatal(err)
	}
	if err := r.svc.DeleteRegistryCredential(ctx, p(), "ghcr.io"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting a missing credential: %v, want ErrNotFound", err)
	}
	if err := r.svc.DeleteRegistryCredential(ctx, p(), "127.0.0.1:5000"); err != nil {
		t.Fatal(err)
	}
	if p().RegistryAuth != nil {
		t.Errorf("no credentials left, yet something is stored")
	}
}

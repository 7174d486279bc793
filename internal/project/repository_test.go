package project

import (
	"context"
	"errors"
	"testing"

	"github.com/slipwayhq/slipway/internal/store"
)

func TestRepositoryURL(t *testing.T) {
	for _, tc := range []struct {
		in, want  string
		converted bool
	}{
		{"https://github.com/acme/web", "https://github.com/acme/web", false},
		{" http://git.example.com/acme/web.git ", "http://git.example.com/acme/web.git", false},
		{"git@github.com:acme/web.git", "https://github.com/acme/web.git", true},
		{"ssh://git@github.com:22/acme/web.git", "https://github.com/acme/web.git", true},
		{"file:///srv/web", "file:///srv/web", false},
		{"file://host/srv/web", "", false},
		{"https://user:pw@github.com/acme/web", "", false},
		{"https://github.com", "", false},
		{"https://github.com/acme/web?x=1", "", false},
		{"https://github.com/acme web", "", false},
		{"git@github.com", "", false},
		{"-oProxyCommand=x", "", false},
		{"", "", false},
	} {
		got, converted, err := RepositoryURL(tc.in)
		if got != tc.want || converted != tc.converted || (err == nil) != (tc.want != "") {
			t.Errorf("RepositoryURL(%q) = %q, %t, %v; want %q, %t", tc.in, got, converted, err, tc.want, tc.converted)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("RepositoryURL(%q): %v is not ErrInvalid", tc.in, err)
		}
	}
}

func TestLinkRepository(t *testing.T) {
	e := newRules(t)
	ctx := context.Background()
	project := func() store.Project {
		p, err := e.store.GetProject(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := e.svc.SetCloneToken(ctx, project(), "t0ken"); !errors.Is(err, ErrInvalid) {
		t.Errorf("clone token without a link: %v", err)
	}
	if _, err := e.svc.LinkRepository(ctx, project(), RepoLink{URL: "ftp://x/y"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad URL: %v", err)
	}
	if p := project(); p.RepoURL != "" || p.WebhookSecret != nil {
		t.Fatalf("a refused link was stored: %+v", p)
	}

	linked, err := e.svc.LinkRepository(ctx, project(), RepoLink{URL: "git@github.com:acme/web.git", Token: "t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	p := project()
	if !linked.Converted || linked.URL != "https://github.com/acme/web.git" || p.RepoURL != linked.URL {
		t.Errorf("linked %+v, stored %q", linked, p.RepoURL)
	}
	if len(linked.Secret) != 48 || p.WebhookSecret == nil || p.RepoToken == nil {
		t.Fatalf("secret %q, stored secret %v, token %v", linked.Secret, p.WebhookSecret != nil, p.RepoToken != nil)
	}
	if plain, err := e.box.Unseal(p.WebhookSecret); err != nil || string(plain) != linked.Secret {
		t.Errorf("stored secret unseals to %q, %v", plain, err)
	}
	if plain, err := e.box.Unseal(p.RepoToken); err != nil || string(plain) != "t0ken" {
		t.Errorf("stored token unseals to %q, %v", plain, err)
	}

	// Linking again keeps the secret and the token, and hands back nothing.
	again, err := e.svc.LinkRepository(ctx, p, RepoLink{URL: "https://github.com/acme/web2"})
	if err != nil || again.Secret != "" {
		t.Fatalf("relink: %+v, %v", again, err)
	}
	if q := project(); string(q.WebhookSecret) != string(p.WebhookSecret) || string(q.RepoToken) != string(p.RepoToken) {
		t.Error("relinking replaced the secret or the token")
	}
	rotated, err := e.svc.RotateWebhookSecret(ctx, project())
	if err != nil || rotated == "" || rotated == linked.Secret {
		t.Errorf("rotate: %q, %v", rotated, err)
	}
	if err := e.svc.SetCloneToken(ctx, project(), ""); err != nil || project().RepoToken != nil {
		t.Errorf("clearing the token: %v", err)
	}
	if err := e.svc.UnlinkRepository(ctx, project()); err != nil {
		t.Fatal(err)
	}
	if p := project(); p.RepoURL != "" || p.WebhookSecret != nil || p.RepoToken != nil {
		t.Errorf("after unlink: %+v", p)
	}
	if err := e.svc.UnlinkRepository(ctx, project()); !errors.Is(err, ErrInvalid) {
		t.Errorf("unlinking twice: %v", err)
	}
}

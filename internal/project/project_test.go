package project

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/slipwayhq/slipway/internal/store"
)

func TestValidateSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   store.ProjectSettings
		ok   bool
	}{
		{"zero value: every default", store.ProjectSettings{}, true},
		{"all set", store.ProjectSettings{StartCommand: "gunicorn app:app", HealthPath: "/healthz", HealthPort: 8080,
			HealthInterval: "30s", HealthTimeout: "2s", HealthFailures: 100, DeployWindow: "10m", IdleTimeout: "0", BuildTimeout: "1h",
			MemoryBytes: 1 << 28, CPUMillis: 500, Pids: 100, DiskBytes: 1 << 30, RootDirectory: "apps/web", Dockerfile: "Dockerfile.prod"}, true},
		{"failure threshold over 100", store.ProjectSettings{HealthFailures: 101}, false},
		{"health path with a space", store.ProjectSettings{HealthPath: "/a b"}, false},
		{"health path not absolute", store.ProjectSettings{HealthPath: "health"}, false},
		{"start command over 4096", store.ProjectSettings{StartCommand: strings.Repeat("x", 4097)}, false},
		{"start command of 4096", store.ProjectSettings{StartCommand: strings.Repeat("x", 4096)}, true},
		{"start command of two lines", store.ProjectSettings{StartCommand: "a\nb"}, false},
		{"negative port", store.ProjectSettings{HealthPort: -1}, false},
		{"port over 65535", store.ProjectSettings{HealthPort: 65536}, false},
		{"negative threshold", store.ProjectSettings{HealthFailures: -1}, false},
		{"negative memory", store.ProjectSettings{MemoryBytes: -1}, false},
		{"bad interval", store.ProjectSettings{HealthInterval: "often"}, false},
		{"zero timeout", store.ProjectSettings{HealthTimeout: "0s"}, false},
		{"negative window", store.ProjectSettings{DeployWindow: "-5m"}, false},
		{"idle 0 means never", store.ProjectSettings{IdleTimeout: "0"}, true},
		{"bad idle", store.ProjectSettings{IdleTimeout: "soon"}, false},
		{"root directory of two lines", store.ProjectSettings{RootDirectory: "a\nb"}, false},
		{"build timeout", store.ProjectSettings{BuildTimeout: "45m"}, true},
		{"build timeout of 24h", store.ProjectSettings{BuildTimeout: "24h"}, true},
		{"build timeout over 24h", store.ProjectSettings{BuildTimeout: "25h"}, false},
		{"zero build timeout", store.ProjectSettings{BuildTimeout: "0"}, false},
		{"bad build timeout", store.ProjectSettings{BuildTimeout: "forever"}, false},
		{"log retention", store.ProjectSettings{LogMaxAge: "720h", LogMaxBytes: 1 << 30}, true},
		{"log retention of 0", store.ProjectSettings{LogMaxAge: "0"}, false},
		{"bad log retention", store.ProjectSettings{LogMaxAge: "a week"}, false},
		{"negative log size", store.ProjectSettings{LogMaxBytes: -1}, false},
		{"sandbox runc", store.ProjectSettings{Sandbox: "runc"}, true},
		{"sandbox gvisor", store.ProjectSettings{Sandbox: "gvisor"}, true},
		{"sandbox microvm", store.ProjectSettings{Sandbox: "microvm"}, true},
		{"unknown sandbox", store.ProjectSettings{Sandbox: "docker"}, false},
		{"sandbox in capitals", store.ProjectSettings{Sandbox: "GVISOR"}, false},
	} {
		err := ValidateSettings(tc.st)
		if (err == nil) != tc.ok {
			t.Errorf("%s: ValidateSettings = %v, want ok=%t", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v is not ErrInvalid", tc.name, err)
		}
	}
}

func TestUpdateSettingsRefusesWhatValidateRefuses(t *testing.T) {
	r := newRules(t)
	ctx := context.Background()
	p := r.project(t)
	if err := r.svc.UpdateSettings(ctx, p, store.ProjectSettings{HealthFailures: 101}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("UpdateSettings(threshold 101) = %v", err)
	}
	if _, err := r.svc.SetStartCommand(ctx, p, strings.Repeat("x", 5000)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetStartCommand(5000 bytes) = %v", err)
	}
	if got := r.project(t).Settings; got != (store.ProjectSettings{}) {
		t.Errorf("refused settings were stored: %+v", got)
	}
	if _, err := r.svc.SetStartCommand(ctx, p, "./server"); err != nil {
		t.Fatal(err)
	}
	if got := r.project(t).Settings.StartCommand; got != "./server" {
		t.Errorf("start command stored as %q", got)
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web": true, "my-app-2": true, "a": true,
		"": false, "Web": false, "-web": false, "web-": false, "web_app": false, strings.Repeat("a", 64): false,
		"abcdefghijk2": false, // the shape of a deployment id
	} {
		if err := ValidateName("project", name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%t", name, err, ok)
		}
	}
}

func TestBranchDeploysToOneEnvironment(t *testing.T) {
	r := newRules(t)
	ctx := context.Background()
	p := r.project(t)
	if _, err := r.svc.CreateEnvironment(ctx, p, "staging", []string{"main"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("creating an environment on production's branch: %v", err)
	}
	staging, err := r.svc.CreateEnvironment(ctx, p, "staging", []string{"develop", "develop"})
	if err != nil {
		t.Fatal(err)
	}
	if len(staging.Branches) != 1 {
		t.Errorf("repeated branch kept: %v", staging.Branches)
	}
	if _, err := r.svc.SetBranches(ctx, staging, []string{"next", "master"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("mapping production's branch to staging: %v", err)
	}
	if got := r.env(t, "staging").Branches; len(got) != 1 || got[0] != "develop" {
		t.Errorf("a refused mapping changed staging's branches to %v", got)
	}
	// An environment may keep its own branches when they are set again.
	if _, err := r.svc.SetBranches(ctx, r.env(t, "production"), []string{"main", "master", "hotfix"}); err != nil {
		t.Fatal(err)
	}
	if _, env, err := r.svc.Target(ctx, "web", "hotfix"); err != nil || env.Name != "production" {
		t.Errorf("Target(hotfix) = %s, %v", env.Name, err)
	}
	if _, _, err := r.svc.Target(ctx, "web", "feature"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Target(unmapped branch) = %v", err)
	}
	for _, bad := range [][]string{{""}, {"a b"}, {"refs/heads/main"}, {"-x"}} {
		if _, err := r.svc.SetBranches(ctx, staging, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetBranches(%q) = %v", bad, err)
		}
	}
}

// Two environments created at once with the same branch: the store's
// transaction lets one through.
func TestBranchMappingIsOneTransaction(t *testing.T) {
	r := newRules(t)
	ctx := context.Background()
	p := r.project(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = r.svc.CreateEnvironment(ctx, p, "env"+string(rune('a'+i)), []string{"shared"})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("unexpected error: %v", err)
		}
	}
	envs, _ := r.store.ListEnvironments(ctx, p.ID)
	claim := 0
	for _, e := range envs {
		for _, b := range e.Branches {
			if b == "shared" {
				claim++
			}
		}
	}
	if won != 1 || claim != 1 {
		t.Errorf("%d creations succeeded and %d environments claim the branch; want 1 and 1", won, claim)
	}
}

func TestDomains(t *testing.T) {
	r := newRules(t)
	ctx := context.Background()
	prod := r.env(t, "production")
	if _, err := r.svc.AddDomain(ctx, prod, " WWW.Example.COM. "); err != nil {
		t.Fatal(err)
	}
	doms, _ := r.store.ListDomains(ctx, prod.ID)
	if len(doms) != 1 || doms[0].Name != "www.example.com" {
		t.Errorf("stored domains: %+v", doms)
	}
	if len(r.life.rerouted) != 1 || r.life.rerouted[0] != prod.ID {
		t.Errorf("adding a domain rerouted %v", r.life.rerouted)
	}
	// Slipway's own names (another project's hostnames among them) and IP
	// literals are nobody's custom domain.
	for _, bad := range []string{"", "exa mple.com", "example.com:8080", "[::1]", "a..b", "10.0.0.1",
		"apps.test", "web.apps.test", "other.apps.test", "other-production.apps.test", "a.b.apps.test"} {
		if _, err := r.svc.AddDomain(ctx, prod, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddDomain(%q) = %v", bad, err)
		}
	}
	staging, _ := r.svc.CreateEnvironment(ctx, r.project(t), "staging", nil)
	if _, err := r.svc.AddDomain(ctx, staging, "www.example.com"); !errors.Is(err, store.ErrExists) {
		t.Errorf("a second environment took the domain: %v", err)
	}
	if err := r.svc.RemoveDomain(ctx, staging, "www.example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("staging removed production's domain: %v", err)
	}
	if err := r.svc.RemoveDomain(ctx, prod, "www.example.com"); err != nil {
		t.Fatal(err)
	}
	if len(r.life.gone) != 1 || r.life.gone[0] != "www.example.com" {
		t.Errorf("removing a domain unrouted %v", r.life.gone)
	}
}

func TestDeleteEnvironment(t *testing.T) {
	r := newRules(t)
	ctx := context.Background()
	p := r.project(t)
	if err := r.svc.DeleteEnvironment(ctx, p, r.env(t, "production")); !errors.Is(err, ErrInvalid) {
		t.Errorf("deleting production: %v", err)
	}
	staging, _ := r.svc.CreateEnvironment(ctx, p, "staging", []string{"develop"})
	if _, err := r.svc.AddDomain(ctx, staging, "staging.example.com"); err != nil {
		t.Fatal(err)
	}
	d, err := r.store.CreateDeployment(ctx, store.Deployment{ProjectID: p.ID, EnvironmentID: staging.ID, Status: "RUNNING"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.svc.DeleteEnvironment(ctx, p, staging); err != nil {
		t.Fatal(err)
	}
	if len(r.life.stopped) != 1 || r.life.stopped[0] != d.ID {
		t.Errorf("stopped %v, want [%s]", r.life.stopped, d.ID)
	}
	want := map[string]bool{"web-staging.apps.test": true, "staging.example.com": true, d.ID + ".apps.test": true}
	for _, h := range r.life.gone {
		delete(want, h)
	}
	if len(want) != 0 {
		t.Errorf("hostnames left routed: %v (unrouted %v)", want, r.life.gone)
	}
	if _, err := r.store.GetEnvironment(ctx, p.ID, "staging"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("staging still there: %v", err)
	}
}

func TestVars(t *testing.T) {
	r := newRules(t)
	ctx := context.Background()
	prod := r.env(t, "production")
	if err := r.svc.SetVar(ctx, prod, "DATABASE_URL", "postgres://u:hunter2@db/app", true); err != nil {
		t.Fatal(err)
	}
	if err := r.svc.SetVar(ctx, prod, "MODE", "debug", false); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"PORT", "SLIPWAY_X", "1A", "A-B", ""} {
		if err := r.svc.SetVar(ctx, prod, bad, "1", false); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetVar(%q) = %v", bad, err)
		}
	}
	if err := r.svc.SetVar(ctx, prod, "BIG", strings.Repeat("x", MaxVarValue+1), false); !errors.Is(err, ErrInvalid) {
		t.Errorf("a value over 64 KiB: %v", err)
	}
	vars, err := r.svc.Vars(ctx, prod)
	if err != nil || len(vars) != 2 {
		t.Fatalf("Vars = %+v, %v", vars, err)
	}
	for _, v := range vars {
		if v.Name == "DATABASE_URL" && (strings.Contains(v.Value, "hunter2") || !v.Secret) {
			t.Errorf("secret shown: %+v", v)
		}
		if v.Name == "MODE" && v.Value != "debug" {
			t.Errorf("plain variable shown as %q", v.Value)
		}
	}
	stored, _ := r.store.ListEnvVars(ctx, prod.ID)
	for _, v := range stored {
		if bytes.Contains(v.Value, []byte("hunter2")) {
			t.Error("variable stored in clear")
		}
	}
	plain, err := Unseal(r.box, stored)
	if err != nil || len(plain) != 2 {
		t.Fatalf("Unseal = %+v, %v", plain, err)
	}
	if err := r.svc.DeleteVar(ctx, prod, "MODE"); err != nil {
		t.Fatal(err)
	}
	if err := r.svc.DeleteVar(ctx, prod, "MODE"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
}

func TestHosts(t *testing.T) {
	h := Hosts{Base: "apps.test"}
	prod := store.Environment{ID: "e1", Name: "production", CurrentDeploymentID: "d1"}
	d := store.Deployment{ID: "d1", ProjectName: "web"}
	got := strings.Join(h.Of(d, prod, []store.Domain{{Name: "www.example.com"}}), " ")
	if want := "d1.apps.test web.apps.test web-production.apps.test www.example.com"; got != want {
		t.Errorf("Of(current) = %s, want %s", got, want)
	}
	old := store.Deployment{ID: "d0", ProjectName: "web"}
	if got := h.Of(old, prod, nil); len(got) != 1 || got[0] != "d0.apps.test" {
		t.Errorf("Of(not current) = %v", got)
	}
	if got := (Hosts{}).Project("web"); got != "web.slipway.localhost" {
		t.Errorf("zero Hosts: %s", got)
	}
}

func TestFromInternal(t *testing.T) {
	h := Hosts{Base: "apps.test"}
	for in, want := range map[string]string{
		"web.internal":             "web.apps.test",
		"Web-Staging.internal.":    "web-staging.apps.test",
		"abcdefghijk2.internal":    "abcdefghijk2.apps.test",
		"db.web.internal":          "",
		"internal":                 "",
		".internal":                "",
		"web.apps.test":            "",
		"web.internal.example.com": "",
	} {
		got, ok := h.FromInternal(in)
		if got != want || ok != (want != "") {
			t.Errorf("FromInternal(%q) = %q, %t; want %q", in, got, ok, want)
		}
	}
}

// Project web-production and the production environment of web would
// share web-production.<base>: whichever comes second is refused.
func TestGeneratedHostnamesDontCollide(t *testing.T) {
	r := newRules(t)
	ctx := context.Background()
	if _, err := r.svc.Create(ctx, "web-production"); !errors.Is(err, store.ErrExists) {
		t.Errorf("project web-production beside web's production: %v", err)
	}
	if _, err := r.svc.Create(ctx, "api-staging"); err != nil {
		t.Fatal(err)
	}
	api, err := r.svc.Create(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.CreateEnvironment(ctx, api, "staging", nil); !errors.Is(err, store.ErrExists) {
		t.Errorf("environment staging of api beside project api-staging: %v", err)
	}
	if _, err := r.svc.CreateEnvironment(ctx, api, "preview", nil); err != nil {
		t.Errorf("a free environment name: %v", err)
	}
}

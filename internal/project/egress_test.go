package project

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/slipwayhq/slipway/internal/store"
)

func TestParseEgressRule(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":        "10.0.0.0/8",
		"10.1.2.3":          "10.1.2.3/32",
		"10.1.2.3:5432":     "10.1.2.3/32:5432",
		" 10.1.2.9/24:80 ":  "10.1.2.0/24:80",
		"192.168.1.10/32:1": "192.168.1.10/32:1",
		"192.168.1.10:5432": "192.168.1.10/32:5432",
		" 10.1.2.3/8 ":      "10.0.0.0/8",
		"0.0.0.0/0:53":      "0.0.0.0/0:53",
	} {
		r, err := ParseEgressRule(in)
		if err != nil || r.String() != want {
			t.Errorf("ParseEgressRule(%q) = %s, %v; want %s", in, r, err, want)
		}
		// What String writes, ParseEgressRule reads back as the same rule.
		if back, err := ParseEgressRule(r.String()); err != nil || back != r {
			t.Errorf("round trip of %s: %s, %v", r, back, err)
		}
	}
	for _, bad := range []string{"", "host.example", "10.0.0.0/33", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:", "fd00::/8", "[fd00::1]:80", "10.0.0.1:x",
		"fd00::1", "::ffff:10.0.0.1", "10.0.0.0/8:0", "10.0.0.0/8:65536", "10.0.0.0/8:"} {
		if _, err := ParseEgressRule(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseEgressRule(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

type firewall struct {
	mu  sync.Mutex
	got map[string]Egress
}

func (f *firewall) SetEgress(projectID string, e Egress) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got[projectID] = e
	return nil
}

func TestEgressIsStoredThenApplied(t *testing.T) {
	r := newRules(t)
	fw := &firewall{got: map[string]Egress{}}
	r.svc.firewall = fw
	ctx := context.Background()
	if _, err := r.svc.AllowEgress(ctx, r.project(t), "10.77.0.5:5432"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.AllowEgress(ctx, r.project(t), "10.77.0.5/32:5432"); err != nil {
		t.Fatal(err)
	}
	p := r.project(t)
	if len(p.Egress.Allow) != 1 || p.Egress.Allow[0] != "10.77.0.5/32:5432" {
		t.Errorf("stored allow rules %q", p.Egress.Allow)
	}
	if got := fw.got[p.ID]; len(got.Allow) != 1 || got.Allow[0].Port != 5432 || got.None {
		t.Errorf("applied %+v", got)
	}
	if _, err := r.svc.DenyEgress(ctx, p, "10.9.9.9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("denying a rule that is not there: %v", err)
	}
	if _, err := r.svc.SetEgressNone(ctx, p, true); err != nil {
		t.Fatal(err)
	}
	if !fw.got[p.ID].None || !r.project(t).Egress.None {
		t.Error("none was not stored and applied")
	}
	if _, err := r.svc.DenyEgress(ctx, r.project(t), "10.77.0.5:5432"); err != nil {
		t.Fatal(err)
	}
	if got := r.project(t).Egress; len(got.Allow) != 0 || !got.None {
		t.Errorf("after deny: %+v", got)
	}
	if _, err := r.svc.AllowEgress(ctx, r.project(t), "nope"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad rule: %v", err)
	}
}

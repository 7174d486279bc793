package project

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// rules is a Service over a real store, with a lifecycle that records what
// it is asked to do (the rules' side of the seam, not the lifecycle's).
type rules struct {
	svc   *Service
	store *store.Store
	box   *secrets.Box
	life  *lifecycle
}

type lifecycle struct {
	mu       sync.Mutex
	stopped  []string
	rerouted []string // environment ids
	gone     []string
}

func (l *lifecycle) Stop(_ context.Context, id string) (store.Deployment, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = append(l.stopped, id)
	return store.Deployment{ID: id, Status: "STOPPED"}, nil
}

func (l *lifecycle) Reroute(_ context.Context, env store.Environment, gone []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rerouted = append(l.rerouted, env.ID)
	l.gone = append(l.gone, gone...)
}

// newRules returns rules over a fresh store holding a project "web".
func newRules(t *testing.T) *rules {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	box, err := secrets.Open(filepath.Join(dir, "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	r := &rules{store: st, box: box, life: &lifecycle{}}
	if r.svc, err = New(Config{Store: st, Lifecycle: r.life, Secrets: box, Hosts: Hosts{Base: "apps.test"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Create(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rules) project(t *testing.T) store.Project {
	t.Helper()
	p, err := r.store.GetProject(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *rules) env(t *testing.T, name string) store.Environment {
	t.Helper()
	e, err := r.store.GetEnvironment(context.Background(), r.project(t).ID, name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

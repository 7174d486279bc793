package router_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/slipwayhq/slipway/internal/router"
)

func TestTable(t *testing.T) {
	var tab router.Table
	if _, ok := tab.Lookup("app.example.com"); ok {
		t.Fatal("zero Table has a route")
	}

	tab.Set("App.Example.COM.", router.Route{Deployment: "d1", Project: "app"})
	tab.Set("bad host", router.Route{Deployment: "d9"}) // ignored
	for _, h := range []string{"app.example.com", "APP.example.com:80", "app.example.com."} {
		r, ok := tab.Lookup(h)
		if !ok || r.Deployment != "d1" || r.Project != "app" {
			t.Errorf("Lookup(%q) = %+v, %v; want d1", h, r, ok)
		}
	}
	if _, ok := tab.Lookup("bad host"); ok {
		t.Error("invalid host was stored")
	}

	tab.Set("app.example.com", router.Route{Deployment: "d2"})
	if r, _ := tab.Lookup("app.example.com"); r.Deployment != "d2" {
		t.Errorf("after Set, Lookup = %q; want d2", r.Deployment)
	}

	tab.Update(func(m map[string]router.Route) {
		if len(m) != 1 || m["app.example.com"].Deployment != "d2" {
			t.Errorf("Update sees %v; want one canonical entry", m)
		}
		m["app.example.com"] = router.Route{Deployment: "d3"}
		m["Other.Example.com:8080"] = router.Route{Deployment: "d3", State: router.Stopped}
		m["in valid"] = router.Route{Deployment: "d3"}
	})
	if r, _ := tab.Lookup("app.example.com"); r.Deployment != "d3" {
		t.Errorf("after Update, Lookup = %q; want d3", r.Deployment)
	}
	if r, ok := tab.Lookup("other.example.com"); !ok || r.State != router.Stopped {
		t.Errorf("after Update, Lookup(other) = %+v, %v; want stopped d3", r, ok)
	}

	func() {
		defer func() { recover() }()
		tab.Update(func(m map[string]router.Route) {
			clear(m)
			panic("boom")
		})
	}()
	if _, ok := tab.Lookup("app.example.com"); !ok {
		t.Error("a panicking Update changed the table")
	}

	tab.Delete("APP.example.com.")
	tab.Delete("never.example.com")
	if _, ok := tab.Lookup("app.example.com"); ok {
		t.Error("Delete left the route")
	}
	if _, ok := tab.Lookup("other.example.com"); !ok {
		t.Error("Delete removed another host")
	}
}

// TestTableConcurrent runs readers against writers; run with -race.
func TestTableConcurrent(t *testing.T) {
	var tab router.Table
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range 200 {
				h := fmt.Sprintf("h%d.example.com", i%20)
				switch i % 3 {
				case 0:
					tab.Set(h, router.Route{Deployment: fmt.Sprintf("d%d", w)})
				case 1:
					tab.Delete(h)
				default:
					tab.Update(func(m map[string]router.Route) {
						m[h] = router.Route{Deployment: "u"}
					})
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for i := range 2000 {
				if r, ok := tab.Lookup(fmt.Sprintf("h%d.example.com", i%20)); ok && r.Deployment == "" {
					t.Error("lookup saw an empty route")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestStateString(t *testing.T) {
	for s, want := range map[router.State]string{
		router.Serving: "serving", router.Deploying: "deploying",
		router.Stopped: "stopped", router.Failed: "failed", 99: "unknown",
	} {
		if s.String() != want {
			t.Errorf("State(%d).String() = %q; want %q", s, s.String(), want)
		}
	}
}

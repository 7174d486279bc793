package web

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/slipwayhq/slipway/internal/drain"
	"github.com/slipwayhq/slipway/internal/notify"
	"github.com/slipwayhq/slipway/internal/project"
)

func TestNotificationsPage(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	ctx := context.Background()
	p := e.project("site")
	n, err := notify.New(notify.Config{Store: e.st, Secrets: e.box, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(n.Close)
	dr, err := drain.New(drain.Config{Store: e.st, Secrets: e.box, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	dr.Start(ctx)
	t.Cleanup(dr.Close)
	rules, err := project.New(project.Config{Store: e.st, Lifecycle: e.ctl, Secrets: e.box})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{Store: e.st, Deploy: e.ctl, Projects: rules, RouterPort: e.appPort, Log: testLog(t),
		Notify: n, Drains: dr}))
	t.Cleanup(srv.Close)
	withNotify := *e
	withNotify.srv = srv
	c := withNotify.client()
	c.signIn()

	var mu sync.Mutex
	var bodies [][]byte
	var sigs []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, sigs = append(bodies, b), append(sigs, r.Header.Get(notify.SignatureHeader))
		mu.Unlock()
	}))
	defer recv.Close()

	page := func() string { return html.UnescapeString(c.get("/projects/site/settings/notifications").body) }
	post := func(path string, form url.Values, to string) {
		t.Helper()
		r := c.post(path, form)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != to {
			t.Fatalf("POST %s: %d %q, want a redirect to %s", path, r.status, r.header.Get("Location"), to)
		}
	}
	mustContain(t, "settings", c.get("/projects/site/settings").body, `href="/projects/site/settings/notifications"`)
	mustContain(t, "empty page", page(), "No webhooks.", "No log drains.", `name="events" value="app.woke">`,
		`name="events" value="deployment.failed" checked>`)

	post("/projects/site/notifications", url.Values{"url": {"ftp://nope"}}, "/projects/site/settings/notifications#webhooks")
	mustContain(t, "after a bad URL", page(), "flash-error", "The webhook URL must be an http or https URL.")

	post("/projects/site/notifications", url.Values{"url": {recv.URL + "/hook/tok3n-abcd"}, "format": {"slack"},
		"events": {"deployment.failed", "app.woke"}}, "/projects/site/settings/notifications#webhooks")
	hooks, err := n.List(ctx, p)
	if err != nil || len(hooks) != 1 {
		t.Fatal(hooks, err)
	}
	hook := hooks[0]
	first := page()
	m := regexp.MustCompile(`data-secret>([0-9a-f]{48})</code>`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("the new secret is not shown:\n%s", first)
	}
	secret := m[1]
	mustContain(t, "page after adding", first, "Webhook "+hook.ID+" added", "shown this once", recv.URL+"/…abcd",
		`<span class="chip">deployment.failed</span> <span class="chip">app.woke</span>`)
	if again := page(); strings.Contains(again, secret) || strings.Contains(again, "tok3n") {
		t.Error("the secret or the URL's token was shown again")
	}

	post("/projects/site/notifications/test", url.Values{"id": {hook.ID}}, "/projects/site/settings/notifications#hook-"+hook.ID)
	mustContain(t, "page after a test", page(), "Test delivered to webhook "+hook.ID+" (HTTP 200).", "<code>test</code>", "delivered")
	mu.Lock()
	if len(bodies) != 1 || !notify.Verify([]byte(secret), bodies[0], sigs[0]) || !strings.Contains(string(bodies[0]), `"text":`) {
		t.Errorf("received %q", bodies)
	}
	mu.Unlock()

	post("/projects/site/drains", url.Values{"url": {"tcp://127.0.0.1:9"}}, "/projects/site/settings/notifications#webhooks")
	mustContain(t, "after a bad drain", page(), "flash-error", "syslog+tls://HOST:PORT")
	post("/projects/site/drains", url.Values{"url": {"syslog://127.0.0.1:9"}}, "/projects/site/settings/notifications#drains")
	ds, _ := dr.List(ctx, p)
	if len(ds) != 1 {
		t.Fatalf("drains %+v", ds)
	}
	mustContain(t, "page with a drain", page(), "Log drain "+ds[0].ID+" added", "<code class=\"wrap\">syslog://127.0.0.1:9</code>")

	post("/projects/site/drains/delete", url.Values{"id": {ds[0].ID}}, "/projects/site/settings/notifications#drains")
	post("/projects/site/notifications/delete", url.Values{"id": {hook.ID}}, "/projects/site/settings/notifications#webhooks")
	mustContain(t, "page after removing", page(), "No webhooks.", "No log drains.")
}

package web

import (
	"context"
	"net/http"
	"net/url"
	"testing"
)

// TestPreviewsSwitch: the Git & GitHub section turns pull-request
// previews on and off; the general settings form leaves the switch as it
// is.
func TestPreviewsSwitch(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	e.project("web")
	c := e.client()
	c.signIn()
	p := c.get("/projects/web/settings")
	mustContain(t, "settings page", p.body, "Pull-request previews", `action="/projects/web/previews"`, "web-pr-&lt;number&gt;.slipway.localhost")
	r := c.post("/projects/web/previews", url.Values{"previews": {"on"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/projects/web/settings#previews" {
		t.Fatalf("turning previews on: %d %q", r.status, r.header.Get("Location"))
	}
	if got, _ := e.st.GetProject(context.Background(), "web"); !got.Settings.Previews {
		t.Fatal("previews are not on")
	}
	mustContain(t, "settings page", c.get("/projects/web/settings").body, "checked", "Pull requests (for previews)")
	c.post("/projects/web/settings", url.Values{"startCommand": {"./serve"}})
	if got, _ := e.st.GetProject(context.Background(), "web"); !got.Settings.Previews || got.Settings.StartCommand != "./serve" {
		t.Errorf("after saving the general settings: %+v", got.Settings)
	}
	c.post("/projects/web/previews", url.Values{})
	if got, _ := e.st.GetProject(context.Background(), "web"); got.Settings.Previews {
		t.Error("previews are still on")
	}
}

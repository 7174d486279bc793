package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/store"
)

func TestSignInRequired(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	e.project("web")
	c := e.client()
	for _, path := range []string{"/", "/projects/web", "/projects/web/settings", "/deployments/abcdefghijkl"} {
		r := c.get(path)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login?next="+url.QueryEscape(path) {
			t.Errorf("GET %s signed out: %d, Location %q", path, r.status, r.header.Get("Location"))
		}
	}
	for _, path := range []string{"/live?scope=projects", "/deployments/abcdefghijkl/logs", "/deployments/abcdefghijkl/build-log/stream"} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
		req.Header.Set("Accept", "text/event-stream")
		if r := c.do(req); r.status != http.StatusUnauthorized {
			t.Errorf("GET %s signed out: %d, want 401", path, r.status)
		}
	}
	if r := c.post("/projects", url.Values{"name": {"sneaky"}}); r.status != http.StatusSeeOther || r.header.Get("Location") != "/login?next=%2F" {
		t.Errorf("POST /projects signed out: %d %q, want a redirect to sign in", r.status, r.header.Get("Location"))
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/projects", strings.NewReader("name=sneaky"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if r := c.do(req); r.status != http.StatusUnauthorized {
		t.Errorf("POST /projects signed out, not a browser: %d, want 401", r.status)
	}
	if _, err := e.st.GetProject(context.Background(), "sneaky"); err == nil {
		t.Error("a signed-out POST created a project")
	}
	// The sign-in page and assets need no session.
	if r := c.get("/login"); r.status != http.StatusOK || !strings.Contains(r.body, `name="secret"`) {
		t.Errorf("GET /login: %d", r.status)
	}
	if r := c.get(e.handler.(*handler).assets.url("app.css")); r.status != http.StatusOK ||
		!strings.Contains(r.header.Get("Cache-Control"), "immutable") {
		t.Errorf("GET app.css: %d, Cache-Control %q", r.status, r.header.Get("Cache-Control"))
	}
}

func TestSignIn(t *testing.T) {
	e := newTestEnv(t, envOptions{adminPassword: "correct horse"})
	h := e.handler.(*handler)

	c := e.client()
	r := c.post("/login", url.Values{"secret": {"sw_wrong"}, "_csrf": {"-"}})
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "not valid") {
		t.Fatalf("wrong token: %d", r.status)
	}
	r = c.post("/login", url.Values{"secret": {testToken}, "next": {"/projects/x?a=1"}, "_csrf": {"-"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/projects/x?a=1" {
		t.Fatalf("token sign-in: %d, Location %q", r.status, r.header.Get("Location"))
	}
	cookie := r.header.Get("Set-Cookie")
	for _, want := range []string{sessionCookie + "=", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("session cookie %q lacks %s", cookie, want)
		}
	}
	if p := c.get("/"); p.status != http.StatusOK || !strings.Contains(p.body, ">admin</span>") {
		t.Errorf("signed in with the token named admin: %d", p.status)
	}

	// An open redirect through next is refused.
	r = e.client().post("/login", url.Values{"secret": {testToken}, "next": {"//evil.example/"}, "_csrf": {"-"}})
	if loc := r.header.Get("Location"); loc != "/" {
		t.Errorf("next=//evil.example/ redirected to %q", loc)
	}

	// The admin password signs in too.
	a := e.client()
	if r := a.post("/login", url.Values{"secret": {"correct horse"}, "_csrf": {"-"}}); r.status != http.StatusSeeOther {
		t.Fatalf("admin password: %d", r.status)
	}
	if p := a.get("/"); p.status != http.StatusOK {
		t.Errorf("after admin sign-in: %d", p.status)
	}

	// Forged, tampered and expired sessions are refused.
	valid := h.encodeSession(session{Subject: "admin", SID: "x", Expires: time.Now().Add(time.Hour)})
	expired := h.encodeSession(session{Subject: "admin", SID: "x", Expires: time.Now().Add(-time.Second)})
	payload, sig, _ := strings.Cut(valid, ".")
	tampered := b64.EncodeToString([]byte("admin|y|99999999999")) + "." + sig
	for name, v := range map[string]string{"valid": valid, "expired": expired, "tampered": tampered, "unsigned": payload, "garbage": "x.y"} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/", nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
		got := e.client().do(req).status
		if want := http.StatusSeeOther; name == "valid" {
			if got != http.StatusOK {
				t.Errorf("%s session: %d, want 200", name, got)
			}
		} else if got != want {
			t.Errorf("%s session: %d, want %d", name, got, want)
		}
	}

	// Sign out ends the session in the browser.
	if r := c.post("/logout", nil); r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout: %d %q", r.status, r.header.Get("Set-Cookie"))
	}
	if p := c.get("/"); p.status != http.StatusSeeOther {
		t.Errorf("after sign-out: %d", p.status)
	}
}

func TestSignInRateLimited(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	c := e.client()
	for i := 0; i < maxLoginFailures; i++ {
		if r := c.post("/login", url.Values{"secret": {"nope"}, "_csrf": {"-"}}); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, r.status)
		}
	}
	if r := c.post("/login", url.Values{"secret": {testToken}, "_csrf": {"-"}}); r.status != http.StatusTooManyRequests {
		t.Errorf("after %d failures: %d, want 429", maxLoginFailures, r.status)
	}
}

func TestCSRF(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	c := e.client()
	c.signIn()
	for name, form := range map[string]url.Values{
		"no token":    {"name": {"a1"}, "_csrf": {"-"}},
		"wrong token": {"name": {"a2"}, "_csrf": {"bm9wZQ"}},
	} {
		if r := c.post("/projects", form); r.status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, r.status)
		}
	}
	// A token from another session does not work either.
	other := e.client()
	other.signIn()
	if r := c.post("/projects", url.Values{"name": {"a3"}, "_csrf": {other.csrf}}); r.status != http.StatusForbidden {
		t.Errorf("another session's token: %d, want 403", r.status)
	}
	// A cross-site request is refused even with the right token.
	form := url.Values{"name": {"a4"}, "_csrf": {c.csrf}}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/projects", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	if r := c.do(req); r.status != http.StatusForbidden {
		t.Errorf("cross-site POST: %d, want 403", r.status)
	}
	// Sign-in itself refuses cross-site posts (login CSRF).
	req, _ = http.NewRequest(http.MethodPost, e.srv.URL+"/login", strings.NewReader("secret="+testToken))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := e.client().do(req); r.status != http.StatusForbidden {
		t.Errorf("cross-site sign-in: %d, want 403", r.status)
	}
	ps, _ := e.st.ListProjects(context.Background())
	if len(ps) != 0 {
		t.Fatalf("refused requests created %d projects", len(ps))
	}
	// The same form with the token goes through.
	if r := c.post("/projects", url.Values{"name": {"a5"}}); r.status != http.StatusSeeOther || r.header.Get("Location") != "/projects/a5" {
		t.Fatalf("good POST: %d %q", r.status, r.header.Get("Location"))
	}
	if _, err := e.st.GetProject(context.Background(), "a5"); err != nil {
		t.Fatal(err)
	}
}

func TestPages(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	ctx := context.Background()
	c := e.client()
	c.signIn()

	// Create a project through the form; invalid names are refused with a
	// message.
	if r := c.post("/projects", url.Values{"name": {"Bad_Name"}, "back": {"/"}}); r.status != http.StatusSeeOther {
		t.Fatalf("bad name: %d", r.status)
	}
	if p := c.get("/"); !strings.Contains(p.body, "Invalid project name") {
		t.Error("the error about a bad project name was not shown")
	}
	if r := c.post("/projects", url.Values{"name": {"shop"}}); r.status != http.StatusSeeOther {
		t.Fatalf("create project: %d", r.status)
	}
	p := c.get("/projects/shop")
	mustContain(t, "empty project page", p.body, "Project shop created", "No deployments yet", "slipway deploy . --project shop", "/git/shop.git")

	first := e.deploy("shop", deploy.CreateRequest{Promote: true, Branch: "main", CommitSHA: "0123456789abcdef", Message: "First <commit>\n\nbody", Author: "Ada"})
	e.waitStatus(first.ID, deploy.Running)
	failed := e.deploy("shop", deploy.CreateRequest{Promote: true, Branch: "fix", Message: "Broken"}, "FAIL")
	failed = e.waitStatus(failed.ID, deploy.Failed)
	second := e.deploy("shop", deploy.CreateRequest{Promote: true, Branch: "main", CommitSHA: "fedcba9876543210", Message: "Second", Author: "Grace"})
	e.waitStatus(second.ID, deploy.Running)

	// Projects list: current deployment, status, default hostname.
	p = c.get("/")
	mustContain(t, "projects page", p.body, `href="/projects/shop"`, "shop.slipway.localhost", second.ID, "st-running", "Second")

	// Project page: environments, every deployment with its metadata.
	p = c.get("/projects/shop")
	mustContain(t, "project page", p.body, "production", "shop-production.slipway.localhost",
		first.ID, second.ID, failed.ID, "0123456", "First &lt;commit&gt;", "Ada", "upload", "st-failed",
		`<span class="summary summary-successful">successful</span>`, `<span class="summary summary-failed">failed</span>`,
		`data-current="`+second.ID+`"`, "Roll back")
	if strings.Contains(p.body, "First <commit>") {
		t.Error("a commit message was not escaped")
	}
	// Filters.
	p = c.get("/projects/shop?status=FAILED")
	if !strings.Contains(p.body, failed.ID) || strings.Contains(p.body, `id="dep-`+second.ID) {
		t.Error("status filter FAILED shows the wrong deployments")
	}
	p = c.get("/projects/shop?environment=production&status=RUNNING")
	if strings.Contains(p.body, `id="dep-`+failed.ID) || !strings.Contains(p.body, `id="dep-`+first.ID) {
		t.Error("filter production+RUNNING shows the wrong deployments")
	}
	if r := c.get("/projects/shop?environment=nope"); r.status != http.StatusNotFound {
		t.Errorf("unknown environment filter: %d", r.status)
	}
	if r := c.get("/projects/nope"); r.status != http.StatusNotFound || !strings.Contains(r.body, "not found") {
		t.Errorf("unknown project: %d", r.status)
	}

	// Deployment page.
	p = c.get("/deployments/" + second.ID)
	mustContain(t, "deployment page", p.body, second.ID+".slipway.localhost", "shop.slipway.localhost",
		"fedcba9876543210", "Grace", "Initializing", "Building", "Deploying", "current on production",
		"ph-done", "build-log/stream", "the image’s own entrypoint")
	p = c.get("/deployments/" + failed.ID)
	mustContain(t, "failed deployment page", p.body, "build failed", "ph-failed")

	// Build log as text and as a stream that ends.
	r := c.get("/deployments/" + second.ID + "/build-log.txt")
	mustContain(t, "build log", r.body, "#1 [1/1] building", "#1 DONE", "status DEPLOYING → RUNNING")
	events := readSSE(t, e.srv.URL+"/deployments/"+second.ID+"/build-log/stream", c, "end")
	if n := countEvents(events, "line"); n < 5 {
		t.Errorf("build log stream sent %d lines", n)
	}

	// Rollback: promote the first deployment; the current one changes.
	if r := c.post("/deployments/"+first.ID+"/promote", url.Values{"back": {"/projects/shop"}}); r.status != http.StatusSeeOther || r.header.Get("Location") != "/projects/shop" {
		t.Fatalf("promote: %d %q", r.status, r.header.Get("Location"))
	}
	env, _ := e.st.GetEnvironment(ctx, first.ProjectID, "production")
	if env.CurrentDeploymentID != first.ID {
		t.Fatalf("after rollback, current is %s, want %s", env.CurrentDeploymentID, first.ID)
	}
	p = c.get("/projects/shop")
	mustContain(t, "project page after rollback", p.body, "is now the current deployment of production", `data-current="`+first.ID+`"`)
	// Promoting a failed deployment is refused with a message.
	c.post("/deployments/"+failed.ID+"/promote", url.Values{"back": {"/projects/shop"}})
	p = c.get("/projects/shop")
	mustContain(t, "project page", p.body, "only a RUNNING deployment can be promoted")

	// Redeploy (image reused) and stop.
	r = c.post("/deployments/"+second.ID+"/redeploy", nil)
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/deployments/") {
		t.Fatalf("redeploy: %d %q", r.status, r.header.Get("Location"))
	}
	re := strings.TrimPrefix(r.header.Get("Location"), "/deployments/")
	d := e.waitStatus(re, deploy.Running)
	if d.Trigger != "redeploy" {
		t.Errorf("redeploy trigger %q", d.Trigger)
	}
	if r := c.post("/deployments/"+re+"/stop", nil); r.status != http.StatusSeeOther {
		t.Fatalf("stop: %d", r.status)
	}
	e.waitStatus(re, deploy.Stopped)
}

func TestSettings(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	ctx := context.Background()
	proj := e.project("api")
	c := e.client()
	c.signIn()

	p := c.get("/projects/api/settings")
	mustContain(t, "settings page", p.body, "Start command", "Health check", "/hooks/github/api", "/git/api.git", "production")
	if strings.Contains(p.body, "TODO(webhooks)") {
		// The marker is a template comment, not part of the page.
		t.Error("template comment leaked into the page")
	}

	// General settings round-trip; invalid values are refused.
	r := c.post("/projects/api/settings", url.Values{"startCommand": {"./server --port $PORT"}, "healthPath": {"/healthz"},
		"healthPort": {"8080"}, "healthInterval": {"10s"}, "healthTimeout": {"2s"}, "healthFailures": {"5"},
		"deployWindow": {"2m"}, "idleTimeout": {"0"}, "sandbox": {"gvisor"}, "noSnapshots": {"on"}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("save settings: %d", r.status)
	}
	got, _ := e.st.GetProject(ctx, "api")
	want := store.ProjectSettings{StartCommand: "./server --port $PORT", HealthPath: "/healthz", HealthPort: 8080,
		HealthInterval: "10s", HealthTimeout: "2s", HealthFailures: 5, DeployWindow: "2m", IdleTimeout: "0", Sandbox: "gvisor", NoSnapshots: true}
	if got.Settings != want {
		t.Errorf("settings = %+v, want %+v", got.Settings, want)
	}
	for field, bad := range map[string]string{"healthPort": "70000", "healthInterval": "soon", "healthPath": "healthz", "idleTimeout": "-5s", "sandbox": "docker"} {
		form := url.Values{field: {bad}}
		c.post("/projects/api/settings", form)
		if p := c.get("/projects/api/settings"); !strings.Contains(p.body, "flash-error") {
			t.Errorf("%s=%q was not refused", field, bad)
		}
	}
	got, _ = e.st.GetProject(ctx, "api")
	if got.Settings != want {
		t.Errorf("refused forms changed settings to %+v", got.Settings)
	}
	p = c.get("/projects/api/settings")
	mustContain(t, "settings page", p.body, `value="./server --port $PORT"`, `value="/healthz"`,
		`<option value="gvisor" selected>gvisor (not available on this server)</option>`, `<option value="">server default (fake)</option>`)

	// Environment variables: secrets are masked, plain values shown.
	for _, v := range []url.Values{
		{"env": {"production"}, "name": {"DATABASE_URL"}, "value": {"postgres://user:hunter2-very-secret@db/app"}, "secret": {"1"}},
		{"env": {"production"}, "name": {"LOG_LEVEL"}, "value": {"debug"}},
	} {
		if r := c.post("/projects/api/vars", v); r.status != http.StatusSeeOther {
			t.Fatalf("set var: %d", r.status)
		}
	}
	p = c.get("/projects/api/settings?env=production")
	mustContain(t, "settings page", p.body, "DATABASE_URL", "LOG_LEVEL", "debug", "••••••")
	if strings.Contains(p.body, "hunter2") {
		t.Error("a secret value was shown")
	}
	// A refused variable sends the browser back to the form, with why.
	if r := c.post("/projects/api/vars", url.Values{"env": {"production"}, "name": {"PORT"}, "value": {"1"}}); r.header.Get("Location") != "/projects/api/settings?env=production#vars" {
		t.Errorf("a refused variable went to %q, want back to the variables", r.header.Get("Location"))
	}
	p = c.get("/projects/api/settings")
	mustContain(t, "settings page", p.body, "cannot be overridden")
	if r := c.post("/projects/api/vars/delete", url.Values{"env": {"production"}, "name": {"LOG_LEVEL"}}); r.status != http.StatusSeeOther {
		t.Fatalf("delete var: %d", r.status)
	}
	prod, _ := e.st.GetEnvironment(ctx, proj.ID, "production")
	if vars, _ := e.st.ListEnvVars(ctx, prod.ID); len(vars) != 1 {
		t.Errorf("after delete: %d variables", len(vars))
	}

	// Environments and domains.
	if r := c.post("/projects/api/environments", url.Values{"name": {"staging"}, "branches": {"develop, release"}}); r.status != http.StatusSeeOther {
		t.Fatalf("create environment: %d", r.status)
	}
	staging, err := e.st.GetEnvironment(ctx, proj.ID, "staging")
	if err != nil || strings.Join(staging.Branches, ",") != "develop,release" {
		t.Fatalf("staging: %+v %v", staging, err)
	}
	if r := c.post("/projects/api/domains", url.Values{"env": {"staging"}, "domain": {"Staging.Example.com"}}); r.status != http.StatusSeeOther {
		t.Fatalf("add domain: %d", r.status)
	}
	p = c.get("/projects/api/settings?env=staging")
	mustContain(t, "staging settings", p.body, "staging.example.com", "api-staging.slipway.localhost")
	if _, ok := e.table.Lookup("staging.example.com"); ok {
		t.Error("a domain of an environment with no deployment is routed")
	}
	// Removing a domain through another environment's form is refused.
	c.post("/projects/api/domains/delete", url.Values{"env": {"production"}, "domain": {"staging.example.com"}})
	if doms, _ := e.st.ListDomains(ctx, staging.ID); len(doms) != 1 {
		t.Fatal("a domain was removed through the wrong environment")
	}
	c.post("/projects/api/domains/delete", url.Values{"env": {"staging"}, "domain": {"staging.example.com"}})
	if doms, _ := e.st.ListDomains(ctx, staging.ID); len(doms) != 0 {
		t.Error("domain not removed")
	}
	p = c.get("/projects/api")
	mustContain(t, "project page", p.body, "staging", "develop")

	// A branch deploys to one environment, in the dashboard as in the API.
	c.post("/projects/api/environments", url.Values{"name": {"preview"}, "branches": {"release"}})
	if _, err := e.st.GetEnvironment(ctx, proj.ID, "preview"); err == nil {
		t.Error("an environment was created on a branch staging has")
	}

	// Egress: allow, close, deny, reopen.
	c.post("/projects/api/egress/allow", url.Values{"rule": {"10.77.0.5:5432"}})
	c.post("/projects/api/egress/none", url.Values{"none": {"1"}})
	if got, _ := e.st.GetProject(ctx, "api"); !got.Egress.None || len(got.Egress.Allow) != 1 || got.Egress.Allow[0] != "10.77.0.5/32:5432" {
		t.Errorf("egress after allow and close: %+v", got.Egress)
	}
	p = c.get("/projects/api/settings")
	mustContain(t, "egress section", p.body, "10.77.0.5/32:5432", "Reopen egress")
	if r := c.post("/projects/api/egress/allow", url.Values{"rule": {"db.example"}}); r.status != http.StatusSeeOther {
		t.Errorf("a bad rule: %d", r.status)
	}
	c.post("/projects/api/egress/deny", url.Values{"rule": {"10.77.0.5/32:5432"}})
	c.post("/projects/api/egress/none", url.Values{"none": {"0"}})
	if got, _ := e.st.GetProject(ctx, "api"); got.Egress.None || len(got.Egress.Allow) != 0 {
		t.Errorf("egress after deny and reopen: %+v", got.Egress)
	}
}

func TestRuntimeLogsPaging(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	e.project("logs")
	c := e.client()
	c.signIn()
	d := e.deploy("logs", deploy.CreateRequest{Promote: true})
	e.waitStatus(d.ID, deploy.Running)
	var lines []store.LogLine
	for i := 0; i < 450; i++ {
		lines = append(lines, store.LogLine{DeploymentID: d.ID, Kind: store.LogRuntime, Stream: "stdout", Time: time.Now(), Text: "line " + strconv.Itoa(i)})
	}
	if err := e.st.AppendLogs(context.Background(), lines); err != nil {
		t.Fatal(err)
	}
	var all []api.LogLine
	before := int64(0)
	for i := 0; i < 10; i++ {
		r := c.get("/deployments/" + d.ID + "/logs?limit=200&before=" + strconv.FormatInt(before, 10))
		var page api.LogPage
		if err := json.Unmarshal([]byte(r.body), &page); err != nil {
			t.Fatalf("page %d: %v: %s", i, err, r.body)
		}
		all = append(all, page.Lines...)
		if page.Next == 0 {
			break
		}
		before = page.Next
	}
	got := 0
	for i := 1; i < len(all); i++ {
		if all[i].ID >= all[i-1].ID {
			t.Fatal("pages are not newest first without overlap")
		}
	}
	for _, l := range all {
		if strings.HasPrefix(l.Text, "line ") {
			got++
		}
	}
	if got != 450 {
		t.Errorf("paged through %d of 450 lines", got)
	}
	if all[0].Text != "line 449" {
		t.Errorf("newest line %q", all[0].Text)
	}
}

func TestLiveChanges(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	e.project("live")
	c := e.client()
	c.signIn()
	p := c.get("/projects/live")
	fp := attr(p.body, "data-fp")
	if fp == "" {
		t.Fatal("the project page has no fingerprint")
	}
	// A stale fingerprint gets a change at once.
	ev := readSSE(t, e.srv.URL+"/live?scope=project:live&fp=stale", c, "change")
	if countEvents(ev, "change") != 1 {
		t.Fatalf("stale fingerprint: %v", ev)
	}
	// The page's own fingerprint gets one when a deployment appears.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/live?scope=project:live&fp="+fp, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				got <- ev
			}
		}
		close(got)
	}()
	d := e.deploy("live", deploy.CreateRequest{Promote: true})
	select {
	case ev := <-got:
		if ev != "change" {
			t.Fatalf("event %q", ev)
		}
	case <-ctx.Done():
		t.Fatal("no change event after a deployment was created")
	}
	e.waitStatus(d.ID, deploy.Running)
	// The refetched page shows the new deployment in its live region.
	p = c.get("/projects/live")
	if !strings.Contains(p.body, `id="dep-`+d.ID) || attr(p.body, "data-fp") == fp {
		t.Error("refetched page did not change")
	}
}

// readSSE reads a stream until an event named until arrives (bounded).
func readSSE(t *testing.T, u string, c *client, until string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, ev)
			if ev == until {
				return events
			}
		}
	}
	t.Fatalf("stream %s ended without %q: %v (%v)", u, until, events, sc.Err())
	return nil
}

func countEvents(events []string, name string) int {
	n := 0
	for _, e := range events {
		if e == name {
			n++
		}
	}
	return n
}

func attr(body, name string) string {
	i := strings.Index(body, name+`="`)
	if i < 0 {
		return ""
	}
	rest := body[i+len(name)+2:]
	return html.UnescapeString(rest[:strings.IndexByte(rest, '"')])
}

func TestRepositoryLink(t *testing.T) {
	e := newTestEnv(t, envOptions{})
	ctx := context.Background()
	proj := e.project("site")
	c := e.client()
	c.signIn()
	stored := func() store.Project {
		t.Helper()
		p, err := e.st.GetProject(ctx, "site")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	unseal := func(b []byte) string {
		t.Helper()
		v, err := e.box.Unseal(b)
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	post := func(path string, form url.Values) {
		t.Helper()
		r := c.post("/projects/site/"+path, form)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/projects/site/settings#git" {
			t.Fatalf("POST %s: %d %q, want a redirect to the settings' git section", path, r.status, r.header.Get("Location"))
		}
	}
	settings := func() string { return c.get("/projects/site/settings").body }

	p := settings()
	mustContain(t, "unlinked settings", p, "Not linked", `action="/projects/site/repository"`, `data-copy="webhook-url"`,
		`<code id="webhook-url" class="wrap">`+e.srv.URL+`/hooks/github/site</code>`, `id="secret-state">not set`, `id="token-state">not set`)
	for _, form := range []string{"/repository/unlink", "/repository/token", "/repository/secret"} {
		if strings.Contains(p, form) {
			t.Errorf("an unlinked project's settings offer %s", form)
		}
	}

	// Bad input is refused with a message that says what is wrong, and
	// nothing is stored.
	for _, tc := range []struct{ url, token, want string }{
		{"", "", "Enter the repository's address"},
		{"ftp://github.com/acme/site", "", "is not a repository address"},
		{"github.com/acme/site", "", "is not a repository address"},
		{"https://user:pw@github.com/acme/site", "", "Leave the credentials out of the URL"},
		{"https://github.com", "", "names a server, not a repository"},
		{"https://github.com/acme/site?tab=readme", "", "cannot have a ? or # part"},
		{"https://github.com/acme/my site", "", "cannot contain spaces"},
		{"https://github.com/acme/site", "ghp_a b", "A clone token has no spaces"},
	} {
		post("repository", url.Values{"url": {tc.url}, "token": {tc.token}})
		p := settings()
		if !strings.Contains(p, "flash-error") || !strings.Contains(html.UnescapeString(p), tc.want) {
			t.Errorf("url %q token %q: no error %q on the page", tc.url, tc.token, tc.want)
		}
	}
	if got := stored(); got.RepoURL != "" || got.WebhookSecret != nil || got.RepoToken != nil {
		t.Fatalf("refused forms stored a link: %+v", got)
	}

	// Linking generates the webhook secret, shown on the next page only.
	post("repository", url.Values{"url": {" https://github.com/acme/site "}})
	got := stored()
	if got.RepoURL != "https://github.com/acme/site" || got.WebhookSecret == nil || got.RepoToken != nil {
		t.Fatalf("after linking: %+v", got)
	}
	secret := unseal(got.WebhookSecret)
	if len(secret) != 48 {
		t.Errorf("webhook secret %q, want 48 hex digits", secret)
	}
	p = settings()
	mustContain(t, "settings after linking", p, "site is linked to https://github.com/acme/site", `id="repo-url">https://github.com/acme/site</a>`,
		`data-secret>`+secret+`</code>`, `data-reveal="webhook-secret"`, `data-copy="webhook-secret"`, "shown this once",
		`action="/projects/site/repository/unlink"`, `action="/projects/site/repository/token"`, "Rotate secret")
	if p = settings(); strings.Contains(p, secret) {
		t.Error("the webhook secret was shown a second time")
	}
	mustContain(t, "settings, second load", p, `id="secret-state">set`)
	// The API sees the same link.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/projects/site/repository", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Accept", "application/json")
	var repo api.Repository
	if r := c.do(req); r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &repo) != nil {
		t.Fatalf("API GET repository: %d %s", r.status, r.body)
	}
	if repo.URL != got.RepoURL || !repo.HasSecret || repo.HasToken || repo.WebhookURL != e.srv.URL+"/hooks/github/site" {
		t.Errorf("API sees %+v", repo)
	}

	// The clone token is write-only.
	post("repository/token", url.Values{"token": {""}})
	mustContain(t, "settings after an empty token", settings(), "flash-error", "Enter the clone token")
	post("repository/token", url.Values{"token": {"ghp_TopSecretToken123"}})
	if got := stored(); got.RepoToken == nil || unseal(got.RepoToken) != "ghp_TopSecretToken123" {
		t.Fatal("the clone token was not stored")
	}
	p = settings()
	mustContain(t, "settings with a token", p, "Clone token saved", `id="token-state">set`, "Replace token", "Remove token")
	if strings.Contains(p, "TopSecretToken") {
		t.Error("the clone token was shown")
	}

	// An SSH address is linked as its https URL; the secret and the token
	// are kept.
	before := stored()
	post("repository", url.Values{"url": {"git@github.com:acme/site.git"}})
	got = stored()
	if got.RepoURL != "https://github.com/acme/site.git" || !bytes.Equal(got.WebhookSecret, before.WebhookSecret) || !bytes.Equal(got.RepoToken, before.RepoToken) {
		t.Fatalf("after relinking over SSH: %+v", got)
	}
	p = settings()
	mustContain(t, "settings after relinking", p, "SSH address was turned into its https URL")
	if strings.Contains(p, `data-secret>`) {
		t.Error("relinking showed the webhook secret again")
	}

	// Rotating makes a new secret, shown once.
	post("repository/secret", nil)
	rotated := unseal(stored().WebhookSecret)
	if rotated == secret {
		t.Fatal("rotating kept the secret")
	}
	mustContain(t, "settings after rotating", settings(), "New webhook secret generated", `data-secret>`+rotated+`</code>`)

	// The token can be removed.
	post("repository/token", url.Values{"clear": {"1"}})
	if got := stored(); got.RepoToken != nil || got.RepoURL == "" {
		t.Fatalf("after removing the token: %+v", got)
	}
	mustContain(t, "settings without a token", settings(), `id="token-state">not set`)

	// Every repository form needs the session's CSRF token.
	before = stored()
	for _, path := range []string{"repository", "repository/unlink", "repository/token", "repository/secret"} {
		form := url.Values{"url": {"https://github.com/evil/site"}, "token": {"x"}, "_csrf": {"-"}}
		if r := c.post("/projects/site/"+path, form); r.status != http.StatusForbidden {
			t.Errorf("POST %s without a CSRF token: %d, want 403", path, r.status)
		}
	}
	if got := stored(); got.RepoURL != before.RepoURL || !bytes.Equal(got.WebhookSecret, before.WebhookSecret) || got.RepoToken != nil {
		t.Fatalf("refused requests changed the link: %+v", got)
	}

	// Deployments started by the webhook are listed; others are not.
	hook := e.deploy("site", deploy.CreateRequest{Promote: true, Trigger: "webhook", Branch: "main", CommitSHA: "abcdef0123456789", Message: "Pushed to GitHub"})
	upload := e.deploy("site", deploy.CreateRequest{Promote: true})
	e.waitStatus(hook.ID, deploy.Running)
	e.waitStatus(upload.ID, deploy.Running)
	p = settings()
	_, deliveries, _ := strings.Cut(p, `id="deliveries-title"`)
	mustContain(t, "recent webhook deployments", deliveries, `href="/deployments/`+hook.ID+`"`, "Pushed to GitHub", "abcdef0")
	if strings.Contains(deliveries, upload.ID) {
		t.Error("an uploaded deployment is listed as a webhook delivery")
	}

	// Unlinking deletes the link, its secret and its token.
	post("repository/unlink", nil)
	if got := stored(); got.RepoURL != "" || got.WebhookSecret != nil || got.RepoToken != nil {
		t.Fatalf("after unlinking: %+v", got)
	}
	mustContain(t, "settings after unlinking", settings(), "Repository unlinked", "Not linked", `id="secret-state">not set`)
	post("repository/unlink", nil)
	mustContain(t, "settings after unlinking twice", settings(), "flash-error", "site is not linked to a repository")
	// Token and secret forms need a link.
	post("repository/secret", nil)
	mustContain(t, "rotating while unlinked", settings(), "flash-error", "Link a repository first")
	if got := stored(); got.WebhookSecret != nil || got.ID != proj.ID {
		t.Fatalf("rotating while unlinked stored a secret: %+v", got)
	}
}

func TestRepositoryWithoutSecrets(t *testing.T) {
	e := newTestEnv(t, envOptions{noSecrets: true})
	e.project("plain")
	c := e.client()
	c.signIn()
	p := c.get("/projects/plain/settings").body
	mustContain(t, "settings without a secret key", p, "no key to encrypt secrets", "/hooks/github/plain")
	if strings.Contains(p, `action="/projects/plain/repository"`) {
		t.Error("the link form is offered although secrets cannot be sealed")
	}
	c.post("/projects/plain/repository", url.Values{"url": {"https://github.com/acme/plain"}})
	mustContain(t, "settings after a refused link", c.get("/projects/plain/settings").body, "flash-error", "cannot link repositories")
	if got, _ := e.st.GetProject(context.Background(), "plain"); got.RepoURL != "" {
		t.Errorf("linked without secrets: %+v", got)
	}
}

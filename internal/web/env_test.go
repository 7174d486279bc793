package web

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/build/buildtest"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/source"
	"github.com/slipwayhq/slipway/internal/store"
)

const testToken = "sw_dashboard_test_token"

// testEnv is a real store, Controller (fake builder and driver), routing
// table and router, with the dashboard and the API served side by side as
// the server mounts them.
type testEnv struct {
	t       *testing.T
	st      *store.Store
	ctl     *deploy.Controller
	builder *buildtest.Builder
	driver  *fake.Driver
	table   *router.Table
	box     *secrets.Box
	srv     *httptest.Server // dashboard + API
	apps    *httptest.Server // the router
	appPort int
	handler http.Handler
}

type envOptions struct {
	adminPassword string
	builder       *buildtest.Builder
	idleTimeout   time.Duration
	// noSecrets starts the controller without Config.Secrets.
	noSecrets bool
}

func newTestEnv(t *testing.T, opt envOptions) *testEnv {
	t.Helper()
	data := t.TempDir()
	st, err := store.Open(filepath.Join(data, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.CreateToken(context.Background(), "admin", testToken); err != nil {
		t.Fatal(err)
	}
	box, err := secrets.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, st: st, builder: opt.builder, table: &router.Table{}, box: box}
	if e.builder == nil {
		e.builder = buildtest.New()
	}
	e.driver = fake.New(fake.Config{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	idle := opt.idleTimeout
	if idle == 0 {
		idle = -1 // never scale to zero unless a test asks
	}
	ctlBox := box
	if opt.noSecrets {
		ctlBox = nil
	}
	ctl, err := deploy.New(deploy.Config{Store: st, Builder: e.builder, Driver: e.driver, Routes: e.table,
		Registry: "127.0.0.1:7300", DataDir: data, DeployWindow: 20 * time.Second, Secrets: ctlBox,
		IdleTimeout: idle, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := ctl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.ctl = ctl
	t.Cleanup(func() {
		e.builder.Release()
		ctl.Close()
		// Stop the fake instances (their listeners) the test left running.
		ds, _ := st.ListDeployments(context.Background(), store.DeploymentFilter{Limit: 500})
		for _, d := range ds {
			ctl.Stop(context.Background(), d.ID)
		}
	})

	e.apps = httptest.NewServer(&router.Router{Table: e.table, OnRequest: ctl.Touch, OnRequestDone: ctl.RequestDone})
	t.Cleanup(e.apps.Close)
	e.appPort = e.apps.Listener.Addr().(*net.TCPAddr).Port

	rules, err := project.New(project.Config{Store: st, Lifecycle: ctl, Secrets: ctlBox})
	if err != nil {
		t.Fatal(err)
	}
	e.handler = New(Config{Store: st, Deploy: ctl, Projects: rules, RouterPort: e.appPort, AdminPassword: opt.adminPassword,
		LivePoll: 200 * time.Millisecond, Log: testLog(t)})
	apiServer := api.New(api.Config{Store: st, Deploy: ctl, Projects: rules, RouterPort: e.appPort, Secrets: box, Log: quiet})
	mux := http.NewServeMux()
	mux.Handle("/api/", apiServer.Handler())
	mux.Handle("/", e.handler)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// deploy creates a deployment of a tiny source through the Controller.
// Extra files (FAIL, BLOCK) steer the fake builder.
func (e *testEnv) deploy(project string, req deploy.CreateRequest, files ...string) store.Deployment {
	e.t.Helper()
	dir := e.t.TempDir()
	for _, f := range append([]string{"Dockerfile"}, files...) {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("FROM scratch\n"), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := source.Pack(dir, &buf); err != nil {
		e.t.Fatal(err)
	}
	req.Project, req.Source = project, &buf
	if req.Trigger == "" {
		req.Trigger = "upload"
	}
	d, err := e.ctl.Create(context.Background(), req)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// waitStatus waits (bounded) until the deployment reaches status.
func (e *testEnv) waitStatus(id string, status deploy.Status) store.Deployment {
	e.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		changed := e.ctl.Changed(id)
		d, err := e.st.GetDeployment(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		if d.Status == string(status) {
			return d
		}
		if deploy.Status(d.Status).Terminal() {
			e.t.Fatalf("deployment %s is %s (%s), want %s", id, d.Status, d.FailureReason, status)
		}
		select {
		case <-changed:
		case <-deadline:
			e.t.Fatalf("deployment %s still %s, want %s", id, d.Status, status)
		}
	}
}

func (e *testEnv) project(name string) store.Project {
	e.t.Helper()
	p, err := e.st.CreateProject(context.Background(), store.Project{Name: name})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// client is a browser-like HTTP client: a cookie jar, no redirects
// followed, and HTML accepted.
type client struct {
	t    *testing.T
	e    *testEnv
	http *http.Client
	csrf string
}

func (e *testEnv) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: e.t, e: e, http: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (c *client) do(req *http.Request) response {
	c.t.Helper()
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/html")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (c *client) get(path string) response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.e.srv.URL+path, nil)
	r := c.do(req)
	if m := csrfRE.FindStringSubmatch(r.body); m != nil {
		c.csrf = m[1]
	}
	return r
}

var csrfRE = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// post submits a form; the session's CSRF token is added unless form has
// its own _csrf (or "-" to send none).
func (c *client) post(path string, form url.Values) response {
	c.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	switch form.Get("_csrf") {
	case "":
		form.Set("_csrf", c.csrf)
	case "-":
		form.Del("_csrf")
	}
	req, _ := http.NewRequest(http.MethodPost, c.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// signIn signs in with the test token and loads a page to learn the CSRF
// token.
func (c *client) signIn() {
	c.t.Helper()
	r := c.post("/login", url.Values{"secret": {testToken}, "next": {"/"}, "_csrf": {"-"}})
	if r.status != http.StatusSeeOther {
		c.t.Fatalf("sign in: %d %s", r.status, r.body)
	}
	if p := c.get("/"); p.status != http.StatusOK || c.csrf == "" {
		c.t.Fatalf("after sign-in, / answered %d (csrf %q)", p.status, c.csrf)
	}
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s does not contain %q", what, w)
		}
	}
}

// testLog sends the dashboard's log to the test's log.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

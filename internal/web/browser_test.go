package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/slipwayhq/slipway/internal/build/buildtest"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/store"
)

// The browser test drives Debian's Chromium (headless) through the whole
// dashboard against a real store, Controller and router: sign in, create a
// project, set a variable, watch a build log stream while the build runs,
// see RUNNING without a reload, open the preview URL, page through runtime
// logs, follow and filter them, see a new deployment appear live, and roll
// back; link a GitHub repository, reveal and copy its webhook secret, set
// a clone token, rotate the secret on a phone and unlink. It saves screenshots of the main pages in the test's artifact
// directory (or $SLIPWAY_SCREENSHOTS) and in /tmp/slipway-screens/.

// screensCopy always receives a copy of the screenshots, to look at them.
const screensCopy = "/tmp/slipway-screens"

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("SLIPWAY_CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium is missing (apt-get install chromium); the browser tests need it")
	}
	t.Skip("Chromium is not installed (apt-get install chromium); skipping the browser test")
	return ""
}

type browser struct {
	t    *testing.T
	ctx  context.Context
	e    *testEnv
	dirs []string

	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T, e *testEnv) *browser {
	t.Helper()
	exe := chromiumPath(t)
	dir := os.Getenv("SLIPWAY_SCREENSHOTS")
	if dir == "" {
		dir = t.ArtifactDir()
	}
	b := &browser{t: t, e: e, dirs: []string{dir, screensCopy}}
	for _, d := range b.dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true), // loopback only, whatever the environment says
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(io.Discard),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start the browser on a context without a deadline (its life is bound
	// to it), then watch the console for exceptions and CSP violations.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	b.ctx = ctx
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || (m.Type == chromedp.ConsoleError && strings.Contains(m.Text, "Content Security Policy")) {
				b.mu.Lock()
				b.problems = append(b.problems, fmt.Sprintf("%s at %s:%d: %s", m.Type, m.URL, m.Line, m.Text))
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("browser console: %s", p)
		}
	})
	return b
}

const step = 15 * time.Second

// do runs actions, bounded.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// wait waits (bounded) until the JavaScript expression is truthy. It
// retries through navigations (a click that submits a form).
func (b *browser) wait(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(step)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		select {
		case <-b.ctx.Done():
			b.t.Fatalf("waiting until %s: %v", what, b.ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	b.shot("failed")
	b.t.Fatalf("waiting until %s (%s): timed out (last error: %v)", what, expr, last)
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func (b *browser) open(path string) {
	b.t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.e.srv.URL + path
	}
	b.do("opening "+u, chromedp.Navigate(u))
}

// shot saves a full-page screenshot as name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	for _, d := range b.dirs {
		if err := os.WriteFile(filepath.Join(d, name+".png"), png, 0o644); err != nil {
			b.t.Errorf("saving screenshot: %v", err)
		}
	}
}

func js(s string) string { return fmt.Sprintf("%q", s) }

func TestBrowser(t *testing.T) {
	builder := buildtest.New()
	// A build log with two stages that arrives line by line.
	builder.LineDelay = 15 * time.Millisecond
	builder.Output = append(builder.Output, "#2 [1/2] FROM docker.io/library/debian:bookworm-slim")
	for i := 0; i < 25; i++ {
		builder.Output = append(builder.Output, fmt.Sprintf("#2 0.%02d resolving layer %d", i, i))
	}
	builder.Output = append(builder.Output, "#2 DONE 0.4s", "#3 [2/2] RUN make all")
	for i := 0; i < 25; i++ {
		builder.Output = append(builder.Output, fmt.Sprintf("#3 %d.%d compiling unit %d", i/10, i%10, i))
	}
	builder.Output = append(builder.Output, "#3 DONE 2.5s")
	lastOutput := builder.Output[len(builder.Output)-1]

	e := newTestEnv(t, envOptions{builder: builder})
	b := newBrowser(t, e)
	ctx := context.Background()

	// Sign in.
	b.open("/")
	b.wait("the sign-in page shows", `location.pathname === "/login" && !!document.querySelector("#secret")`)
	b.shot("login")
	b.do("signing in",
		chromedp.SendKeys(chromedp.CSS("#secret"), testToken),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
	)
	b.wait("the projects page shows", `location.pathname === "/" && document.querySelector("h1").textContent === "Projects"`)

	// Create a project.
	b.do("creating a project",
		chromedp.SendKeys(chromedp.CSS("#new-project"), "demo"),
		chromedp.Click(chromedp.CSS(`form[action="/projects"] button[type=submit]`)),
	)
	b.wait("the new project's page shows", `location.pathname === "/projects/demo" && document.body.textContent.includes("No deployments yet")`)
	b.shot("project-empty")

	// Settings: a plain variable the app will echo, a secret, a domain.
	b.open("/projects/demo/settings")
	b.do("setting APP_ID",
		chromedp.SendKeys(chromedp.CSS("#var-name"), "APP_ID"),
		chromedp.SendKeys(chromedp.CSS("#var-value"), "demo-app"),
		chromedp.Click(chromedp.CSS(`#vars input[name=secret]`)), // uncheck: not a secret
		chromedp.Click(chromedp.CSS(`form[action="/projects/demo/vars"] button[type=submit]`)),
	)
	b.wait("APP_ID is listed", `document.querySelector("#vars table") && document.querySelector("#vars table").textContent.includes("demo-app")`)
	b.do("setting a secret",
		chromedp.SendKeys(chromedp.CSS("#var-name"), "API_KEY"),
		chromedp.SendKeys(chromedp.CSS("#var-value"), "very-secret-value-123"),
		chromedp.Click(chromedp.CSS(`form[action="/projects/demo/vars"] button[type=submit]`)),
	)
	b.wait("API_KEY is listed masked", `document.querySelector("#vars table").textContent.includes("API_KEY")`)
	if eval[bool](b, `document.body.textContent.includes("very-secret")`) {
		t.Error("the settings page shows a secret value")
	}
	b.do("adding a domain",
		chromedp.SendKeys(chromedp.CSS("#domain"), "www.demo.test"),
		chromedp.Click(chromedp.CSS(`form[action="/projects/demo/domains"] button[type=submit]`)),
	)
	b.wait("the domain is listed", `document.querySelector("#domains").textContent.includes("www.demo.test")`)

	// Link a GitHub repository: a bad address is refused with a message,
	// a good one shows the webhook URL and its secret, once, masked until
	// revealed, with a working copy button.
	hookURL := e.srv.URL + "/hooks/github/demo"
	if got := eval[string](b, `document.querySelector("#webhook-url").textContent`); got != hookURL {
		t.Errorf("webhook URL shows %q, want %q", got, hookURL)
	}
	b.do("linking a bad address",
		chromedp.SendKeys(chromedp.CSS("#repo-url-input"), "ftp://github.com/acme/demo"),
		chromedp.Click(chromedp.CSS(`form[action="/projects/demo/repository"] button[type=submit]`)),
	)
	b.wait("the bad address is refused", `location.hash === "#git" && !!document.querySelector(".flash-error") && document.querySelector(".flash-error").textContent.includes("is not a repository address")`)
	b.do("linking the repository",
		chromedp.SetValue(chromedp.CSS("#repo-url-input"), "https://github.com/acme/demo"),
		chromedp.Click(chromedp.CSS(`form[action="/projects/demo/repository"] button[type=submit]`)),
	)
	b.wait("the link and the new secret show", `!!document.querySelector(".flash-ok") && !!document.querySelector("#webhook-secret") && document.querySelector("#repo-url").textContent === "https://github.com/acme/demo"`)
	linked, err := e.st.GetProject(ctx, "demo")
	if err != nil || linked.WebhookSecret == nil {
		t.Fatalf("after linking: %+v %v", linked, err)
	}
	plain, err := e.box.Unseal(linked.WebhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	secret := string(plain)
	if eval[bool](b, `document.body.textContent.includes(`+js(secret)+`)`) {
		t.Error("the webhook secret shows before it is revealed")
	}
	b.shot("settings-repository")
	b.do("revealing the secret", chromedp.Click(chromedp.CSS(`[data-reveal="webhook-secret"]`)))
	if got := eval[string](b, `document.querySelector("#webhook-secret").textContent`); got != secret {
		t.Errorf("revealed secret %q, want %q", got, secret)
	}
	grantClipboard(b)
	b.do("copying the secret", chromedp.Click(chromedp.CSS(`[data-copy="webhook-secret"]`)))
	b.wait("the copy button says so", `document.querySelector('[data-copy="webhook-secret"]').textContent === "Copied"`)
	cctx, ccancel := context.WithTimeout(b.ctx, step)
	clip, err := chromedp.Run(cctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	ccancel()
	if err != nil || clip != secret {
		t.Errorf("the clipboard holds %q (%v), want the secret", clip, err)
	}
	b.shot("settings-secret-revealed")
	b.do("setting a clone token",
		chromedp.SendKeys(chromedp.CSS("#clone-token"), "ghp_browserToken42"),
		chromedp.Click(chromedp.CSS(`form[action="/projects/demo/repository/token"] button[type=submit]`)),
	)
	b.wait("the token is set, the secret no longer shown", `document.querySelector("#token-state").textContent === "set" && !document.querySelector("#webhook-secret") && document.querySelector("#secret-state").textContent === "set"`)
	if eval[bool](b, `document.documentElement.outerHTML.includes("browserToken42")`) {
		t.Error("the settings page shows the clone token")
	}
	b.shot("settings")

	// A deployment whose build holds (BLOCK) after its output: its page
	// must show every line while the build is still running.
	first := e.deploy("demo", deploy.CreateRequest{Promote: true, Branch: "main", CommitSHA: "4f2a9c1e7b3d5a6f8e9d0c1b2a3f4e5d6c7b8a9f",
		Message: "Add the pricing page\n\nWith a table.", Author: "Ada Lovelace"}, "BLOCK")
	b.open("/deployments/" + first.ID)
	eval[bool](b, `window.__sameDocument = true`)
	b.wait("the first build line streams in", `document.querySelector("#build-log").textContent.includes("[1/1] building")`)
	b.wait("the last build line streams in", `document.querySelector("#build-log").textContent.includes(`+js(lastOutput)+`)`)
	if d, _ := e.st.GetDeployment(ctx, first.ID); d.Status != string(deploy.Building) {
		t.Fatalf("the log was complete while the deployment was %s; the test proves nothing", d.Status)
	}
	b.wait("the page shows BUILDING", `!!document.querySelector("#dep-head .badge.st-building")`)
	if n := eval[int](b, `document.querySelectorAll("#build-log .ln.stage").length`); n < 3 {
		t.Errorf("build log shows %d stage headers, want 3", n)
	}
	if !eval[bool](b, `(function(){var l=document.querySelector("#build-log"); return l.scrollHeight > l.clientHeight && l.scrollTop + l.clientHeight >= l.scrollHeight - 8})()`) {
		t.Error("the build log did not follow its end while streaming")
	}
	b.shot("deployment-building")

	// The reader scrolls up: the log stops following, offers a jump.
	eval[bool](b, `(function(){var l=document.querySelector("#build-log"); l.scrollTop = 0; l.dispatchEvent(new Event("scroll")); return true})()`)
	builder.Release()
	b.wait("RUNNING shows without a reload", `!!document.querySelector("#dep-head .badge.st-running") && window.__sameDocument === true`)
	b.wait("the build log says it finished", `document.querySelector("#build-log-state").textContent.includes("finished")`)
	if !eval[bool](b, `document.querySelector("#build-log").scrollTop === 0 && !document.querySelector('[data-jump="build-log"]').hidden`) {
		t.Error("the build log moved although the reader had scrolled up, or offers no jump to the end")
	}
	b.do("jumping to the end", chromedp.Click(chromedp.CSS(`[data-jump="build-log"]`)))
	if !eval[bool](b, `(function(){var l=document.querySelector("#build-log"); return l.scrollTop + l.clientHeight >= l.scrollHeight - 8})()`) {
		t.Error("jump to latest did not scroll to the end")
	}
	if !eval[bool](b, `document.querySelector("#build-log").textContent.includes("status DEPLOYING → RUNNING")`) {
		t.Error("the build log lacks the lines after the build")
	}

	// The preview URL, through the real router and the fake instance.
	preview := eval[string](b, `document.querySelector("#preview-url").href`)
	if !strings.Contains(preview, first.ID+".slipway.localhost:") {
		t.Fatalf("preview URL %q", preview)
	}
	// The app writes 450 lines to its stdout (through the router, as a
	// visitor would make it), for the runtime logs.
	for i := 0; i < 450; i++ {
		appGet(t, e, first.ID+".slipway.localhost", fmt.Sprintf("/log?msg=msg-%03d", i))
	}
	waitRuntimeLine(t, e, first.ID, "msg-449")
	b.open(preview)
	b.wait("the preview shows the app", `document.body.textContent.includes("hello from demo-app")`)
	b.shot("preview")

	// Runtime logs: newest page, then older pages, follow, filter.
	b.open("/deployments/" + first.ID)
	b.wait("the newest runtime lines show", `document.querySelector("#runtime-log").textContent.includes("msg-449")`)
	if eval[bool](b, `document.querySelector("#runtime-log").textContent.includes("msg-000")`) {
		t.Fatal("the first page of runtime logs already holds the oldest line")
	}
	for i := 0; ; i++ {
		if eval[bool](b, `document.querySelector("#runtime-log").textContent.includes("msg-000")`) {
			break
		}
		if i == 5 {
			t.Fatal("paged 5 times without reaching the oldest line")
		}
		n := eval[int](b, `document.querySelectorAll("#runtime-log .ln").length`)
		b.wait("Load older is offered", `!document.querySelector("#runtime-older").hidden`)
		b.do("loading older lines", chromedp.Click(chromedp.CSS("#runtime-older")))
		b.wait("older lines arrive", fmt.Sprintf(`document.querySelectorAll("#runtime-log .ln").length > %d`, n))
	}
	if got := eval[string](b, `(function(){var t=[].map.call(document.querySelectorAll("#runtime-log .ln .tx"), function(e){return e.textContent}).filter(function(s){return s.startsWith("msg-")}); return t[0] + "|" + t[t.length-1] + "|" + t.length})()`); got != "msg-000|msg-449|450" {
		t.Errorf("runtime log holds %q, want msg-000 … msg-449 in order", got)
	}
	appGet(t, e, first.ID+".slipway.localhost", "/log?msg=followed-live")
	b.wait("a new line arrives while following", `document.querySelector("#runtime-log").textContent.includes("followed-live")`)
	b.do("filtering", chromedp.SendKeys(chromedp.CSS("#runtime-filter"), "msg-04"))
	b.wait("the filter applies", `document.querySelectorAll("#runtime-log .ln:not([hidden])").length === 10`)
	b.shot("deployment-running")
	b.do("clearing the filter", chromedp.Evaluate[chromedp.Void](`(function(f){f.value = ""; f.dispatchEvent(new Event("input"))})(document.querySelector("#runtime-filter"))`))

	// The project page sees a new deployment arrive and go live, without a
	// reload.
	b.open("/projects/demo")
	eval[bool](b, `window.__sameDocument = true`)
	second := e.deploy("demo", deploy.CreateRequest{Promote: true, Trigger: "webhook", Branch: "main", CommitSHA: "9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
		Message: "Fix the checkout button", Author: "Grace Hopper"})
	b.wait("the new deployment appears running and current", fmt.Sprintf(
		`!!document.querySelector("#dep-%s .badge.st-running") && !!document.querySelector('[data-current="%s"]') && window.__sameDocument === true`, second.ID, second.ID))
	b.shot("project")

	// Roll back to the first deployment.
	b.do("rolling back", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#dep-%s form[action$="/promote"] button`, first.ID))))
	b.wait("the first deployment is current again", fmt.Sprintf(`location.pathname === "/projects/demo" && !!document.querySelector('[data-current="%s"]')`, first.ID))
	mustCurrent(t, e, "demo", first.ID)
	b.open(fmt.Sprintf("http://demo.slipway.localhost:%d/env?name=SLIPWAY_DEPLOYMENT_ID", e.appPort))
	b.wait("the project hostname serves the first deployment again", `document.body.textContent.trim() === `+js(first.ID))
	b.open("/projects/demo")
	b.shot("project-rolled-back")

	b.open("/")
	b.wait("the projects page lists demo", `!!document.querySelector("#project-demo")`)
	b.shot("projects")

	// A phone.
	b.do("emulating a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	b.open("/projects/demo")
	b.wait("the project page shows", `!!document.querySelector("#deployments")`)
	if w := eval[int](b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the project page is %d px wide on a 390 px phone", w)
	}
	b.shot("phone-project")
	b.open("/deployments/" + first.ID)
	b.wait("the build log shows", `document.querySelector("#build-log-state").textContent.includes("finished")`)
	if w := eval[int](b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the deployment page is %d px wide on a 390 px phone", w)
	}
	b.shot("phone-deployment")
	b.open("/projects/demo/settings")
	b.wait("the settings page lists the webhook deployment", fmt.Sprintf(`!!document.querySelector('#git a[href="/deployments/%s"]')`, second.ID))
	if w := eval[int](b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the settings page is %d px wide on a 390 px phone", w)
	}
	b.shot("phone-settings")
	// Rotate the secret on the phone: the new one shows once.
	eval[bool](b, `(window.confirm = function () { return true }, true)`)
	b.do("rotating the secret", chromedp.Click(chromedp.CSS(`form[action="/projects/demo/repository/secret"] button`)))
	b.wait("the new secret shows", `!!document.querySelector("#webhook-secret") && document.querySelector(".flash-ok").textContent.includes("New webhook secret")`)
	b.do("revealing the new secret", chromedp.Click(chromedp.CSS(`[data-reveal="webhook-secret"]`)))
	if w := eval[int](b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the settings page with a revealed secret is %d px wide on a 390 px phone", w)
	}
	b.do("scrolling to the webhook", chromedp.Evaluate[chromedp.Void](`document.querySelector("#webhook-title").scrollIntoView()`))
	b.shot("phone-settings-secret")

	// Dark mode, on a laptop screen.
	b.do("back to a laptop screen", chromedp.EmulateViewport(1280, 900))
	dctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	if _, err := chromedp.Call(dctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
		t.Fatalf("emulating dark mode: %v", err)
	}
	b.open("/deployments/" + first.ID)
	b.wait("the build log shows", `document.querySelector("#build-log-state").textContent.includes("finished")`)
	b.shot("dark-deployment")
	b.open("/projects/demo")
	b.shot("dark-project")
	b.open("/projects/demo/settings#git")
	b.shot("dark-settings")

	// Unlink the repository.
	eval[bool](b, `(window.confirm = function () { return true }, true)`)
	b.do("unlinking", chromedp.Click(chromedp.CSS(`form[action="/projects/demo/repository/unlink"] button`)))
	b.wait("the repository is unlinked", `!!document.querySelector("#repo-url-none") && document.querySelector("#secret-state").textContent === "not set" && document.querySelector("#token-state").textContent === "not set"`)
	if p, _ := e.st.GetProject(ctx, "demo"); p.RepoURL != "" || p.WebhookSecret != nil || p.RepoToken != nil {
		t.Errorf("after unlinking in the browser: %+v", p)
	}
	b.shot("settings-unlinked")
}

// grantClipboard lets the page read the clipboard (to check what a copy
// button put there); writing needs no permission after a click.
func grantClipboard(b *browser) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, step)
	defer cancel()
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.Call(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission: &cdpbrowser.PermissionDescriptor{Name: name, AllowWithoutSanitization: true},
			Setting:    cdpbrowser.PermissionSettingGranted, Origin: b.e.srv.URL}); err != nil {
			b.t.Fatalf("granting %s: %v", name, err)
		}
	}
}

// appGet sends a request through the router to host, as a visitor would.
func appGet(t *testing.T, e *testEnv, host, path string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.apps.URL+path, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s%s through the router: %d", host, path, resp.StatusCode)
	}
}

// waitRuntimeLine waits (bounded) until the deployment's runtime log holds
// a line with text.
func waitRuntimeLine(t *testing.T, e *testEnv, id, text string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		changed := e.ctl.Changed(id)
		lines, err := e.st.ListLogs(context.Background(), store.LogQuery{DeploymentID: id, Kind: store.LogRuntime, Desc: true, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if l.Text == text {
				return
			}
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("runtime log of %s never got %q", id, text)
		}
	}
}

func mustCurrent(t *testing.T, e *testEnv, project, id string) {
	t.Helper()
	p, err := e.st.GetProject(context.Background(), project)
	if err != nil {
		t.Fatal(err)
	}
	env, err := e.st.GetEnvironment(context.Background(), p.ID, store.ProductionEnvironment)
	if err != nil {
		t.Fatal(err)
	}
	if env.CurrentDeploymentID != id {
		t.Fatalf("current deployment of %s is %s, want %s", project, env.CurrentDeploymentID, id)
	}
}

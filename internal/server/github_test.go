package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/build/buildtest"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/source/github"
	"github.com/slipwayhq/slipway/internal/store"
)

// ghStandIn is GitHub's REST API on loopback, for the repositories
// acme/web: it checks each request's token and records commit statuses
// (per commit, in order) and pull-request comments (created and updated).
type ghStandIn struct {
	token string
	srv   *httptest.Server

	mu       sync.Mutex
	statuses map[string][]github.Status // by commit
	comments map[int64]string           // by id: the latest body
	onPR     map[int64]int              // comment id → pull request
	created  map[int]int                // pull request → comments created
	updates  map[int]int                // pull request → comment updates
	requests int
	badAuth  []string // requests sent without the token, or with another
	failNext int      // answer 502 to this many requests
}

// newGHStandIn starts the stand-in; Close stops it.
func newGHStandIn(token string) *ghStandIn {
	g := &ghStandIn{token: token, statuses: map[string][]github.Status{}, comments: map[int64]string{},
		onPR: map[int64]int{}, created: map[int]int{}, updates: map[int]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /repos/acme/web", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"full_name": "acme/web", "default_branch": "main"}`))
	})
	mux.HandleFunc("POST /repos/acme/web/statuses/{sha}", func(w http.ResponseWriter, r *http.Request) {
		var st github.Status
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil || st.State == "" || st.Context == "" {
			http.Error(w, `{"message": "Validation Failed"}`, http.StatusUnprocessableEntity)
			return
		}
		g.statuses[r.PathValue("sha")] = append(g.statuses[r.PathValue("sha")], st)
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"id": 1}`))
	})
	mux.HandleFunc("POST /repos/acme/web/issues/{n}/comments", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		var c struct{ Body string }
		json.NewDecoder(r.Body).Decode(&c)
		id := int64(1000 + len(g.comments))
		g.comments[id], g.onPR[id] = c.Body, n
		g.created[n]++
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id": %d}`, id)
	})
	mux.HandleFunc("PATCH /repos/acme/web/issues/comments/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if _, ok := g.comments[id]; !ok {
			http.Error(w, `{"message": "Not Found"}`, http.StatusNotFound)
			return
		}
		var c struct{ Body string }
		json.NewDecoder(r.Body).Decode(&c)
		g.comments[id] = c.Body
		g.updates[g.onPR[id]]++
		w.Write([]byte(`{}`))
	})
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.requests++
		public := r.Method == "GET" && r.Header.Get("Authorization") == "" // a public repository's details
		if (r.Header.Get("Authorization") != "Bearer "+token && !public) || r.Header.Get("Accept") != "application/vnd.github+json" {
			g.badAuth = append(g.badAuth, fmt.Sprintf("%s %s: Authorization %q, Accept %q", r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Accept")))
			http.Error(w, `{"message": "Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		if g.failNext > 0 {
			g.failNext--
			http.Error(w, `{"message": "Server Error"}`, http.StatusBadGateway)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	return g
}

// check fails t if a request came without the token.
func (g *ghStandIn) check(t *testing.T) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range g.badAuth {
		t.Errorf("GitHub stand-in: %s", r)
	}
	g.badAuth = nil
}

func (g *ghStandIn) states(sha string) []github.Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]github.Status(nil), g.statuses[sha]...)
}

// comment returns the latest body of pull request n's comment, and how
// many comments were created on it and how many times they were updated.
func (g *ghStandIn) comment(n int) (body string, created, updates int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, pr := range g.onPR {
		if pr == n {
			body = g.comments[id]
		}
	}
	return body, g.created[n], g.updates[n]
}

// githubEnv is a lifecycle on a fake driver and builder, the project
// rules, the webhook handler and GitHub feedback, as the server wires
// them, with sources "fetched" from files the test names per commit.
type githubEnv struct {
	t       *testing.T
	ctx     context.Context
	st      *store.Store
	ctl     *deploy.Controller
	rules   *project.Service
	table   *router.Table
	gh      *ghStandIn
	hook    *httptest.Server
	secret  []byte
	data    string
	sources map[string]map[string]string // commit → files
	n       int
	// stopSender stops the GitHub sender fb (as a server shutting down
	// does).
	stopSender func()
	fb         *feedback
}

func newGitHubEnv(t *testing.T) *githubEnv {
	e := &githubEnv{t: t, ctx: context.Background(), data: t.TempDir(), sources: map[string]map[string]string{}, table: &router.Table{}}
	var err error
	if e.st, err = store.Open(filepath.Join(e.data, "slipway.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	box, _ := secrets.Open(filepath.Join(e.data, "secret.key"))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.gh = newGHStandIn("ghp_clone_token")
	t.Cleanup(func() { e.gh.srv.Close(); e.gh.check(t) })
	links := linkReader{store: e.st, box: box}
	fb := newFeedback(e.st, links, &github.Client{BaseURL: e.gh.srv.URL}, project.Hosts{},
		func(h string) string { return "http://" + h }, quiet)
	fb.backoff = func(int) time.Duration { return time.Millisecond }
	e.fb = fb
	var mu sync.Mutex
	fetch := func(ctx context.Context, d store.Deployment, dir string) error {
		mu.Lock()
		files, ok := e.sources[d.CommitSHA]
		mu.Unlock()
		if !ok {
			return fmt.Errorf("commit %s not found", d.CommitSHA)
		}
		os.MkdirAll(dir, 0o755)
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	e.ctl, err = deploy.New(deploy.Config{Store: e.st, Builder: buildtest.New(), Driver: fake.New(fake.Config{}),
		Routes: e.table, Registry: "127.0.0.1:7300", DataDir: e.data, Secrets: box, Log: quiet, Fetch: fetch,
		Observer: deploy.Observers{fb}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ctl.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ctl.Close() })
	e.rules, err = project.New(project.Config{Store: e.st, Lifecycle: e.ctl, Secrets: box, DefaultBranch: fb.client.DefaultBranch})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); fb.run(ctx) }()
	var once sync.Once
	e.stopSender = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(e.stopSender)

	trig := &triggers{rules: e.rules, ctl: e.ctl, links: links, url: func(h string) string { return "http://" + h }, gh: fb}
	hook, err := github.New(github.Config{Lookup: trig.link, Enqueue: trig.enqueue, PullRequest: trig.pullRequest, Log: quiet,
		Seen: func(ctx context.Context, id string) (bool, error) { return e.st.RecordDelivery(ctx, id, "") }, Forget: e.st.ForgetDelivery})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/github/{project}", hook)
	e.hook = httptest.NewServer(mux)
	t.Cleanup(e.hook.Close)
	return e
}

// link creates project name linked to acme/web with a clone token.
func (e *githubEnv) link(name string) store.Project {
	e.t.Helper()
	p, err := e.rules.Create(e.ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	linked, err := e.rules.LinkRepository(e.ctx, p, project.RepoLink{URL: "https://github.com/acme/web", Token: "ghp_clone_token"})
	if err != nil {
		e.t.Fatal(err)
	}
	e.secret = []byte(linked.Secret)
	p, _ = e.st.GetProject(e.ctx, name)
	return p
}

// commit makes a commit whose source holds files, and returns its id.
func (e *githubEnv) commit(files map[string]string) string {
	e.n++
	sha := fmt.Sprintf("%040x", 0xabc000+e.n)
	e.sources[sha] = files
	return sha
}

func (e *githubEnv) deliver(project, event string, payload any) (int, string) {
	e.t.Helper()
	body, _ := json.Marshal(payload)
	req, _ := http.NewRequest("POST", e.hook.URL+"/hooks/github/"+project, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("delivery-%d", time.Now().UnixNano()))
	req.Header.Set("X-Hub-Signature-256", github.Sign(e.secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *githubEnv) push(project, sha string) {
	e.t.Helper()
	code, body := e.deliver(project, "push", map[string]any{"ref": "refs/heads/main", "before": strings.Repeat("0", 40), "after": sha,
		"repository":  map[string]any{"full_name": "acme/web", "clone_url": "https://github.com/acme/web.git", "default_branch": "main"},
		"head_commit": map[string]any{"id": sha, "message": "change"}})
	if code != http.StatusAccepted {
		e.t.Fatalf("push %s: %d %s", sha, code, body)
	}
}

func (e *githubEnv) pullRequest(project, action string, n int, sha, headRepo string) (int, string) {
	e.t.Helper()
	return e.deliver(project, "pull_request", map[string]any{"action": action, "number": n,
		"pull_request": map[string]any{"number": n, "title": "Make it better", "updated_at": time.Now().Format(time.RFC3339Nano),
			"user": map[string]any{"login": "octocat"},
			"head": map[string]any{"sha": sha, "ref": "feature", "repo": map[string]any{"full_name": headRepo}}},
		"repository": map[string]any{"full_name": "acme/web", "clone_url": "https://github.com/acme/web.git"}})
}

// latest waits for the newest deployment of environment env of p to end
// its lifecycle (RUNNING, FAILED or STOPPED) and for the outbox to empty.
func (e *githubEnv) latest(p store.Project, env string) store.Deployment {
	e.t.Helper()
	var d store.Deployment
	deadline := time.Now().Add(30 * time.Second)
	for {
		envs, _ := e.st.ListEnvironments(e.ctx, p.ID)
		var envID string
		for _, x := range envs {
			if x.Name == env {
				envID = x.ID
			}
		}
		ds, _ := e.st.ListDeployments(e.ctx, store.DeploymentFilter{ProjectID: p.ID, EnvironmentID: envID, Limit: 1})
		queued, _ := e.st.ListGitHubRequests(e.ctx, p.ID)
		if envID != "" && len(ds) == 1 {
			d = ds[0]
			if s := deploy.Status(d.Status); (s == deploy.Running || s.Terminal()) && len(queued) == 0 {
				return d
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("environment %s: no deployment settled (last %+v; %d requests queued)", env, d, len(queued))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStates waits until commit sha has n statuses (the sender is
// asynchronous, and the lifecycle queues the last one after it stores the
// status change that others can already see) and returns them.
func (g *ghStandIn) waitStates(sha string, n int) []github.Status {
	deadline := time.Now().Add(20 * time.Second)
	for {
		ss := g.states(sha)
		if len(ss) >= n || time.Now().After(deadline) {
			return ss
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitComment waits until pull request n's comment holds each of want.
func (g *ghStandIn) waitComment(n int, want ...string) (body string, created, updates int) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		body, created, updates = g.comment(n)
		all := true
		for _, w := range want {
			all = all && strings.Contains(body, w)
		}
		if all || time.Now().After(deadline) {
			return body, created, updates
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func states(ss []github.Status) string {
	var out []string
	for _, s := range ss {
		out = append(out, s.State)
	}
	return strings.Join(out, " → ")
}

// TestGitHubCommitStatuses: each deployment a push webhook makes sets
// its commit's status with the clone token, in order: pending when it is
// created, then success with its preview URL, or failure with the phase
// and the reason's first line; a GitHub that fails for a while gets them
// later, still in order.
func TestGitHubCommitStatuses(t *testing.T) {
	e := newGitHubEnv(t)
	p := e.link("web")

	good := e.commit(map[string]string{"index.html": "<h1>hello</h1>\n"})
	e.push("web", good)
	d := e.latest(p, "production")
	if d.Status != "RUNNING" {
		t.Fatalf("deployment of %s: %s %s", good, d.Status, d.FailureReason)
	}
	ss := e.gh.waitStates(good, 2)
	if states(ss) != "pending → success" {
		t.Fatalf("statuses of a good commit: %s (%+v)", states(ss), ss)
	}
	if ss[1].TargetURL != "http://"+d.ID+".slipway.localhost" || ss[0].Context != "slipway/web/production" ||
		ss[1].Context != ss[0].Context || !strings.Contains(ss[1].Description, "http://web-production.slipway.localhost") {
		t.Errorf("success status: %+v", ss[1])
	}

	bad := e.commit(map[string]string{"index.html": "<h1>hello</h1>\n", "FAIL": "x"})
	e.push("web", bad)
	d = e.latest(p, "production")
	ss = e.gh.waitStates(bad, 2)
	if d.Status != "FAILED" || states(ss) != "pending → failure" {
		t.Fatalf("failing commit: deployment %s, statuses %s", d.Status, states(ss))
	}
	if !strings.HasPrefix(ss[1].Description, "BUILDING failed: build failed") || strings.Contains(ss[1].Description, "\n") ||
		len([]rune(ss[1].Description)) > github.MaxDescription {
		t.Errorf("failure status description: %q (reason %q)", ss[1].Description, d.FailureReason)
	}

	// GitHub answers 502 for a while: the statuses come later, in order.
	e.gh.mu.Lock()
	e.gh.failNext = 3
	e.gh.mu.Unlock()
	later := e.commit(map[string]string{"index.html": "<h1>later</h1>\n"})
	e.push("web", later)
	e.latest(p, "production")
	if ss := e.gh.waitStates(later, 2); states(ss) != "pending → success" {
		t.Errorf("statuses after GitHub failed three times: %s", states(ss))
	}

	// No clone token: nothing to report with, nothing queued.
	q, err := e.rules.Create(e.ctx, "public")
	if err != nil {
		t.Fatal(err)
	}
	linked, _ := e.rules.LinkRepository(e.ctx, q, project.RepoLink{URL: "https://github.com/acme/web"})
	e.secret = []byte(linked.Secret)
	e.gh.mu.Lock()
	before := e.gh.requests
	e.gh.mu.Unlock()
	quiet := e.commit(map[string]string{"index.html": "quiet\n"})
	e.push("public", quiet)
	e.latest(q, "production")
	e.gh.mu.Lock()
	after := e.gh.requests
	e.gh.mu.Unlock()
	if n := len(e.gh.states(quiet)); n != 0 || after != before {
		t.Errorf("a project without a clone token sent %d statuses, %d requests", n, after-before)
	}
}

// TestPullRequestPreviews: with previews on, a pull request deploys into
// pr-<n> at web-pr-<n>.<base>, with one comment on it kept up to date;
// new commits redeploy; a fork's preview captures none of production's
// variables while the repository's own pull requests get them; closing
// stops and deletes the environment, its routes and its files.
func TestPullRequestPreviews(t *testing.T) {
	e := newGitHubEnv(t)
	p := e.link("web")
	prod, _ := e.st.GetEnvironment(e.ctx, p.ID, "production")
	if err := e.rules.SetVar(e.ctx, prod, "DATABASE_URL", "postgres://prod-secret", true); err != nil {
		t.Fatal(err)
	}
	src := map[string]string{"index.html": "<h1>preview</h1>\n"}
	first := e.commit(src)

	// Off by default.
	if code, body := e.pullRequest("web", "opened", 7, first, "acme/web"); code != 200 || !strings.Contains(body, "previews are off") {
		t.Fatalf("pull request with previews off: %d %s", code, body)
	}
	p.Settings.Previews = true
	if err := e.rules.UpdateSettings(e.ctx, p, p.Settings); err != nil {
		t.Fatal(err)
	}
	if code, body := e.pullRequest("web", "opened", 7, first, "acme/web"); code != http.StatusAccepted {
		t.Fatalf("opened: %d %s", code, body)
	}
	d := e.latest(p, "pr-7")
	if d.Status != "RUNNING" || d.Trigger != "pull_request" || d.CommitSHA != first || d.CommitMessage != "#7: Make it better" {
		t.Fatalf("preview deployment: %+v", d)
	}
	if r, ok := e.table.Lookup("web-pr-7.slipway.localhost"); !ok || r.Deployment != d.ID {
		t.Errorf("web-pr-7.slipway.localhost routes to %+v, %v; want %s", r, ok, d.ID)
	}
	if vars := d.Captured.Vars; len(vars) != 1 || vars[0].Name != "DATABASE_URL" {
		t.Errorf("a pull request of the repository itself captured %+v, want production's DATABASE_URL", vars)
	}
	if ss := e.gh.waitStates(first, 2); states(ss) != "pending → success" || ss[1].Context != "slipway/web/preview" {
		t.Errorf("preview statuses: %+v", ss)
	}
	body, created, _ := e.gh.waitComment(7, "Live")
	if created != 1 || !strings.Contains(body, "http://web-pr-7.slipway.localhost") || !strings.Contains(body, "Live") {
		t.Fatalf("comment after opened (%d created): %s", created, body)
	}

	// New commits: the same comment, updated.
	second := e.commit(map[string]string{"index.html": "<h1>preview 2</h1>\n"})
	if code, body := e.pullRequest("web", "synchronize", 7, second, "acme/web"); code != http.StatusAccepted {
		t.Fatalf("synchronize: %d %s", code, body)
	}
	d2 := e.latest(p, "pr-7")
	e.gh.waitStates(second, 2)
	body, created, updates := e.gh.waitComment(7, "Live", second[:7])
	if d2.CommitSHA != second || d2.Status != "RUNNING" || created != 1 || updates < 2 || !strings.Contains(body, second[:7]) {
		t.Fatalf("after synchronize: deployment %s %s; %d comments created, %d updates; body %s", d2.CommitSHA, d2.Status, created, updates, body)
	}
	if r, _ := e.table.Lookup("web-pr-7.slipway.localhost"); r.Deployment != d2.ID {
		t.Errorf("web-pr-7 routes to %s after synchronize, want %s", r.Deployment, d2.ID)
	}

	// A fork: no production variables.
	forked := e.commit(map[string]string{"index.html": "<h1>fork</h1>\n"})
	if code, body := e.pullRequest("web", "opened", 8, forked, "mallory/web"); code != http.StatusAccepted {
		t.Fatalf("fork opened: %d %s", code, body)
	}
	fd := e.latest(p, "pr-8")
	if fd.Status != "RUNNING" || fd.Captured == nil || len(fd.Captured.Vars) != 0 {
		t.Fatalf("fork preview: %s, captured %+v", fd.Status, fd.Captured)
	}
	if body, _, _ := e.gh.waitComment(8, "Live"); !strings.Contains(body, "fork") {
		t.Errorf("fork comment does not say so: %s", body)
	}
	if b, err := json.Marshal(fd.Captured); err != nil || strings.Contains(string(b), "DATABASE_URL") {
		t.Errorf("the fork's capture names production's variable: %s", b)
	}

	// Closed: environment, routes, deployments and their files go; the
	// comment says so.
	src7 := filepath.Join(e.data, "sources", d2.ID+".tar.gz")
	if _, err := os.Stat(src7); err != nil {
		t.Fatalf("the preview's source was not kept: %v", err)
	}
	if code, body := e.pullRequest("web", "closed", 7, second, "acme/web"); code != http.StatusAccepted {
		t.Fatalf("closed: %d %s", code, body)
	}
	if _, err := e.st.GetEnvironment(e.ctx, p.ID, "pr-7"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pr-7 after close: %v", err)
	}
	for _, host := range []string{"web-pr-7.slipway.localhost", d.ID + ".slipway.localhost", d2.ID + ".slipway.localhost"} {
		if r, ok := e.table.Lookup(host); ok {
			t.Errorf("%s still routed after close: %+v", host, r)
		}
	}
	if _, err := e.st.GetDeployment(e.ctx, d2.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the preview's deployment after close: %v", err)
	}
	if _, err := os.Stat(src7); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the preview's source after close: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		body, created, _ = e.gh.comment(7)
		if strings.Contains(body, "Removed") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if created != 1 || !strings.Contains(body, "Removed") {
		t.Errorf("comment after close (%d created): %s", created, body)
	}
	if r, ok := e.table.Lookup("web-pr-8.slipway.localhost"); !ok || r.Deployment != fd.ID {
		t.Errorf("closing #7 touched #8's preview: %+v %v", r, ok)
	}
	// Closed again (a redelivery's twin): nothing left to do.
	if code, body := e.pullRequest("web", "closed", 7, second, "acme/web"); code != 200 || !strings.Contains(body, "no preview") {
		t.Errorf("closed twice: %d %s", code, body)
	}
	// A user's own environment named like a preview is never taken over.
	if _, err := e.rules.CreateEnvironment(e.ctx, p, "pr-9", nil); err != nil {
		t.Fatal(err)
	}
	if code, body := e.pullRequest("web", "opened", 9, forked, "acme/web"); code != 200 || !strings.Contains(body, "not a pull request's preview") {
		t.Errorf("pull request #9 with a user's pr-9: %d %s", code, body)
	}
}

// TestGitHubOutboxSurvivesRestart: what could not be sent before a
// restart (GitHub down) is sent by the next server's sender, in order;
// a comment deleted on GitHub is posted again rather than lost.
func TestGitHubOutboxSurvivesRestart(t *testing.T) {
	e := newGitHubEnv(t)
	p := e.link("web")
	p.Settings.Previews = true
	if err := e.rules.UpdateSettings(e.ctx, p, p.Settings); err != nil {
		t.Fatal(err)
	}
	e.gh.mu.Lock()
	e.gh.failNext = 1 << 30 // down
	e.gh.mu.Unlock()
	e.fb.backoff = func(int) time.Duration { return 300 * time.Millisecond }
	sha := e.commit(map[string]string{"index.html": "x\n"})
	if code, body := e.pullRequest("web", "opened", 5, sha, "acme/web"); code != http.StatusAccepted {
		t.Fatalf("opened: %d %s", code, body)
	}
	// The sender keeps retrying; a server restart leaves the outbox as
	// it is.
	waitUntilQueued := time.Now().Add(20 * time.Second)
	for {
		reqs, _ := e.st.ListGitHubRequests(e.ctx, p.ID)
		ds, _ := e.st.ListDeployments(e.ctx, store.DeploymentFilter{ProjectID: p.ID, Limit: 1})
		if len(ds) == 1 && ds[0].Status == "RUNNING" && len(reqs) == 4 && reqs[0].Attempts > 0 && reqs[1].Attempts > 0 {
			break // pending and success statuses, two comments
		}
		if time.Now().After(waitUntilQueued) {
			t.Fatalf("outbox: %+v", reqs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.stopSender()
	e.fb.backoff = func(int) time.Duration { return time.Millisecond }
	e.gh.mu.Lock()
	e.gh.failNext = 0 // back
	e.gh.mu.Unlock()
	// The sender holds nothing but the store: running it again is what a
	// restarted server does.
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.fb.run(ctx) }()
	defer func() { cancel(); <-done }()
	if ss := e.gh.waitStates(sha, 2); states(ss) != "pending → success" {
		t.Errorf("statuses after the restart: %s", states(ss))
	}
	body, created, _ := e.gh.waitComment(5, "Live")
	if created != 1 || !strings.Contains(body, "web-pr-5") {
		t.Errorf("comment after the restart (%d created): %s", created, body)
	}

	// Someone deletes the comment on GitHub: the next update posts it anew.
	e.gh.mu.Lock()
	for id, n := range e.gh.onPR {
		if n == 5 {
			delete(e.gh.comments, id)
			delete(e.gh.onPR, id)
		}
	}
	e.gh.mu.Unlock()
	second := e.commit(map[string]string{"index.html": "y\n"})
	if code, body := e.pullRequest("web", "synchronize", 5, second, "acme/web"); code != http.StatusAccepted {
		t.Fatalf("synchronize: %d %s", code, body)
	}
	body, created, _ = e.gh.waitComment(5, "Live", second[:7])
	if created != 2 || !strings.Contains(body, second[:7]) {
		t.Errorf("after the comment was deleted (%d created): %s", created, body)
	}
	pr, _ := e.st.GetPullRequest(e.ctx, p.ID, 5)
	e.gh.mu.Lock()
	_, ok := e.gh.comments[pr.CommentID]
	e.gh.mu.Unlock()
	if !ok {
		t.Errorf("the stored comment id %d is not the new comment", pr.CommentID)
	}
}

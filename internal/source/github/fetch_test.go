package github

import (
	"context"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/source"
)

func requireGit(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("git")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("git is not installed")
		}
		t.Skip("skipping: git is not installed (set CI to make this fatal)")
	}
	return bin
}

// upstream is a repository standing in for GitHub: two commits on main
// (old, then tip) and one on a second branch.
type upstream struct {
	dir             string
	old, tip, other string
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	requireGit(t)
	root := t.TempDir()
	u := &upstream{dir: filepath.Join(root, "hello-world.git")}
	work := filepath.Join(root, "work")
	env := []string{"HOME=" + root, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Codertocat", "GIT_AUTHOR_EMAIL=cat@example.com",
		"GIT_COMMITTER_NAME=Codertocat", "GIT_COMMITTER_EMAIL=cat@example.com"}
	git := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(root, "init", "-q", "-b", "main", work)
	write("app.py", "print('old')\n")
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "Old version")
	u.old = git(work, "rev-parse", "HEAD")
	write("app.py", "print('tip')\n")
	git(work, "commit", "-q", "-am", "Tip of main\n\nWith a body.")
	u.tip = git(work, "rev-parse", "HEAD")
	git(work, "checkout", "-q", "-b", "other", u.old)
	write("other.txt", "other\n")
	git(work, "add", ".")
	git(work, "commit", "-q", "-m", "Other branch")
	u.other = git(work, "rev-parse", "HEAD")
	git(root, "clone", "-q", "--bare", work, u.dir)
	return u
}

// serve serves the upstream over smart HTTP with git http-backend, behind
// basic auth. With v0 the Git-Protocol header is dropped, so the server
// speaks protocol v0 and refuses to send commits that are no ref's tip.
func (u *upstream) serve(t *testing.T, user, password string, v0 bool) string {
	bin := requireGit(t)
	backend := &cgi.Handler{
		Path: bin, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(u.dir), "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + t.TempDir()},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
			http.Error(w, "auth required", http.StatusUnauthorized)
			return
		}
		if v0 {
			r.Header.Del("Git-Protocol")
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/hello-world.git"
}

func fetchCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func checkCheckout(t *testing.T, dir, sha, file, content string) {
	t.Helper()
	info, ok := source.GitInfo(context.Background(), dir)
	if !ok || info.Commit != sha || info.Branch != "" {
		t.Errorf("checkout at %+v (ok %v), want detached at %s", info, ok, sha)
	}
	if b, err := os.ReadFile(filepath.Join(dir, file)); err != nil || string(b) != content {
		t.Errorf("%s = %q, %v; want %q", file, b, err, content)
	}
}

func TestFetchShallowFromLocalRepository(t *testing.T) {
	u := newUpstream(t)
	dir := filepath.Join(t.TempDir(), "src")
	// Protocol v2 lets a client fetch any reachable commit by id, even one
	// that is no branch's tip.
	if err := Fetch(fetchCtx(t), "file://"+u.dir, u.old, nil, dir); err != nil {
		t.Fatal(err)
	}
	checkCheckout(t, dir, u.old, "app.py", "print('old')\n")
	if _, err := os.Stat(filepath.Join(dir, ".git", "shallow")); err != nil {
		t.Errorf("not a shallow fetch: %v", err)
	}
	info, _ := source.GitInfo(context.Background(), dir)
	if info.Message != "Old version" || info.Author != "Codertocat <cat@example.com>" {
		t.Errorf("commit info %+v", info)
	}
}

func TestFetchOverHTTPWithCredentials(t *testing.T) {
	u := newUpstream(t)
	const token = "ghs_16C7e42F292c6912E7710c838347Ae178B4a"
	for _, v0 := range []bool{false, true} {
		url := u.serve(t, "x-access-token", token, v0)
		dir := filepath.Join(t.TempDir(), "src")
		// With v0 the server refuses u.old by id: Fetch falls back to
		// fetching the branches.
		if err := Fetch(fetchCtx(t), url, u.old, &Credentials{Password: token}, dir); err != nil {
			t.Fatalf("v0=%v: %v", v0, err)
		}
		checkCheckout(t, dir, u.old, "app.py", "print('old')\n")
		_, shallowErr := os.Stat(filepath.Join(dir, ".git", "shallow"))
		if v0 == (shallowErr == nil) {
			t.Errorf("v0=%v: shallow file: %v", v0, shallowErr)
		}
		cfg, _ := os.ReadFile(filepath.Join(dir, ".git", "config"))
		if strings.Contains(string(cfg), token) {
			t.Errorf("the token was written to .git/config:\n%s", cfg)
		}
	}
}

func TestFetchFailures(t *testing.T) {
	u := newUpstream(t)
	const token = "ghs_right_token_0123456789"
	url := u.serve(t, "x-access-token", token, false)

	parent := t.TempDir()
	dir := filepath.Join(parent, "src")
	err := Fetch(fetchCtx(t), url, u.tip, &Credentials{Password: "ghs_wrong_token_abcdef"}, dir)
	t.Logf("wrong token: %v", err)
	if err == nil || !strings.Contains(err.Error(), "Authentication failed") {
		t.Errorf("wrong token: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "ghs_wrong_token_abcdef") {
		t.Errorf("the token is in the error: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a failed Fetch left %s behind", dir)
	}

	// Credentials in the URL never show in errors.
	withUser := strings.Replace(url, "http://", "http://x-access-token:ghs_wrong_token_abcdef@", 1)
	err = Fetch(fetchCtx(t), withUser, u.tip, nil, dir)
	t.Logf("credentials in the URL: %v", err)
	if err == nil || strings.Contains(err.Error(), "ghs_wrong_token_abcdef") {
		t.Errorf("credentials in the URL: %v", err)
	}

	err = Fetch(fetchCtx(t), "file://"+u.dir, strings.Repeat("1", 40), nil, dir)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown commit: %v", err)
	}

	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "x"), nil, 0o644)
	if err := Fetch(fetchCtx(t), "file://"+u.dir, u.tip, nil, empty); err == nil {
		t.Error("Fetch into a non-empty directory succeeded")
	}
	if _, err := os.Stat(filepath.Join(empty, "x")); err != nil {
		t.Error("Fetch removed a file it did not create")
	}
	for _, bad := range []struct{ url, sha string }{
		{"file://" + u.dir, "main"},
		{"file://" + u.dir, "--upload-pack=touch /tmp/pwned"},
		{"--upload-pack=touch /tmp/pwned", u.tip},
		{"ext::sh -c touch% /tmp/pwned", u.tip},
	} {
		if err := Fetch(fetchCtx(t), bad.url, bad.sha, nil, filepath.Join(t.TempDir(), "x")); err == nil {
			t.Errorf("Fetch(%q, %q) succeeded", bad.url, bad.sha)
		}
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Error("a command ran")
	}
	if err := Fetch(fetchCtx(t), "file://"+u.dir, u.tip, &Credentials{Password: "a\nb"}, filepath.Join(t.TempDir(), "x")); err == nil {
		t.Error("credentials with a newline accepted")
	}
}

// A signed delivery for a pushed commit is queued, and the queued event is
// enough to fetch that commit: the path a webhook deployment takes.
func TestWebhookThenFetch(t *testing.T) {
	u := newUpstream(t)
	payload := readTestdata(t, "push.json")
	payload = []byte(strings.NewReplacer(
		"0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", u.tip,
		"6113728f27ae82c7b1a177c8d03f9e96e0adf246", u.old,
	).Replace(string(payload)))
	hk := newHook(t, nil)
	if code, a := hk.deliver(t, delivery{project: "hello", event: "push", id: "e2e", body: payload}); code != 202 {
		t.Fatalf("%d %+v", code, a)
	}
	q := hk.take()
	if len(q) != 1 {
		t.Fatalf("queued %d", len(q))
	}
	dir := filepath.Join(t.TempDir(), "src")
	// The worker fetches from the linked repository (here a local one).
	if err := Fetch(fetchCtx(t), "file://"+u.dir, q[0].NewSHA, nil, dir); err != nil {
		t.Fatal(err)
	}
	checkCheckout(t, dir, u.tip, "app.py", "print('tip')\n")
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://x-access-token:secret@github.com/o/r.git": "https://github.com/o/r.git",
		"https://ghp_token@github.com/o/r":                 "https://github.com/o/r",
		"git@github.com:o/r.git":                           "git@github.com:o/r.git",
		"file:///srv/r.git":                                "file:///srv/r.git",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

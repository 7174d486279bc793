package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/build/buildtest"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime/fake"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/source/github"
	"github.com/slipwayhq/slipway/internal/store"
)

// TestProductionFollowsDefaultBranch: with a GitHub repository linked,
// pushes to its default branch deploy to production whatever its name: the
// branch is read from GitHub's API when the repository is linked (with the
// clone token) and from each push's payload, which wins when it changes.
// A branch mapped to an environment explicitly stays there. GitHub is a
// stand-in on loopback; the webhook handler and the triggers are the
// server's own.
func TestProductionFollowsDefaultBranch(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	st, err := store.Open(filepath.Join(data, "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	box, _ := secrets.Open(filepath.Join(data, "secret.key"))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctl, err := deploy.New(deploy.Config{Store: st, Builder: buildtest.New(), Driver: fake.New(fake.Config{}),
		Routes: &router.Table{}, Registry: "127.0.0.1:7300", DataDir: data, Secrets: box, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctl.Start(ctx)
	defer ctl.Close()
	rules, err := project.New(project.Config{Store: st, Lifecycle: ctl, Secrets: box, DefaultBranch: github.DefaultBranch})
	if err != nil {
		t.Fatal(err)
	}

	// GitHub's REST API, as GitHub Enterprise Server lays it out.
	var gotAuth []string
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v3/repos/acme/web" {
			http.NotFound(w, r)
			return
		}
		gotAuth = append(gotAuth, r.Header.Get("Authorization"))
		json.NewEncoder(w).Encode(map[string]any{"full_name": "acme/web", "default_branch": "trunk"})
	}))
	defer gh.Close()
	repoURL := gh.URL + "/acme/web"

	p, err := rules.Create(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	linked, err := rules.LinkRepository(ctx, p, project.RepoLink{URL: repoURL, Token: "ghp_clone_token"})
	if err != nil {
		t.Fatal(err)
	}
	if linked.DefaultBranch != "trunk" || len(gotAuth) != 1 || gotAuth[0] != "Bearer ghp_clone_token" {
		t.Fatalf("linked %+v; the API was asked with %q", linked, gotAuth)
	}
	if p, _ = st.GetProject(ctx, "web"); p.RepoDefaultBranch != "trunk" {
		t.Fatalf("default branch stored: %q", p.RepoDefaultBranch)
	}

	trig := &triggers{rules: rules, ctl: ctl, links: linkReader{store: st, box: box}, url: func(h string) string { return "http://" + h }}
	hook, err := github.New(github.Config{Lookup: trig.link, Enqueue: trig.enqueue, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/github/{project}", hook)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	secret := []byte(linked.Secret)

	n := 0
	push := func(branch, defaultBranch string) (int, string) {
		t.Helper()
		n++
		sha := fmt.Sprintf("%040x", n)
		repo := map[string]any{"full_name": "acme/web", "clone_url": repoURL + ".git"}
		if defaultBranch != "" {
			repo["default_branch"] = defaultBranch
		}
		body, _ := json.Marshal(map[string]any{"ref": "refs/heads/" + branch, "before": strings.Repeat("0", 40), "after": sha,
			"repository": repo, "head_commit": map[string]any{"id": sha, "message": "on " + branch}})
		req, _ := http.NewRequest("POST", srv.URL+"/hooks/github/web", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", "d-"+sha[:8])
		req.Header.Set("X-Hub-Signature-256", github.Sign(secret, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	latest := func() store.Deployment {
		t.Helper()
		ds, err := st.ListDeployments(ctx, store.DeploymentFilter{ProjectID: p.ID, Limit: 1})
		if err != nil || len(ds) != 1 {
			t.Fatalf("deployments: %v %d", err, len(ds))
		}
		return ds[0]
	}

	// Read from the API when linked: trunk is production's.
	if code, body := push("trunk", ""); code != http.StatusAccepted {
		t.Fatalf("push to trunk: %d %s", code, body)
	}
	if d := latest(); d.EnvironmentName != "production" || d.Branch != "trunk" || d.Trigger != "webhook" || d.SourceURL != repoURL {
		t.Errorf("push to trunk deployed %+v", d)
	}
	// Not the default branch, not mapped: ignored.
	if code, body := push("develop", "trunk"); code != http.StatusOK || !strings.Contains(body, "ignored") {
		t.Errorf("push to develop: %d %s", code, body)
	}
	// The default branch renamed on GitHub: the payload says so.
	if code, body := push("release", "release"); code != http.StatusAccepted {
		t.Fatalf("push to the new default branch: %d %s", code, body)
	}
	if d := latest(); d.EnvironmentName != "production" || d.Branch != "release" {
		t.Errorf("push to release deployed to %s", d.EnvironmentName)
	}
	if p, _ = st.GetProject(ctx, "web"); p.RepoDefaultBranch != "release" {
		t.Errorf("default branch after the payload: %q", p.RepoDefaultBranch)
	}
	if code, body := push("trunk", "release"); code != http.StatusOK || !strings.Contains(body, "ignored") {
		t.Errorf("push to the former default branch: %d %s", code, body)
	}
	// main and master stay production's, as mapped when it was created.
	if code, body := push("main", "release"); code != http.StatusAccepted {
		t.Errorf("push to main: %d %s", code, body)
	}
	// An explicit mapping wins over the default branch.
	if _, err := rules.CreateEnvironment(ctx, p, "staging", []string{"release"}); err != nil {
		t.Fatal(err)
	}
	if code, body := push("release", "release"); code != http.StatusAccepted {
		t.Fatalf("push to release: %d %s", code, body)
	}
	if d := latest(); d.EnvironmentName != "staging" {
		t.Errorf("a branch mapped to staging deployed to %s", d.EnvironmentName)
	}
	// Linking another repository forgets the default branch of the old one
	// (this one's host has no API: learned from its first push instead).
	if _, err := rules.LinkRepository(ctx, p, project.RepoLink{URL: "file:///srv/git/other"}); err != nil {
		t.Fatal(err)
	}
	if p, _ = st.GetProject(ctx, "web"); p.RepoDefaultBranch != "" {
		t.Errorf("default branch after relinking: %q", p.RepoDefaultBranch)
	}
}

func TestGitHubAPIURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://github.com/acme/web":            "https://api.github.com/repos/acme/web",
		"https://github.com/acme/web.git":        "https://api.github.com/repos/acme/web",
		"https://ghe.example.com/acme/web.git":   "https://ghe.example.com/api/v3/repos/acme/web",
		"http://127.0.0.1:8080/acme/web":         "http://127.0.0.1:8080/api/v3/repos/acme/web",
		"file:///srv/git/web":                    "",
		"https://github.com/acme":                "",
		"https://github.com/acme/web/tree/x/y/z": "",
	} {
		got, err := github.APIURL(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("APIURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/source/github"
)

// TestPullRequestPreviewEndToEnd: a signed pull_request webhook builds the
// pull request's head commit with BuildKit and runs it under runc at
// <project>-pr-<n>.<base>; GitHub (a stand-in on loopback) gets the
// commit's statuses, pending then success with the preview URL, and one
// comment with the URL. The repository's own pull request sees
// production's variables, a fork's does not. Closing the pull request
// takes the preview down.
func TestPullRequestPreviewEndToEnd(t *testing.T) {
	h := startServer(t)
	defer h.github.check(t)
	h.call("POST", "/api/v1/projects", api.CreateProjectRequest{Name: "previewed"}, nil)
	repo := copyApp(t, t.TempDir())
	var link api.Repository
	b, _ := json.Marshal(api.LinkRepositoryRequest{URL: "file://" + repo, Token: "ghp_clone_token"})
	if code, resp := h.do("PUT", "/api/v1/projects/previewed/repository", bytes.NewReader(b), "application/json"); code != 200 || json.Unmarshal(resp, &link) != nil {
		t.Fatalf("link: %d %s", code, resp)
	}
	if code := h.call("PATCH", "/api/v1/projects/previewed/settings", map[string]bool{"previews": true}, nil); code != 200 {
		t.Fatalf("turning previews on: %d", code)
	}
	if code := h.call("PUT", "/api/v1/projects/previewed/environments/production/variables/DATABASE_URL",
		map[string]any{"value": "postgres://prod-secret", "secret": true}, nil); code != 200 {
		t.Fatalf("setting a production variable: %d", code)
	}

	git(t, repo, "checkout", "-q", "-b", "feature")
	os.WriteFile(filepath.Join(repo, "VERSION"), []byte("preview\n"), 0o644)
	git(t, repo, "add", "VERSION")
	git(t, repo, "commit", "-q", "-m", "a change to preview")
	sha := strings.TrimSpace(git(t, repo, "rev-parse", "HEAD"))

	n := 0
	deliver := func(action string, number int, headRepo string) {
		t.Helper()
		n++
		payload, _ := json.Marshal(map[string]any{"action": action, "number": number,
			"pull_request": map[string]any{"number": number, "title": "Preview me", "updated_at": fmt.Sprintf("2026-12-04T11:00:%02dZ", n),
				"user": map[string]any{"login": "grace"},
				"head": map[string]any{"sha": sha, "ref": "feature", "repo": map[string]any{"full_name": headRepo}}},
			"repository": map[string]any{"full_name": "acme/web", "clone_url": "file://" + repo}})
		req, _ := http.NewRequest("POST", h.api+"/hooks/github/previewed", bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "pull_request")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("pr-delivery-%d", n))
		req.Header.Set("X-Hub-Signature-256", github.Sign([]byte(link.WebhookSecret), payload))
		resp, err := h.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("pull_request %s #%d: %d %s", action, number, resp.StatusCode, body)
		}
	}
	preview := func(env string) api.Deployment {
		t.Helper()
		for _, d := range h.deployments("previewed") {
			if d.Environment == env {
				return h.wait(d.ID)
			}
		}
		t.Fatalf("no deployment in %s", env)
		return api.Deployment{}
	}

	deliver("opened", 3, "acme/web")
	d := preview("pr-3")
	if d.Status != "RUNNING" || d.Trigger != "pull_request" || d.Commit.SHA != sha {
		for _, l := range h.buildLog(d.ID) {
			t.Log(l.Text)
		}
		t.Fatalf("preview deployment: %+v", d)
	}
	host := "previewed-pr-3.slipway.localhost"
	if code, body, err := h.body(host, "/"); err != nil || code != 200 || !strings.Contains(body, d.ID) {
		t.Fatalf("%s answers %d %q %v", host, code, body, err)
	}
	if _, body, _ := h.body(host, "/env?name=DATABASE_URL"); body != "postgres://prod-secret" {
		t.Errorf("the repository's own pull request sees DATABASE_URL=%q, want production's", body)
	}

	// GitHub hears of it (the sender is asynchronous).
	deadline := time.Now().Add(30 * time.Second)
	var ss []github.Status
	var comment string
	var created int
	for time.Now().Before(deadline) {
		ss = h.github.states(sha)
		comment, created, _ = h.github.comment(3)
		if len(ss) >= 2 && strings.Contains(comment, "Live") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if states(ss) != "pending → success" || !strings.Contains(ss[1].TargetURL, d.ID+".slipway.localhost") || ss[1].Context != "slipway/previewed/preview" {
		t.Errorf("statuses of %s: %+v", sha, ss)
	}
	if created != 1 || !strings.Contains(comment, host) {
		t.Errorf("comment (%d created): %s", created, comment)
	}

	// The same commit from a fork: built from cache, no secrets.
	deliver("opened", 4, "mallory/web")
	fd := preview("pr-4")
	if fd.Status != "RUNNING" {
		t.Fatalf("fork preview: %+v", fd)
	}
	if code, body, _ := h.body("previewed-pr-4.slipway.localhost", "/env?name=DATABASE_URL"); code != 200 || body != "" {
		t.Errorf("the fork's preview sees DATABASE_URL=%q (%d), want nothing", body, code)
	}

	for _, number := range []int{3, 4} {
		deliver("closed", number, map[int]string{3: "acme/web", 4: "mallory/web"}[number])
	}
	var envs []api.Environment
	h.call("GET", "/api/v1/projects/previewed/environments", nil, &envs)
	for _, e := range envs {
		if strings.HasPrefix(e.Name, "pr-") {
			t.Errorf("environment %s left after its pull request closed", e.Name)
		}
	}
	if code, _, _ := h.body(host, "/"); code != http.StatusNotFound {
		t.Errorf("%s after close: %d, want 404", host, code)
	}
	if code, _, _ := h.body(d.ID+".slipway.localhost", "/"); code != http.StatusNotFound {
		t.Errorf("the closed preview's deployment URL answers %d, want 404", code)
	}
	deadline = time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if comment, created, _ = h.github.comment(3); strings.Contains(comment, "Removed") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if created != 1 || !strings.Contains(comment, "Removed") {
		t.Errorf("comment after close (%d created): %s", created, comment)
	}
}

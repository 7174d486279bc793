package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func prPayload(action string, n int, sha, headRepo, updated string) []byte {
	b, _ := json.Marshal(map[string]any{"action": action, "number": n,
		"pull_request": map[string]any{"number": n, "title": "Add a thing\nwith a second line", "updated_at": updated, "merged": action == "closed",
			"user": map[string]any{"login": "octocat"},
			"head": map[string]any{"sha": sha, "ref": "feature/x", "repo": map[string]any{"full_name": headRepo}}},
		"repository": map[string]any{"full_name": "octo-org/hello-world", "clone_url": "https://github.com/octo-org/hello-world.git"}})
	return b
}

// TestPullRequestDeliveries: pull_request events are verified like
// pushes, parsed, checked against the linked repository, deduplicated on
// what the signature covers and handed to Config.PullRequest; without
// it, or for actions Slipway does not act on, they are ignored.
func TestPullRequestDeliveries(t *testing.T) {
	var mu sync.Mutex
	var got []PullRequestEvent
	hk := newHook(t, func(c *Config) {
		c.PullRequest = func(_ context.Context, ev PullRequestEvent) error {
			mu.Lock()
			defer mu.Unlock()
			if ev.Number == 13 {
				return fmt.Errorf("%w: previews are off", ErrIgnored)
			}
			got = append(got, ev)
			return nil
		}
	})
	sha := strings.Repeat("a", 40)
	opened := prPayload("opened", 7, sha, "octo-org/hello-world", "2026-12-04T10:00:00Z")
	code, a := hk.deliver(t, delivery{project: "hello", event: "pull_request", id: "d1", body: opened})
	if code != http.StatusAccepted || a.Status != "queued" {
		t.Fatalf("opened: %d %+v", code, a)
	}
	if code, a := hk.deliver(t, delivery{project: "hello", event: "pull_request", id: "d2", body: opened}); code != 200 || a.Status != "duplicate" {
		t.Errorf("the same event under a new delivery id: %d %+v", code, a)
	}
	if code, _ := hk.deliver(t, delivery{project: "hello", event: "pull_request", id: "d3", body: opened, signature: "sha256=00"}); code != 401 {
		t.Errorf("bad signature: %d", code)
	}
	other := prPayload("opened", 8, sha, "octo-org/hello-world", "x")
	i := strings.LastIndex(string(other), `"octo-org/hello-world"`) // the base repository's (the last key)
	other = []byte(string(other[:i]) + `"evil/other"` + string(other[i+len(`"octo-org/hello-world"`):]))
	if code, _ := hk.deliver(t, delivery{project: "hello", event: "pull_request", id: "d4", body: other}); code != http.StatusUnprocessableEntity {
		t.Errorf("another repository: %d", code)
	}
	if code, a := hk.deliver(t, delivery{project: "hello", event: "pull_request", id: "d5", body: prPayload("labeled", 7, sha, "a/b", "y")}); code != 200 || a.Status != "ignored" {
		t.Errorf("labeled: %d %+v", code, a)
	}
	if code, a := hk.deliver(t, delivery{project: "hello", event: "pull_request", id: "d6", body: prPayload("opened", 13, sha, "a/b", "y")}); code != 200 || a.Status != "ignored" || !strings.Contains(a.Message, "previews are off") {
		t.Errorf("declined: %d %+v", code, a)
	}
	// Closed, reopened and closed again at the same commit: two closes.
	for i, action := range []string{"closed", "reopened", "closed"} {
		body := prPayload(action, 7, sha, "someone/fork", fmt.Sprintf("2026-12-04T10:0%d:00Z", i+1))
		if code, a := hk.deliver(t, delivery{project: "hello", event: "pull_request", id: fmt.Sprintf("c%d", i), body: body}); code != http.StatusAccepted {
			t.Errorf("%s #%d: %d %+v", action, i, code, a)
		}
	}
	if code, a := hk.deliver(t, delivery{project: "hello", event: "pull_request", id: "bad", body: []byte(`{"action": "opened", "number": 1, "pull_request": {"head": {"sha": "nope"}}, "repository": {"full_name": "octo-org/hello-world"}}`)}); code != 400 {
		t.Errorf("invalid head sha: %d %+v", code, a)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 {
		t.Fatalf("handled %d events, want 4: %+v", len(got), got)
	}
	ev := got[0]
	if ev.Project != "hello" || ev.DeliveryID != "d1" || ev.Action != "opened" || ev.Number != 7 || ev.HeadSHA != sha ||
		ev.HeadRef != "feature/x" || ev.Title != "Add a thing" || ev.Author != "octocat" || ev.Fork() {
		t.Errorf("opened event: %+v (fork %v)", ev, ev.Fork())
	}
	if !got[1].Fork() || got[1].Action != "closed" || !got[1].Merged || got[3].Action != "closed" {
		t.Errorf("later events: %+v", got[1:])
	}

	// Without a PullRequest handler, pull requests are ignored.
	plain := newHook(t, nil)
	if code, a := plain.deliver(t, delivery{project: "hello", event: "pull_request", id: "p1", body: opened}); code != 200 || a.Status != "ignored" {
		t.Errorf("without a handler: %d %+v", code, a)
	}
}

func TestPullRequestFork(t *testing.T) {
	for _, c := range []struct {
		head string
		fork bool
	}{{"octo-org/hello-world", false}, {"Octo-Org/Hello-World", false}, {"mallory/hello-world", true}, {"", true}} {
		ev := PullRequestEvent{Repository: "octo-org/hello-world", HeadRepository: c.head}
		if ev.Fork() != c.fork {
			t.Errorf("head %q: fork %v, want %v", c.head, ev.Fork(), c.fork)
		}
	}
}

// TestClient drives a stand-in GitHub API on loopback: statuses and
// comments go to BaseURL with the token, a long description is cut to
// what GitHub accepts, and errors say whether trying again may help.
func TestClient(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		seen = append(seen, fmt.Sprintf("%s %s %s %v", r.Method, r.URL.Path, r.Header.Get("Authorization"), body["state"]))
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, `{"message": "Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		switch {
		case r.URL.Path == "/repos/acme/web/statuses/"+strings.Repeat("b", 40):
			if d, _ := body["description"].(string); len([]rune(d)) > MaxDescription {
				http.Error(w, `{"message": "description is too long"}`, http.StatusUnprocessableEntity)
				return
			}
			w.WriteHeader(http.StatusCreated)
		case r.Method == "POST" && r.URL.Path == "/repos/acme/web/issues/5/comments":
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"id": 42}`))
		case r.Method == "PATCH" && r.URL.Path == "/repos/acme/web/issues/comments/42":
			w.Write([]byte(`{"id": 42}`))
		case r.URL.Path == "/repos/acme/limited/statuses/"+strings.Repeat("b", 40):
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset", fmt.Sprint(time.Now().Add(time.Minute).Unix()))
			http.Error(w, `{"message": "API rate limit exceeded"}`, http.StatusForbidden)
		case r.URL.Path == "/repos/acme/down/statuses/"+strings.Repeat("b", 40):
			http.Error(w, "bad gateway", http.StatusBadGateway)
		default:
			http.Error(w, `{"message": "Not Found"}`, http.StatusNotFound)
		}
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL + "/"}
	ctx := context.Background()
	sha := strings.Repeat("b", 40)
	web := Repo{FullName: "acme/web", URL: "https://github.com/acme/web.git"}
	long := strings.Repeat("é", 300)
	if err := c.CreateStatus(ctx, web, "tok", sha, Status{State: StateFailure, Description: long, Context: "slipway/web"}); err != nil {
		t.Errorf("CreateStatus: %v", err)
	}
	id, err := c.CreateComment(ctx, web, "tok", 5, "hello")
	if err != nil || id != 42 {
		t.Errorf("CreateComment = %d, %v", id, err)
	}
	if err := c.UpdateComment(ctx, web, "tok", 42, "hello again"); err != nil {
		t.Errorf("UpdateComment: %v", err)
	}
	var ae *APIError
	err = c.UpdateComment(ctx, web, "tok", 43, "gone")
	if !errors.As(err, &ae) || ae.StatusCode != 404 || Temporary(err) {
		t.Errorf("updating a deleted comment: %v (temporary %v)", err, Temporary(err))
	}
	if err := c.CreateStatus(ctx, web, "wrong", sha, Status{State: StatePending, Context: "x"}); Temporary(err) || !strings.Contains(err.Error(), "Bad credentials") {
		t.Errorf("bad token: %v", err)
	}
	err = c.CreateStatus(ctx, Repo{FullName: "acme/limited"}, "tok", sha, Status{State: StatePending, Context: "x"})
	if !errors.As(err, &ae) || !Temporary(err) || ae.RetryAfter <= 0 {
		t.Errorf("rate limited: %v (temporary %v)", err, Temporary(err))
	}
	if err := c.CreateStatus(ctx, Repo{FullName: "acme/down"}, "tok", sha, Status{State: StatePending, Context: "x"}); !Temporary(err) {
		t.Errorf("502: %v should be temporary", err)
	}
	if err := c.CreateStatus(ctx, web, "tok", "abc", Status{}); err == nil {
		t.Error("a short commit id was sent")
	}
	mu.Lock()
	if len(seen) == 0 || !strings.HasPrefix(seen[0], "POST /repos/acme/web/statuses/"+sha+" Bearer tok failure") {
		t.Errorf("requests: %q", seen)
	}
	mu.Unlock()

	// Without a BaseURL the repository's host says which API.
	var zero Client
	for repo, want := range map[string]string{
		"https://github.com/acme/web.git":  "https://api.github.com/repos/acme/web",
		"https://ghe.example.com/acme/web": "https://ghe.example.com/api/v3/repos/acme/web",
		"file:///srv/git/acme/web":         "https://api.github.com/repos/acme/web",
		"git@github.com:acme/web.git":      "https://api.github.com/repos/acme/web",
		"http://127.0.0.1:9/acme/web":      "http://127.0.0.1:9/api/v3/repos/acme/web",
	} {
		if got, err := zero.repoAPI(Repo{FullName: "acme/web", URL: repo}); got != want || err != nil {
			t.Errorf("repoAPI(%s) = %q, %v; want %q", repo, got, err, want)
		}
	}
	if _, err := zero.repoAPI(Repo{FullName: "no-slash"}); err == nil {
		t.Error("a full name without owner was accepted")
	}
}

// FuzzParsePullRequest checks that no payload makes ParsePullRequest
// panic, and that what it accepts is well-formed.
func FuzzParsePullRequest(f *testing.F) {
	f.Add(prPayload("opened", 7, strings.Repeat("a", 40), "a/b", "2026-12-04T10:00:00Z"))
	f.Add(prPayload("closed", 1<<31, strings.Repeat("a", 64), "", ""))
	f.Add([]byte(`{"action":"opened","pull_request":{"number":3,"title":"x\u0000\ny","head":{"sha":"` + strings.Repeat("b", 40) + `","ref":"\udc00","repo":null}},"repository":{"full_name":"a/b"}}`))
	f.Add([]byte(`{"action":"","number":-1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		ev, err := ParsePullRequest(payload)
		if err != nil {
			return
		}
		if ev.Number <= 0 || ev.Action == "" || ev.Repository == "" || !objectName.MatchString(ev.HeadSHA) {
			t.Errorf("accepted %+v", ev)
		}
		for _, s := range []string{ev.Title, ev.HeadRef, ev.Author, ev.UpdatedAt} {
			if strings.ContainsAny(s, "\x00\n") || !utf8.ValidString(s) {
				t.Errorf("accepted field %q", s)
			}
		}
	})
}

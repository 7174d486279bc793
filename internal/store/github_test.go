package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestGitHubOutbox: requests of one key go out in the order they were
// queued, each only once the one before it is done (sent or given up),
// while other keys go on; a retry waits until it is due.
func TestGitHubOutbox(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	p, err := s.CreateProject(ctx, Project{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	req := func(key, body string) GitHubRequest {
		return GitHubRequest{ProjectID: p.ID, Key: key, Kind: "status", Body: body}
	}
	if err := s.RecordGitHubDeployment(ctx, GitHubDeployment{DeploymentID: "d1", Repository: "acme/web", SHA: "abc", Context: "slipway/web/production"},
		req("a", "a1")); err != nil {
		t.Fatal(err)
	}
	if err := s.QueueGitHub(ctx, req("b", "b1"), req("a", "a2")); err != nil {
		t.Fatal(err)
	}
	bodies := func() string {
		t.Helper()
		rs, err := s.DueGitHubRequests(ctx, time.Now(), 10)
		if err != nil {
			t.Fatal(err)
		}
		out := ""
		for _, r := range rs {
			out += r.Body + " "
		}
		return out
	}
	if got := bodies(); got != "a1 b1 " {
		t.Fatalf("due: %q, want a1 b1", got)
	}
	rs, _ := s.DueGitHubRequests(ctx, time.Now(), 10)
	a1, b1 := rs[0], rs[1]
	if err := s.RetryGitHubRequest(ctx, a1.ID, time.Now().Add(time.Hour), "502"); err != nil {
		t.Fatal(err)
	}
	if got := bodies(); got != "b1 " {
		t.Errorf("due with a1 waiting: %q, want b1 only (a2 waits behind a1)", got)
	}
	if next, ok, err := s.NextGitHubRequest(ctx); err != nil || !ok || next.After(time.Now()) {
		t.Errorf("next due: %v %v %v", next, ok, err)
	}
	s.DoneGitHubRequest(ctx, b1.ID)
	if got := bodies(); got != "" {
		t.Errorf("due: %q, want nothing before a1's retry", got)
	}
	later, _ := s.DueGitHubRequests(ctx, time.Now().Add(2*time.Hour), 10)
	if len(later) != 1 || later[0].Body != "a1" || later[0].Attempts != 1 || later[0].LastError != "502" {
		t.Errorf("due in two hours: %+v", later)
	}
	s.DoneGitHubRequest(ctx, a1.ID)
	if got := bodies(); got != "a2 " {
		t.Errorf("due after a1: %q, want a2", got)
	}
	g, err := s.GetGitHubDeployment(ctx, "d1")
	if err != nil || g.SHA != "abc" || g.Context != "slipway/web/production" {
		t.Errorf("GetGitHubDeployment: %+v %v", g, err)
	}
	if err := s.ForgetGitHubDeployment(ctx, "d1", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetGitHubDeployment(ctx, "d1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after forgetting: %v", err)
	}
	if got := bodies(); got != "" {
		t.Errorf("due after forgetting key a: %q", got)
	}
}

// TestPullRequests: saving a pull request again keeps the id of the
// comment posted on it.
func TestPullRequests(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	p, _ := s.CreateProject(ctx, Project{Name: "web"})
	pr := PullRequest{ProjectID: p.ID, Number: 7, Repository: "acme/web", HeadRepository: "mallory/web", HeadSHA: "a", Fork: true, State: "open"}
	if err := s.SavePullRequest(ctx, pr); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPullRequestComment(ctx, p.ID, 7, 42); err != nil {
		t.Fatal(err)
	}
	pr.HeadSHA, pr.State = "b", "closed"
	if err := s.SavePullRequest(ctx, pr); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetPullRequest(ctx, p.ID, 7)
	if err != nil || got.CommentID != 42 || got.HeadSHA != "b" || got.State != "closed" || !got.Fork {
		t.Errorf("pull request: %+v %v", got, err)
	}
	if _, err := s.GetPullRequest(ctx, p.ID, 8); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown pull request: %v", err)
	}
	if all, err := s.ListPullRequests(ctx, p.ID); err != nil || len(all) != 1 {
		t.Errorf("ListPullRequests: %+v %v", all, err)
	}
}

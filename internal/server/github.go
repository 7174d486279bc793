package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/source"
	"github.com/slipwayhq/slipway/internal/source/github"
	"github.com/slipwayhq/slipway/internal/store"
)

// GitHub feedback for linked repositories. Every deployment a GitHub
// webhook makes (a push, or a pull request's preview) reports to the
// repository with the project's clone token: a commit status (the Commit
// Status API) pending when it is created, success with its preview URL
// when it is RUNNING, failure with the failing phase and the first line of
// the reason when it FAILED, error when it was stopped before it went
// live. A pull request's preview also keeps one comment on the pull
// request up to date with its URL.
//
// Requests to GitHub are written to the store's outbox in the same step as
// what they report — before the deployment is created, or from the
// lifecycle's Observer after the status change is stored — and sent by
// one goroutine, in order per deployment (statuses) and per pull request
// (the comment), with backoff on temporary failures (GitHub's 5xx, rate
// limits, an unreachable API) up to maxGitHubAttempts. Nothing the
// lifecycle does waits for GitHub, and a restarted server sends what was
// queued.

const (
	triggerWebhook     = "webhook"
	triggerPullRequest = "pull_request"

	kindStatus  = "status"
	kindComment = "comment"

	// maxGitHubAttempts bounds the attempts of one request (about 40
	// minutes of backoff in all); then it is given up and logged.
	maxGitHubAttempts = 8
)

// feedback sends GitHub feedback; see above. It is the lifecycle's
// Observer for it.
type feedback struct {
	store  *store.Store
	links  linkReader
	client *github.Client
	hosts  project.Hosts
	// url renders a hostname as the URL users open.
	url  func(host string) string
	log  *slog.Logger
	wake chan struct{}
	// backoff is the wait before attempt n+1 (n ≥ 1); if nil, 5 s
	// doubling up to 10 minutes.
	backoff func(n int) time.Duration
}

func newFeedback(st *store.Store, links linkReader, client *github.Client, hosts project.Hosts, url func(string) string, log *slog.Logger) *feedback {
	return &feedback{store: st, links: links, client: client, hosts: hosts, url: url, log: log, wake: make(chan struct{}, 1)}
}

// statusBody is an outbox request setting a commit status.
type statusBody struct {
	Repository string        `json:"repository"`
	SHA        string        `json:"sha"`
	Status     github.Status `json:"status"`
}

// commentBody is an outbox request writing a pull request's comment.
type commentBody struct {
	Repository string `json:"repository"`
	Number     int    `json:"number"`
	Body       string `json:"body"`
}

func statusKey(deploymentID string) string { return "status:" + deploymentID }
func commentKey(projectID string, n int) string {
	return fmt.Sprintf("comment:%s:%d", projectID, n)
}

func request(projectID, key, kind string, body any) store.GitHubRequest {
	b, _ := json.Marshal(body)
	return store.GitHubRequest{ProjectID: projectID, Key: key, Kind: kind, Body: string(b)}
}

// statusContext is the context of a deployment's commit status:
// slipway/<project>/<environment>, and slipway/<project>/preview for
// every pull request's preview (one name a branch protection rule can
// require).
func statusContext(project, env string, pr int) string {
	if pr > 0 {
		return "slipway/" + project + "/preview"
	}
	return "slipway/" + project + "/" + env
}

// outcome is what a deployment's status and comment say.
type outcome struct {
	project, env, id, sha string
	status                deploy.Status
	from                  deploy.Status // the phase it failed or stopped in
	reason                string
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

func (f *feedback) status(o outcome, context string) github.Status {
	st := github.Status{Context: context, TargetURL: f.url(f.hosts.Preview(o.id))}
	switch o.status {
	case deploy.Running:
		st.State, st.Description = github.StateSuccess, fmt.Sprintf("Deployed to %s: %s", o.env, f.url(f.hosts.Environment(o.project, o.env)))
	case deploy.Failed:
		st.State, st.Description = github.StateFailure, fmt.Sprintf("%s failed: %s", o.from, firstLine(o.reason))
	case deploy.Stopped:
		st.State, st.Description = github.StateError, fmt.Sprintf("Stopped while %s, before it went live", o.from)
	default:
		st.State, st.Description = github.StatePending, fmt.Sprintf("Deploying %s to %s", source.ShortSHA(o.sha), o.env)
	}
	return st
}

// comment is the text of a pull request's comment.
func (f *feedback) comment(o outcome, pr store.PullRequest) string {
	var b strings.Builder
	envURL := f.url(f.hosts.Environment(o.project, o.env))
	fmt.Fprintf(&b, "<!-- slipway:preview %s#%d -->\n**Slipway preview** of `%s` for this pull request\n\n", o.project, pr.Number, o.project)
	switch {
	case pr.State == "closed":
		fmt.Fprintf(&b, "🗑️ **Removed**: the pull request was closed; environment `%s` and its deployments were deleted.\n", o.env)
		return b.String()
	case o.status == deploy.Running:
		fmt.Fprintf(&b, "✅ **Live**: %s\n", envURL)
	case o.status == deploy.Failed:
		fmt.Fprintf(&b, "❌ **Failed** while %s: %s\n", o.from, firstLine(o.reason))
	case o.status == deploy.Stopped:
		fmt.Fprintf(&b, "⏹️ **Stopped** while %s, before it went live.\n", o.from)
	default:
		fmt.Fprintf(&b, "⏳ **Deploying**… it will be at %s\n", envURL)
	}
	fmt.Fprintf(&b, "\nCommit `%s` · deployment [`%s`](%s)\n", source.ShortSHA(o.sha), o.id, f.url(f.hosts.Preview(o.id)))
	if pr.Fork {
		fmt.Fprintf(&b, "\n_From a fork: deployed without the project's variables, with only those set on environment `%s`._\n", o.env)
	}
	return b.String()
}

// begin records, before deployment id is created, that it reports to
// repository at sha (and to pull request pr when pr > 0): its pending
// status and, for a pull request, the comment saying it is deploying.
// Without a clone token there is nothing to report with: it records
// nothing and returns false.
func (f *feedback) begin(ctx context.Context, link project.Link, o outcome, repository string, pr *store.PullRequest) bool {
	if f == nil || link.CloneToken == "" || repository == "" {
		return false
	}
	p := link.Project
	n := 0
	if pr != nil {
		n = pr.Number
	}
	g := store.GitHubDeployment{DeploymentID: o.id, Repository: repository, SHA: o.sha, Context: statusContext(p.Name, o.env, n), PullRequest: n}
	reqs := []store.GitHubRequest{request(p.ID, statusKey(o.id), kindStatus, statusBody{repository, o.sha, f.status(o, g.Context)})}
	if pr != nil {
		reqs = append(reqs, request(p.ID, commentKey(p.ID, n), kindComment, commentBody{repository, n, f.comment(o, *pr)}))
	}
	if err := f.store.RecordGitHubDeployment(ctx, g, reqs...); err != nil {
		f.log.Error("github: recording a deployment's feedback", "project", p.Name, "deployment", o.id, "err", err)
		return false
	}
	f.poke()
	return true
}

// abandon forgets what begin recorded for a deployment that was not
// created after all.
func (f *feedback) abandon(ctx context.Context, id string) {
	if err := f.store.ForgetGitHubDeployment(ctx, id, statusKey(id)); err != nil {
		f.log.Error("github: forgetting a deployment's feedback", "deployment", id, "err", err)
	}
}

// closed queues the comment of a closed pull request.
func (f *feedback) closed(ctx context.Context, link project.Link, pr store.PullRequest) {
	if f == nil || link.CloneToken == "" || pr.CommentID == 0 && !f.commentQueued(ctx, pr) {
		return // nothing was said on it: nothing to take back
	}
	o := outcome{project: link.Project.Name, env: project.PreviewEnvironment(pr.Number)}
	if err := f.store.QueueGitHub(ctx, request(pr.ProjectID, commentKey(pr.ProjectID, pr.Number), kindComment,
		commentBody{pr.Repository, pr.Number, f.comment(o, pr)})); err != nil {
		f.log.Error("github: queueing a comment", "project", link.Project.Name, "pull_request", pr.Number, "err", err)
	}
	f.poke()
}

// commentQueued reports whether a comment on pr waits in the outbox.
func (f *feedback) commentQueued(ctx context.Context, pr store.PullRequest) bool {
	reqs, _ := f.store.ListGitHubRequests(ctx, pr.ProjectID)
	for _, r := range reqs {
		if r.Key == commentKey(pr.ProjectID, pr.Number) {
			return true
		}
	}
	return false
}

func (f *feedback) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// StatusChanged queues the status (and pull request comment) of a
// deployment that reports to GitHub once it is RUNNING, FAILED, or
// STOPPED before it went live. A deployment stopped after it ran keeps
// its success.
func (f *feedback) StatusChanged(d store.Deployment, from deploy.Status) {
	if d.Trigger != triggerWebhook && d.Trigger != triggerPullRequest {
		return
	}
	to := deploy.Status(d.Status)
	switch {
	case to == deploy.Running, to == deploy.Failed:
	case to == deploy.Stopped && from != deploy.Running:
	default:
		return
	}
	ctx := context.Background()
	g, err := f.store.GetGitHubDeployment(ctx, d.ID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			f.log.Error("github: reading a deployment's feedback", "deployment", d.ID, "err", err)
		}
		return
	}
	o := outcome{project: d.ProjectName, env: d.EnvironmentName, id: d.ID, sha: g.SHA, status: to, from: from, reason: d.FailureReason}
	reqs := []store.GitHubRequest{request(d.ProjectID, statusKey(d.ID), kindStatus, statusBody{g.Repository, g.SHA, f.status(o, g.Context)})}
	if g.PullRequest > 0 {
		// The comment speaks of the pull request's latest commit only,
		// and not once it is closed.
		pr, err := f.store.GetPullRequest(ctx, d.ProjectID, g.PullRequest)
		if err == nil && pr.State == "open" && pr.HeadSHA == g.SHA {
			reqs = append(reqs, request(d.ProjectID, commentKey(d.ProjectID, pr.Number), kindComment, commentBody{g.Repository, pr.Number, f.comment(o, pr)}))
		}
	}
	if err := f.store.QueueGitHub(ctx, reqs...); err != nil {
		f.log.Error("github: queueing a deployment's status", "deployment", d.ID, "err", err)
		return
	}
	f.poke()
}

func (f *feedback) Woke(store.Deployment, time.Duration, int, error) {}
func (f *feedback) Slept(store.Deployment)                           {}
func (f *feedback) Restarted(store.Deployment, deploy.Restart)       {}

// run sends the outbox until ctx ends: what is due, then again when
// something is queued or the next retry is due.
func (f *feedback) run(ctx context.Context) {
	for {
		f.sendDue(ctx)
		wait := time.Hour
		if next, ok, err := f.store.NextGitHubRequest(ctx); err == nil && ok {
			wait = max(time.Until(next), 0)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-f.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// sendDue sends the requests due now, each key's in order.
func (f *feedback) sendDue(ctx context.Context) {
	for ctx.Err() == nil {
		reqs, err := f.store.DueGitHubRequests(ctx, time.Now(), 20)
		if err != nil {
			if ctx.Err() == nil {
				f.log.Error("github: reading the outbox", "err", err)
			}
			return
		}
		if len(reqs) == 0 {
			return
		}
		for _, r := range reqs {
			if !f.send(ctx, r) {
				return
			}
		}
	}
}

// send makes one attempt at r and records the outcome; false when that
// could not be recorded (sendDue then stops until the next wake).
func (f *feedback) send(ctx context.Context, r store.GitHubRequest) bool {
	err := f.attempt(ctx, r)
	if ctx.Err() != nil {
		return false // shutting down: the request stays for the next start
	}
	if err == nil {
		return f.store.DoneGitHubRequest(ctx, r.ID) == nil
	}
	attempts := r.Attempts + 1
	var fe *finalError
	if errors.As(err, &fe) || !github.Temporary(err) || attempts >= maxGitHubAttempts {
		f.log.Warn("github: giving up a request", "kind", r.Kind, "key", r.Key, "attempts", attempts, "err", err)
		return f.store.DoneGitHubRequest(ctx, r.ID) == nil
	}
	wait := f.wait(attempts)
	var ae *github.APIError
	if errors.As(err, &ae) && ae.RetryAfter > wait {
		wait = min(ae.RetryAfter, time.Hour)
	}
	f.log.Info("github: request failed; retrying", "kind", r.Kind, "key", r.Key, "attempt", attempts, "in", wait, "err", err)
	return f.store.RetryGitHubRequest(ctx, r.ID, time.Now().Add(wait), err.Error()) == nil
}

func (f *feedback) wait(n int) time.Duration {
	if f.backoff != nil {
		return f.backoff(n)
	}
	d := 5 * time.Second << min(n-1, 10)
	return min(d, 10*time.Minute)
}

// finalError is a failure that sending again will not mend.
type finalError struct{ msg string }

func (e *finalError) Error() string { return e.msg }

func final(format string, args ...any) error { return &finalError{fmt.Sprintf(format, args...)} }

// attempt sends r once, with the project's clone token as it is now.
func (f *feedback) attempt(ctx context.Context, r store.GitHubRequest) error {
	link, err := f.links.of(ctx, r.ProjectID, "")
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return final("the project is gone")
		}
		return err
	}
	if link.CloneToken == "" {
		return final("the project has no clone token (any more) to report with")
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	switch r.Kind {
	case kindStatus:
		var b statusBody
		if err := json.Unmarshal([]byte(r.Body), &b); err != nil {
			return final("unreadable request: %v", err)
		}
		return f.client.CreateStatus(ctx, github.Repo{FullName: b.Repository, URL: link.URL}, link.CloneToken, b.SHA, b.Status)
	case kindComment:
		var b commentBody
		if err := json.Unmarshal([]byte(r.Body), &b); err != nil {
			return final("unreadable request: %v", err)
		}
		return f.writeComment(ctx, link, r.ProjectID, b)
	}
	return final("unknown request kind %q", r.Kind)
}

// writeComment updates the pull request's comment, or creates it (and
// remembers its id) when there is none yet or it was deleted on GitHub.
func (f *feedback) writeComment(ctx context.Context, link project.Link, projectID string, b commentBody) error {
	repo := github.Repo{FullName: b.Repository, URL: link.URL}
	pr, err := f.store.GetPullRequest(ctx, projectID, b.Number)
	if errors.Is(err, store.ErrNotFound) {
		return final("pull request #%d has no preview record", b.Number)
	}
	if err != nil {
		return err
	}
	if pr.CommentID != 0 {
		err := f.client.UpdateComment(ctx, repo, link.CloneToken, pr.CommentID, b.Body)
		var ae *github.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 404 {
			return err
		}
		// Deleted on GitHub: post it again.
	}
	id, err := f.client.CreateComment(ctx, repo, link.CloneToken, b.Number, b.Body)
	if err != nil {
		return err
	}
	return f.store.SetPullRequestComment(context.WithoutCancel(ctx), projectID, b.Number, id)
}

var _ deploy.Observer = (*feedback)(nil)

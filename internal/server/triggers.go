package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/source/github"
	"github.com/slipwayhq/slipway/internal/source/gitserver"
	"github.com/slipwayhq/slipway/internal/store"
)

// triggers turns git pushes and GitHub push events into deployments: the
// project rules say where a branch deploys, the lifecycle deploys it.
type triggers struct {
	rules *project.Service
	ctl   *deploy.Controller
	links linkReader
	// url renders a hostname as the URL users open.
	url func(host string) string
	// gh reports GitHub-triggered deployments back to GitHub; nil: no
	// feedback.
	gh *feedback
}

// linkReader reads projects' repository links with their secrets.
type linkReader struct {
	store store.Reader
	box   *secrets.Box
}

func (l linkReader) of(ctx context.Context, id, name string) (project.Link, error) {
	return project.LinkOf(ctx, l.store, l.box, id, name)
}

// Push implements gitserver.Pusher: it deploys a pushed branch that is
// mapped to an environment and streams the build log back to the pushing
// git client, ending with the URLs (as Heroku and Dokku do).
func (t *triggers) Push(ctx context.Context, ev gitserver.PushEvent, out io.Writer) error {
	switch {
	case ev.Branch == "":
		fmt.Fprintf(out, "%s pushed; only branches are deployed\n", ev.Ref)
		return nil
	case ev.Deleted:
		fmt.Fprintf(out, "branch %s deleted; its deployments keep running until stopped (slipway stop)\n", ev.Branch)
		return nil
	}
	p, env, err := t.rules.Target(ctx, ev.Project, ev.Branch)
	if errors.Is(err, store.ErrNotFound) && p.ID != "" {
		fmt.Fprintf(out, "branch %s pushed, not deployed: it is not mapped to an environment of %s\n", ev.Branch, p.Name)
		fmt.Fprintf(out, "map it with: slipway env branches -p %s ENVIRONMENT %s\n", p.Name, ev.Branch)
		return nil
	}
	if err != nil {
		return err
	}
	if ev.Forced {
		fmt.Fprintf(out, "forced update of %s: deploying %s\n", ev.Branch, short(ev.NewSHA))
	}
	// The deployment outlives the push: a client that hangs up only stops
	// seeing the log.
	bg := context.WithoutCancel(ctx)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(gitserver.Archive(bg, ev.RepoDir, ev.NewSHA, pw)) }()
	d, err := t.ctl.Create(bg, deploy.CreateRequest{
		Project: p.Name, Environment: env.Name, Trigger: "push", Promote: true,
		Branch: ev.Branch, CommitSHA: ev.NewSHA, Message: ev.Message, Author: ev.Author, Source: pr,
	})
	pr.Close()
	if err != nil {
		return fmt.Errorf("creating the deployment: %w", err)
	}
	fmt.Fprintf(out, "deploying %s of %s to %s as %s\n", short(ev.NewSHA), ev.Branch, env.Name, d.ID)
	final, err := t.ctl.Follow(ctx, d.ID, func(l store.LogLine) error {
		_, err := fmt.Fprintf(out, "%s %s\n", l.Time.Format("15:04:05.000"), l.Text)
		return err
	})
	if err != nil {
		return nil // the client went away; the deployment goes on
	}
	if final.Status != string(deploy.Running) {
		return fmt.Errorf("deployment %s %s: %s", final.ID, final.Status, final.FailureReason)
	}
	fmt.Fprintf(out, "\ndeployment %s is RUNNING\n", final.ID)
	for _, h := range t.rules.Hostnames(bg, final) {
		fmt.Fprintf(out, "  %s\n", t.url(h))
	}
	return nil
}

// link returns a project's webhook link for the GitHub handler.
func (t *triggers) link(ctx context.Context, name string) (github.Link, bool, error) {
	l, err := t.links.of(ctx, "", name)
	if errors.Is(err, store.ErrNotFound) {
		return github.Link{}, false, nil
	}
	if err != nil {
		return github.Link{}, false, err
	}
	// No secret: every delivery is refused.
	return github.Link{Secret: l.WebhookSecret, Repository: l.URL}, true, nil
}

// enqueue records a verified push event as a PENDING deployment whose
// source is fetched from the project's linked repository while it
// initializes. The deployment row is the durable queue.
func (t *triggers) enqueue(ctx context.Context, ev github.PushEvent) error {
	// The payload says which branch is the repository's default: production
	// follows it, renamed or not.
	if ev.DefaultBranch != "" {
		if p, err := t.links.store.GetProject(ctx, ev.Project); err == nil && p.RepoDefaultBranch != ev.DefaultBranch && p.RepoURL != "" {
			// A name the rules refuse is not recorded; the push still
			// deploys where its branch is mapped.
			if err := t.rules.SetDefaultBranch(ctx, p.ID, p.RepoURL, ev.DefaultBranch); err != nil && !errors.Is(err, project.ErrInvalid) {
				return fmt.Errorf("recording the default branch: %w", err)
			}
		}
	}
	p, env, err := t.rules.Target(ctx, ev.Project, ev.Branch)
	if errors.Is(err, store.ErrNotFound) && p.ID != "" {
		return fmt.Errorf("%w: branch %s is not mapped to an environment of %s", github.ErrIgnored, ev.Branch, p.Name)
	}
	if err != nil {
		return err
	}
	// Where it reports to GitHub is recorded before it exists, so that no
	// status change of it can come first.
	id := store.NewID()
	reported := false
	if link, err := t.links.of(ctx, p.ID, ""); err == nil {
		reported = t.gh.begin(ctx, link, outcome{project: p.Name, env: env.Name, id: id, sha: ev.NewSHA, status: deploy.Pending}, ev.Repository, nil)
	}
	_, err = t.ctl.Create(ctx, deploy.CreateRequest{
		ID: id, Project: p.Name, Environment: env.Name, Trigger: triggerWebhook, Promote: true, SourceURL: p.RepoURL,
		Branch: ev.Branch, CommitSHA: ev.NewSHA, Message: ev.Message, Author: ev.Author,
	})
	if err != nil && reported {
		t.gh.abandon(context.WithoutCancel(ctx), id)
	}
	return err
}

// fetch clones a deployment's repository at its commit, with the project's
// clone token when one is set. It is the lifecycle's Config.Fetch.
func (l linkReader) fetch(ctx context.Context, d store.Deployment, dir string) error {
	link, err := l.of(ctx, d.ProjectID, "")
	if err != nil {
		return err
	}
	var creds *github.Credentials
	if link.CloneToken != "" {
		creds = &github.Credentials{Password: link.CloneToken}
	}
	return github.Fetch(ctx, d.SourceURL, d.CommitSHA, creds, dir)
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

var _ gitserver.Pusher = (*triggers)(nil)

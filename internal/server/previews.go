package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/source/github"
	"github.com/slipwayhq/slipway/internal/store"
)

// Pull-request previews (project setting "previews"): a pull request
// opened, reopened or given new commits (synchronize) deploys its head
// commit, fetched from the linked repository, into an environment of its
// own, pr-<number>, created on demand (hostname <project>-pr-<number>.<base>,
// under the same rules as every environment's); closing it stops that
// environment's deployments and deletes it with them. Its deployments
// report their status to the head commit, and one comment on the pull
// request says where the preview is.
//
// Secrets: a pull request from a branch of the repository itself is made
// by someone who could push to a production branch just as well, so its
// preview captures production's variables (under those set on pr-<n>
// itself). A fork's pull request is anyone's code: its preview captures
// only the variables set on its own pr-<n> environment (none unless a
// maintainer sets some there), never production's, and runs with
// Slipway's own (PORT, SLIPWAY_*) like any deployment.

// pullRequest handles a verified pull_request event (github.Config's
// PullRequest): it records what to do and returns; the lifecycle builds.
func (t *triggers) pullRequest(ctx context.Context, ev github.PullRequestEvent) error {
	if t.gh == nil {
		return fmt.Errorf("%w: this server keeps no pull-request previews", github.ErrIgnored)
	}
	st := t.gh.store
	p, err := st.GetProject(ctx, ev.Project)
	if err != nil {
		return err
	}
	if !p.Settings.Previews && ev.Action != "closed" { // a preview made before they were turned off still goes
		return fmt.Errorf("%w: pull-request previews are off for project %s (turn them on with: slipway previews on -p %s)",
			github.ErrIgnored, p.Name, p.Name)
	}
	if p.RepoURL == "" {
		return fmt.Errorf("%w: project %s is linked to no repository", github.ErrIgnored, p.Name)
	}
	envName := project.PreviewEnvironment(ev.Number)
	pr, err := st.GetPullRequest(ctx, p.ID, ev.Number)
	known := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	env, err := st.GetEnvironment(ctx, p.ID, envName)
	envExists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if envExists && !known {
		return fmt.Errorf("%w: project %s has an environment %s that is not a pull request's preview; rename or delete it to preview pull request #%d",
			github.ErrIgnored, p.Name, envName, ev.Number)
	}
	link, err := t.links.of(ctx, p.ID, "")
	if err != nil {
		return err
	}
	// The work outlives GitHub's patience: a delivery that hangs up
	// leaves nothing half done.
	ctx = context.WithoutCancel(ctx)

	if ev.Action == "closed" {
		if !known || (pr.State == "closed" && !envExists) {
			return fmt.Errorf("%w: pull request #%d has no preview", github.ErrIgnored, ev.Number)
		}
		// Closed first: its deployments stopped below say nothing more on it.
		pr.State = "closed"
		if err := st.SavePullRequest(ctx, pr); err != nil {
			return err
		}
		if envExists {
			if err := t.rules.DeleteEnvironment(ctx, p, env); err != nil {
				return fmt.Errorf("deleting the preview environment %s: %w", envName, err)
			}
		}
		t.gh.closed(ctx, link, pr)
		return nil
	}

	pr = store.PullRequest{ProjectID: p.ID, Number: ev.Number, Repository: ev.Repository, HeadRepository: ev.HeadRepository,
		HeadSHA: ev.HeadSHA, Fork: ev.Fork(), State: "open", CommentID: pr.CommentID}
	if err := st.SavePullRequest(ctx, pr); err != nil {
		return err
	}
	if !envExists {
		if _, err := t.rules.CreateEnvironment(ctx, p, envName, nil); err != nil {
			if errors.Is(err, store.ErrExists) || errors.Is(err, project.ErrInvalid) {
				return fmt.Errorf("%w: no preview for pull request #%d: %v", github.ErrIgnored, ev.Number, err)
			}
			return err
		}
	}
	inherit := store.ProductionEnvironment
	if pr.Fork {
		inherit = "" // never the project's secrets
	}
	id := store.NewID()
	reported := t.gh.begin(ctx, link, outcome{project: p.Name, env: envName, id: id, sha: ev.HeadSHA, status: deploy.Pending}, ev.Repository, &pr)
	message := fmt.Sprintf("#%d", ev.Number)
	if ev.Title != "" {
		message += ": " + ev.Title
	}
	_, err = t.ctl.Create(ctx, deploy.CreateRequest{
		ID: id, Project: p.Name, Environment: envName, Trigger: triggerPullRequest, Promote: true,
		SourceURL: p.RepoURL, Branch: ev.HeadRef, CommitSHA: ev.HeadSHA, Message: message, Author: ev.Author,
		InheritVariables: inherit,
	})
	if err != nil && reported {
		t.gh.abandon(ctx, id)
	}
	return err
}

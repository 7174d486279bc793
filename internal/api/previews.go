package api

import (
	"net/http"
	"time"

	"github.com/slipwayhq/slipway/internal/project"
)

// Previews is a project's pull-request previews: whether they are on
// (the "previews" setting) and the pull requests that have or had one.
type Previews struct {
	Enabled      bool      `json:"enabled"`
	PullRequests []Preview `json:"pullRequests"`
}

// Preview is one pull request's preview environment.
type Preview struct {
	Number int `json:"number"`
	// Environment is pr-<number>; URL its hostname's URL while open.
	Environment string `json:"environment"`
	URL         string `json:"url,omitempty"`
	State       string `json:"state"` // open or closed
	// Repository is the base repository; HeadRepository the one its
	// commits come from (Fork: another one, whose previews never get the
	// project's variables).
	Repository     string    `json:"repository"`
	HeadRepository string    `json:"headRepository,omitempty"`
	HeadSHA        string    `json:"headSha"`
	Fork           bool      `json:"fork"`
	CommentID      int64     `json:"commentId,omitempty"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

func (s *Server) listPreviews(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	prs, err := s.store.ListPullRequests(r.Context(), p.ID)
	if err != nil {
		return err
	}
	out := Previews{Enabled: p.Settings.Previews, PullRequests: []Preview{}}
	for _, pr := range prs {
		v := Preview{Number: pr.Number, Environment: project.PreviewEnvironment(pr.Number), State: pr.State,
			Repository: pr.Repository, HeadRepository: pr.HeadRepository, HeadSHA: pr.HeadSHA, Fork: pr.Fork,
			CommentID: pr.CommentID, UpdatedAt: pr.UpdatedAt}
		if pr.State == "open" {
			v.URL = s.url(s.hosts.Environment(p.Name, v.Environment))
		}
		out.PullRequests = append(out.PullRequests, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

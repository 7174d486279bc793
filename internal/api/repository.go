package api

import (
	"net/http"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/store"
)

// Repository is how a project receives code from git: its push remote on
// this server, and its link to a repository whose GitHub push webhooks
// deploy it.
type Repository struct {
	// GitRemote is this server's git remote for the project (the token is
	// the password).
	GitRemote string `json:"gitRemote"`
	// URL is the linked repository, cloned at each webhook's commit.
	URL string `json:"url,omitempty"`
	// DefaultBranch is the linked repository's default branch, when known:
	// production deploys its pushes unless it is mapped to an environment.
	DefaultBranch string `json:"defaultBranch,omitempty"`
	// WebhookURL is where GitHub sends push events.
	WebhookURL string `json:"webhookUrl"`
	// WebhookSecret is only returned when it is generated.
	WebhookSecret string `json:"webhookSecret,omitempty"`
	HasSecret     bool   `json:"hasSecret"`
	HasToken      bool   `json:"hasToken"`
}

// LinkRepositoryRequest is the body of PUT .../repository.
type LinkRepositoryRequest struct {
	URL string `json:"url"`
	// Token, if set, is used to clone private repositories.
	Token string `json:"token,omitempty"`
	// RotateSecret generates a new webhook secret even if one exists.
	RotateSecret bool `json:"rotateSecret,omitempty"`
}

func (s *Server) repositoryJSON(r *http.Request, p store.Project) Repository {
	base := "http://" + r.Host
	return Repository{
		GitRemote: base + "/git/" + p.Name + ".git",
		URL:       p.RepoURL, DefaultBranch: p.RepoDefaultBranch,
		WebhookURL: base + "/hooks/github/" + p.Name,
		HasSecret:  p.WebhookSecret != nil,
		HasToken:   p.RepoToken != nil,
	}
}

func (s *Server) getRepository(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.repositoryJSON(r, p))
	return nil
}

// linkRepository links the project to a repository; the first link (or a
// rotation) generates the webhook secret, returned this once.
func (s *Server) linkRepository(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	var req LinkRepositoryRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	linked, err := s.proj.LinkRepository(r.Context(), p, project.RepoLink{URL: req.URL, Token: req.Token, RotateSecret: req.RotateSecret})
	if err != nil {
		return err
	}
	if p, err = s.store.GetProject(r.Context(), p.Name); err != nil {
		return err
	}
	out := s.repositoryJSON(r, p)
	out.WebhookSecret = linked.Secret
	writeJSON(w, http.StatusOK, out)
	return nil
}

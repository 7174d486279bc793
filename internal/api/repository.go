package api

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"

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
		GitRemote:  base + "/git/" + p.Name + ".git",
		URL:        p.RepoURL,
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
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "file") || u.User != nil {
		return errBadRequest("url must be an http(s) URL of the repository, without credentials (pass a token instead)")
	}
	if s.cfg.Secrets == nil {
		return errBadRequest("this server cannot store secrets")
	}
	secret, generated := p.WebhookSecret, ""
	if secret == nil || req.RotateSecret {
		var b [24]byte
		rand.Read(b[:])
		generated = hex.EncodeToString(b[:])
		secret = s.cfg.Secrets.Seal([]byte(generated))
	}
	token := p.RepoToken
	if strings.TrimSpace(req.Token) != "" {
		token = s.cfg.Secrets.Seal([]byte(strings.TrimSpace(req.Token)))
	}
	if err := s.store.SetProjectRepo(r.Context(), p.ID, req.URL, secret, token); err != nil {
		return err
	}
	p.RepoURL, p.WebhookSecret, p.RepoToken = req.URL, secret, token
	out := s.repositoryJSON(r, p)
	out.WebhookSecret = generated
	writeJSON(w, http.StatusOK, out)
	return nil
}

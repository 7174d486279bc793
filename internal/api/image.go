package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
)

// CreateImageDeploymentRequest is the JSON body of POST
// .../deployments that deploys a prebuilt image instead of uploading a
// source: a reference in Slipway's registry (PROJECT:TAG, PROJECT/NAME:TAG,
// library/NAME:TAG) or on another registry (HOST/REPOSITORY:TAG).
type CreateImageDeploymentRequest struct {
	Image       string `json:"image"`
	Environment string `json:"environment,omitempty"` // If empty, production.
	Promote     *bool  `json:"promote,omitempty"`     // If absent, true.
}

// Source says where a deployment's image came from, for an image
// deployment: the reference asked for and the digest it resolved to.
type Source struct {
	Image  string `json:"image"`
	Digest string `json:"digest,omitempty"`
}

// RegistryCredential is a project's credential for another registry, as
// the API shows it: never its password.
type RegistryCredential struct {
	Registry string `json:"registry"`
	Username string `json:"username"`
}

// RegistryCredentialRequest is the body of PUT
// .../registry-credentials/{registry}.
type RegistryCredentialRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func isJSON(r *http.Request) bool {
	return strings.HasPrefix(strings.TrimSpace(r.Header.Get("Content-Type")), "application/json")
}

func (s *Server) createImageDeployment(w http.ResponseWriter, r *http.Request) error {
	var req CreateImageDeploymentRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Image) == "" {
		return errBadRequest("image is required: a reference such as " + r.PathValue("project") + ":v1 or ghcr.io/org/app:1")
	}
	promote := true
	if req.Promote != nil {
		promote = *req.Promote
	}
	if v := r.URL.Query().Get("promote"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errBadRequest("promote must be true or false")
		}
		promote = b
	}
	env := req.Environment
	if env == "" {
		env = r.URL.Query().Get("environment")
	}
	d, err := s.dep.Create(r.Context(), deploy.CreateRequest{
		Project: r.PathValue("project"), Environment: env, Trigger: "image", Promote: promote, SourceImage: req.Image,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.deploymentJSON(r.Context(), d))
	return nil
}

func (s *Server) listRegistryCredentials(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	cs, err := s.proj.RegistryCredentials(p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, registryCredentialsJSON(cs))
	return nil
}

func registryCredentialsJSON(cs project.RegistryCredentials) []RegistryCredential {
	out := []RegistryCredential{}
	for _, c := range cs {
		out = append(out, RegistryCredential{Registry: c.Registry, Username: c.Username})
	}
	return out
}

func (s *Server) setRegistryCredential(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	var req RegistryCredentialRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	c := project.RegistryCredential{Registry: r.PathValue("registry"), Username: req.Username, Password: req.Password}
	if err := s.proj.SetRegistryCredential(r.Context(), p, c); err != nil {
		return err
	}
	return s.listRegistryCredentials(w, r)
}

func (s *Server) deleteRegistryCredential(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	if err := s.proj.DeleteRegistryCredential(r.Context(), p, r.PathValue("registry")); err != nil {
		return err
	}
	return s.listRegistryCredentials(w, r)
}

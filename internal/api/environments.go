package api

import (
	"context"
	"net/http"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// EnvironmentDetail is an environment with its branches and domains.
type EnvironmentDetail struct {
	Environment
	Branches []string `json:"branches"`
	Domains  []string `json:"domains"`
}

// CreateEnvironmentRequest is the body of POST .../environments.
type CreateEnvironmentRequest struct {
	Name     string   `json:"name"`
	Branches []string `json:"branches"`
}

// UpdateEnvironmentRequest is the body of PATCH .../environments/{env}.
type UpdateEnvironmentRequest struct {
	Branches []string `json:"branches"`
}

// Variable is an environment variable; secret values come back masked.
type Variable struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Secret bool   `json:"secret"`
}

// SetVariableRequest is the body of PUT .../variables/{name}.
type SetVariableRequest struct {
	Value  string `json:"value"`
	Secret bool   `json:"secret"`
}

// DomainRequest is the body of POST .../domains.
type DomainRequest struct {
	Name string `json:"name"`
}

// StartCommandRequest is the body of PUT .../start-command.
type StartCommandRequest struct {
	Command string `json:"command"`
}

// RedeployRequest is the (optional) body of POST .../redeploy.
type RedeployRequest struct {
	Rebuild bool `json:"rebuild"`
}

// Wake is one wake from zero of a deployment.
type Wake struct {
	StartedAt  time.Time `json:"startedAt"`
	DurationMS float64   `json:"durationMs"`
	OK         bool      `json:"ok"`
	Prepared   bool      `json:"prepared"` // it started a sandbox prepared ahead
	Restored   bool      `json:"restored"` // the app resumed the deployment's snapshot
}

func (s *Server) environment(r *http.Request) (store.Project, store.Environment, error) {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return p, store.Environment{}, err
	}
	e, err := s.store.GetEnvironment(r.Context(), p.ID, r.PathValue("env"))
	return p, e, err
}

func (s *Server) environmentJSON(ctx context.Context, p store.Project, e store.Environment) (EnvironmentDetail, error) {
	doms, err := s.store.ListDomains(ctx, e.ID)
	if err != nil {
		return EnvironmentDetail{}, err
	}
	out := EnvironmentDetail{
		Environment: Environment{Name: e.Name, URL: s.url(s.hosts.Environment(p.Name, e.Name)), CurrentDeployment: e.CurrentDeploymentID},
		Branches:    e.Branches, Domains: []string{},
	}
	if out.Branches == nil {
		out.Branches = []string{}
	}
	for _, d := range doms {
		out.Domains = append(out.Domains, d.Name)
	}
	return out, nil
}

// writeEnvironment answers with the environment's document.
func (s *Server) writeEnvironment(w http.ResponseWriter, r *http.Request, status int, p store.Project, e store.Environment) error {
	ej, err := s.environmentJSON(r.Context(), p, e)
	if err != nil {
		return err
	}
	writeJSON(w, status, ej)
	return nil
}

func (s *Server) listEnvironments(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	envs, err := s.store.ListEnvironments(r.Context(), p.ID)
	if err != nil {
		return err
	}
	out := []EnvironmentDetail{}
	for _, e := range envs {
		ej, err := s.environmentJSON(r.Context(), p, e)
		if err != nil {
			return err
		}
		out = append(out, ej)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createEnvironment(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	var req CreateEnvironmentRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	e, err := s.proj.CreateEnvironment(r.Context(), p, req.Name, req.Branches)
	if err != nil {
		return err
	}
	return s.writeEnvironment(w, r, http.StatusCreated, p, e)
}

func (s *Server) updateEnvironment(w http.ResponseWriter, r *http.Request) error {
	p, e, err := s.environment(r)
	if err != nil {
		return err
	}
	var req UpdateEnvironmentRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if e, err = s.proj.SetBranches(r.Context(), e, req.Branches); err != nil {
		return err
	}
	return s.writeEnvironment(w, r, http.StatusOK, p, e)
}

func (s *Server) deleteEnvironment(w http.ResponseWriter, r *http.Request) error {
	p, e, err := s.environment(r)
	if err != nil {
		return err
	}
	if err := s.proj.DeleteEnvironment(r.Context(), p, e); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listVariables(w http.ResponseWriter, r *http.Request) error {
	_, e, err := s.environment(r)
	if err != nil {
		return err
	}
	vars, err := s.proj.Vars(r.Context(), e)
	if err != nil {
		return err
	}
	out := []Variable{}
	for _, v := range vars {
		out = append(out, Variable{Name: v.Name, Value: v.Value, Secret: v.Secret})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) setVariable(w http.ResponseWriter, r *http.Request) error {
	_, e, err := s.environment(r)
	if err != nil {
		return err
	}
	var req SetVariableRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := s.proj.SetVar(r.Context(), e, r.PathValue("name"), req.Value, req.Secret); err != nil {
		return err
	}
	return s.listVariables(w, r)
}

func (s *Server) deleteVariable(w http.ResponseWriter, r *http.Request) error {
	_, e, err := s.environment(r)
	if err != nil {
		return err
	}
	if err := s.proj.DeleteVar(r.Context(), e, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) addDomain(w http.ResponseWriter, r *http.Request) error {
	p, e, err := s.environment(r)
	if err != nil {
		return err
	}
	var req DomainRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if _, err := s.proj.AddDomain(r.Context(), e, req.Name); err != nil {
		return err
	}
	return s.writeEnvironment(w, r, http.StatusCreated, p, e)
}

func (s *Server) removeDomain(w http.ResponseWriter, r *http.Request) error {
	_, e, err := s.environment(r)
	if err != nil {
		return err
	}
	if err := s.proj.RemoveDomain(r.Context(), e, r.PathValue("domain")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p.Settings)
	return nil
}

// patchSettings merges the JSON body into the project's settings: fields
// present replace, absent fields stay.
func (s *Server) patchSettings(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	st := p.Settings
	if err := decodeJSON(r, &st); err != nil {
		return err
	}
	if err := s.proj.UpdateSettings(r.Context(), p, st); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) setStartCommand(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	cmd := ""
	if r.Method == http.MethodPut {
		var req StartCommandRequest
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
		if req.Command == "" {
			return errBadRequest("command is empty; DELETE the start command to clear it")
		}
		cmd = req.Command
	}
	st, err := s.proj.SetStartCommand(r.Context(), p, cmd)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) redeployDeployment(w http.ResponseWriter, r *http.Request) error {
	var req RedeployRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &req); err != nil {
			return err
		}
	}
	d, err := s.dep.Redeploy(r.Context(), r.PathValue("id"), req.Rebuild)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.deploymentJSON(r.Context(), d))
	return nil
}

func (s *Server) listWakes(w http.ResponseWriter, r *http.Request) error {
	d, err := s.store.GetDeployment(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	wakes, err := s.dep.Wakes(r.Context(), d.ID, 100)
	if err != nil {
		return err
	}
	out := []Wake{}
	for _, wk := range wakes {
		out = append(out, Wake{StartedAt: wk.StartedAt, DurationMS: float64(wk.Duration.Microseconds()) / 1000, OK: wk.OK, Prepared: wk.Prepared, Restored: wk.Restored})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

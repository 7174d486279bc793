package api

import (
	"net/http"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/store"
)

// EgressPolicy is a project's egress policy: beyond the public internet,
// the destinations its instances may reach (Allow, CIDR[:PORT]), or none
// at all (None).
type EgressPolicy struct {
	None  bool     `json:"none"`
	Allow []string `json:"allow"`
}

// EgressRuleRequest is the body of POST .../egress/allow and .../egress/deny.
type EgressRuleRequest struct {
	Rule string `json:"rule"`
}

// EgressNoneRequest is the body of PATCH .../egress.
type EgressNoneRequest struct {
	None bool `json:"none"`
}

func egressJSON(e project.Egress) EgressPolicy {
	out := EgressPolicy{None: e.None, Allow: []string{}}
	for _, r := range e.Allow {
		out.Allow = append(out.Allow, r.String())
	}
	return out
}

func (s *Server) getEgress(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	e, err := project.EgressOf(p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, egressJSON(e))
	return nil
}

// egressChange decodes the body into req, runs act on the project the
// path names and answers with the policy it leaves.
func (s *Server) egressChange(w http.ResponseWriter, r *http.Request, req any, act func(store.Project) (project.Egress, error)) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	if err := decodeJSON(r, req); err != nil {
		return err
	}
	e, err := act(p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, egressJSON(e))
	return nil
}

func (s *Server) allowEgress(w http.ResponseWriter, r *http.Request) error {
	var req EgressRuleRequest
	return s.egressChange(w, r, &req, func(p store.Project) (project.Egress, error) {
		return s.proj.AllowEgress(r.Context(), p, req.Rule)
	})
}

func (s *Server) denyEgress(w http.ResponseWriter, r *http.Request) error {
	var req EgressRuleRequest
	return s.egressChange(w, r, &req, func(p store.Project) (project.Egress, error) {
		return s.proj.DenyEgress(r.Context(), p, req.Rule)
	})
}

func (s *Server) setEgressNone(w http.ResponseWriter, r *http.Request) error {
	var req EgressNoneRequest
	return s.egressChange(w, r, &req, func(p store.Project) (project.Egress, error) {
		return s.proj.SetEgressNone(r.Context(), p, req.None)
	})
}

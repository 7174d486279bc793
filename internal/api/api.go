// Package api is Slipway's REST/JSON API under /api/v1/, with server-sent
// events for live logs, bearer-token authentication and one error envelope
// (see Error). docs/API.md is its reference.
package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/drain"
	"github.com/slipwayhq/slipway/internal/notify"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// Config wires a Server. Store, Deploy and Projects are required.
type Config struct {
	// Store is read only: every write goes through Projects (the project
	// rules) or Deploy (the lifecycle).
	Store    store.Reader
	Deploy   *deploy.Controller
	Projects *project.Service
	// Registry, if set, serves the OCI distribution API under /v2/. It does
	// its own authentication.
	Registry http.Handler
	// Git, if set, serves git pushes under /git/ (with the prefix stripped).
	Git http.Handler
	// GitHubHook, if set, receives GitHub webhooks at
	// POST /hooks/github/{project}; it authenticates by signature.
	GitHubHook http.Handler
	// Web, if set, serves the dashboard at / (everything the API, the
	// registry, git and webhooks do not claim).
	Web http.Handler
	// Secrets seals webhook secrets and clone tokens. Needed to link
	// repositories.
	Secrets *secrets.Box
	// RouterPort is the port apps are served on, used to print URLs.
	// If zero, 80.
	RouterPort int
	// MaxUploadBytes bounds an uploaded source (compressed). If zero, 256 MiB.
	MaxUploadBytes int64
	// Metrics, if set, serves GET /metrics (the Prometheus text format)
	// to API tokens.
	Metrics http.Handler
	// Notify, if set, manages projects' outgoing webhooks
	// (…/notifications); Drains, their log drains (…/drains).
	Notify *notify.Service
	Drains *drain.Service
	// Log receives errors. If nil, slog.Default().
	Log *slog.Logger
}

// Server serves the API.
type Server struct {
	cfg   Config
	store store.Reader
	dep   *deploy.Controller
	proj  *project.Service
	hosts project.Hosts
	log   *slog.Logger
}

// New returns a Server. It panics if cfg.Store, cfg.Deploy or
// cfg.Projects is nil.
func New(cfg Config) *Server {
	if cfg.Store == nil || cfg.Deploy == nil || cfg.Projects == nil {
		panic("api: Config.Store, Config.Deploy and Config.Projects are required")
	}
	if cfg.RouterPort == 0 {
		cfg.RouterPort = 80
	}
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = 256 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Server{cfg: cfg, store: cfg.Store, dep: cfg.Deploy, proj: cfg.Projects, hosts: cfg.Projects.Hosts(), log: cfg.Log}
}

// Handler returns the HTTP handler of the API (and of the registry, when
// configured).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(pattern, s.authenticated(func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				s.writeError(w, r, err)
			}
		}))
	}
	for _, rt := range s.routes() {
		handle(rt.pattern, rt.h)
	}
	if s.cfg.Web != nil {
		mux.Handle("/", s.cfg.Web)
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	if s.cfg.Registry != nil {
		mux.Handle("/v2/", s.cfg.Registry)
	}
	if s.cfg.Git != nil {
		mux.Handle("/git/", http.StripPrefix("/git", s.cfg.Git))
	}
	if s.cfg.GitHubHook != nil {
		mux.Handle("POST /hooks/github/{project}", s.cfg.GitHubHook)
	}
	if s.cfg.Metrics != nil {
		mux.Handle("GET /metrics", s.authenticated(s.cfg.Metrics.ServeHTTP))
	}
	return mux
}

// Authorized reports whether r carries a valid API token, as a bearer
// token or as the password of HTTP basic auth (for git and registry
// clients).
func (s *Server) Authorized(r *http.Request) bool { return Authorized(s.store, r) }

// Authorized reports whether r carries an API token that st holds, as a
// bearer token or as the password of HTTP basic auth.
func Authorized(st store.Reader, r *http.Request) bool {
	token := ""
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		token = strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
	} else if _, pw, ok := r.BasicAuth(); ok {
		token = pw
	}
	if token == "" {
		return false
	}
	_, err := st.CheckToken(r.Context(), token)
	return err == nil
}

func (s *Server) authenticated(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.Authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="slipway"`)
			s.writeError(w, r, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Message: "missing or invalid API token (send it as 'Authorization: Bearer <token>')"})
			return
		}
		h(w, r)
	})
}

type route struct {
	pattern string
	h       func(http.ResponseWriter, *http.Request) error
}

// routes lists the authenticated endpoints. docs/API.md documents each
// (TestAPIDocCoversRoutes checks it).
func (s *Server) routes() []route {
	return []route{
		{"GET /api/v1/projects", s.listProjects},
		{"POST /api/v1/projects", s.createProject},
		{"GET /api/v1/projects/{project}", s.getProject},
		{"GET /api/v1/projects/{project}/deployments", s.listDeployments},
		{"POST /api/v1/projects/{project}/deployments", s.createDeployment},
		{"GET /api/v1/deployments/{id}", s.deployment(s.getDeployment)},
		{"POST /api/v1/deployments/{id}/stop", s.deployment(s.dep.Stop)},
		{"GET /api/v1/deployments/{id}/build-logs", s.buildLogs},
		{"GET /api/v1/deployments/{id}/logs", s.runtimeLogs},
		{"POST /api/v1/deployments/{id}/promote", s.deployment(s.dep.Promote)},
		{"POST /api/v1/deployments/{id}/redeploy", s.redeployDeployment},
		{"GET /api/v1/deployments/{id}/wakes", s.listWakes},
		{"GET /api/v1/deployments/{id}/metrics", s.deploymentMetrics},
		{"GET /api/v1/projects/{project}/metrics", s.projectMetrics},
		{"GET /api/v1/projects/{project}/settings", s.getSettings},
		{"PATCH /api/v1/projects/{project}/settings", s.patchSettings},
		{"PUT /api/v1/projects/{project}/start-command", s.setStartCommand},
		{"DELETE /api/v1/projects/{project}/start-command", s.setStartCommand},
		{"GET /api/v1/projects/{project}/environments", s.listEnvironments},
		{"POST /api/v1/projects/{project}/environments", s.createEnvironment},
		{"PATCH /api/v1/projects/{project}/environments/{env}", s.updateEnvironment},
		{"DELETE /api/v1/projects/{project}/environments/{env}", s.deleteEnvironment},
		{"GET /api/v1/projects/{project}/environments/{env}/variables", s.listVariables},
		{"PUT /api/v1/projects/{project}/environments/{env}/variables/{name}", s.setVariable},
		{"DELETE /api/v1/projects/{project}/environments/{env}/variables/{name}", s.deleteVariable},
		{"POST /api/v1/projects/{project}/environments/{env}/domains", s.addDomain},
		{"DELETE /api/v1/projects/{project}/environments/{env}/domains/{domain}", s.removeDomain},
		{"GET /api/v1/projects/{project}/repository", s.getRepository},
		{"PUT /api/v1/projects/{project}/repository", s.linkRepository},
		{"GET /api/v1/projects/{project}/previews", s.listPreviews},
		{"GET /api/v1/projects/{project}/egress", s.getEgress},
		{"PATCH /api/v1/projects/{project}/egress", s.setEgressNone},
		{"POST /api/v1/projects/{project}/egress/allow", s.allowEgress},
		{"POST /api/v1/projects/{project}/egress/deny", s.denyEgress},
		{"GET /api/v1/projects/{project}/registry-credentials", s.listRegistryCredentials},
		{"PUT /api/v1/projects/{project}/registry-credentials/{registry}", s.setRegistryCredential},
		{"DELETE /api/v1/projects/{project}/registry-credentials/{registry}", s.deleteRegistryCredential},
		{"GET /api/v1/projects/{project}/notifications", s.listWebhooks},
		{"POST /api/v1/projects/{project}/notifications", s.createWebhook},
		{"DELETE /api/v1/projects/{project}/notifications/{id}", s.deleteWebhook},
		{"POST /api/v1/projects/{project}/notifications/{id}/test", s.testWebhook},
		{"GET /api/v1/projects/{project}/notifications/{id}/deliveries", s.listWebhookDeliveries},
		{"GET /api/v1/projects/{project}/drains", s.listDrains},
		{"POST /api/v1/projects/{project}/drains", s.createDrain},
		{"DELETE /api/v1/projects/{project}/drains/{id}", s.deleteDrain},
	}
}

func (s *Server) url(host string) string {
	if s.cfg.RouterPort == 80 {
		return "http://" + host
	}
	return fmt.Sprintf("http://%s:%d", host, s.cfg.RouterPort)
}

func (s *Server) projectJSON(ctx context.Context, p store.Project) (Project, error) {
	envs, err := s.store.ListEnvironments(ctx, p.ID)
	if err != nil {
		return Project{}, err
	}
	out := Project{Name: p.Name, CreatedAt: p.CreatedAt, URL: s.url(s.hosts.Project(p.Name)), Environments: []Environment{}}
	for _, e := range envs {
		out.Environments = append(out.Environments, Environment{
			Name: e.Name, URL: s.url(s.hosts.Environment(p.Name, e.Name)),
			CurrentDeployment: e.CurrentDeploymentID,
		})
		if e.Name == store.ProductionEnvironment {
			out.CurrentDeployment = e.CurrentDeploymentID
		}
	}
	return out, nil
}

func (s *Server) deploymentJSON(ctx context.Context, d store.Deployment) Deployment {
	current := false
	if env, err := s.store.GetEnvironmentByID(ctx, d.EnvironmentID); err == nil {
		current = env.CurrentDeploymentID == d.ID
	}
	out := Deployment{
		ID: d.ID, Project: d.ProjectName, Environment: d.EnvironmentName, Status: d.Status,
		Summary: deploy.Summary(d), Dirty: d.Dirty, Detected: DetectedOf(d.Plan),
		Trigger: d.Trigger, Promote: d.Promote, Current: current,
		URL:          s.url(s.hosts.Preview(d.ID)),
		Commit:       Commit{Branch: d.Branch, SHA: d.CommitSHA, Message: d.CommitMessage, Author: d.CommitAuthor},
		StartCommand: d.StartCommand, DetectedStartCommand: d.DetectedStartCommand, Builder: d.Builder,
		Image: d.Image, ImageDigest: d.ImageDigest, FailureReason: d.FailureReason,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, Phases: phases(d),
	}
	if d.SourceImage != "" {
		out.Source = &Source{Image: d.SourceImage, Digest: d.ImageDigest}
	}
	for _, h := range s.proj.Hostnames(ctx, d) {
		out.URLs = append(out.URLs, s.url(h))
	}
	if !d.FinishedAt.IsZero() {
		f := d.FinishedAt
		out.FinishedAt = &f
	}
	if !d.BuildingAt.IsZero() && !d.BuildEndedAt.IsZero() {
		out.BuildDurationMS = d.BuildEndedAt.Sub(d.BuildingAt).Milliseconds()
	}
	if out.Phases == nil {
		out.Phases = []Phase{}
	}
	s.addRuntime(ctx, d, &out)
	if e, err := s.store.LastExit(ctx, d.ID); err == nil {
		out.LastExit = &Exit{Instance: e.InstanceID, Code: e.Code, OOMKilled: e.OOMKilled}
		if !e.At.IsZero() {
			out.LastExit.At = &e.At
		}
	}
	return out
}

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request) error {
	ps, err := s.store.ListProjects(r.Context())
	if err != nil {
		return err
	}
	out := []Project{}
	for _, p := range ps {
		pj, err := s.projectJSON(r.Context(), p)
		if err != nil {
			return err
		}
		out = append(out, pj)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createProject(w http.ResponseWriter, r *http.Request) error {
	var req CreateProjectRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	p, err := s.proj.Create(r.Context(), req.Name)
	if err != nil {
		return err
	}
	pj, err := s.projectJSON(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, pj)
	return nil
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request) error {
	p, err := s.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return err
	}
	pj, err := s.projectJSON(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, pj)
	return nil
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := s.store.GetProject(ctx, r.PathValue("project"))
	if err != nil {
		return err
	}
	f := store.DeploymentFilter{ProjectID: p.ID}
	q := r.URL.Query()
	if env := q.Get("environment"); env != "" {
		e, err := s.store.GetEnvironment(ctx, p.ID, env)
		if err != nil {
			return err
		}
		f.EnvironmentID = e.ID
	}
	if st := q.Get("status"); st != "" {
		for _, v := range strings.Split(st, ",") {
			v = strings.ToUpper(strings.TrimSpace(v))
			if !deploy.Status(v).Valid() {
				return errBadRequest(fmt.Sprintf("unknown status %q", v))
			}
			f.Statuses = append(f.Statuses, v)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return errBadRequest("limit must be a number from 1 to 500")
		}
		f.Limit = n
	}
	if v := q.Get("before"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return errBadRequest("before must be an RFC 3339 time")
		}
		f.Before = t
	}
	ds, err := s.store.ListDeployments(ctx, f)
	if err != nil {
		return err
	}
	out := []Deployment{}
	for _, d := range ds {
		out = append(out, s.deploymentJSON(ctx, d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// createDeployment takes the source as the request body (a gzip-compressed
// tar) and the metadata as query parameters.
func (s *Server) createDeployment(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	q := r.URL.Query()
	if _, err := s.store.GetProject(ctx, r.PathValue("project")); err != nil {
		return err
	}
	if isJSON(r) {
		return s.createImageDeployment(w, r)
	}
	promote := true
	if v := q.Get("promote"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errBadRequest("promote must be true or false")
		}
		promote = b
	}
	dirty := false
	if v := q.Get("dirty"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errBadRequest("dirty must be true or false")
		}
		dirty = b
	}
	if r.ContentLength > s.cfg.MaxUploadBytes {
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
			Message: fmt.Sprintf("source upload of %d bytes is over the limit of %d MiB", r.ContentLength, s.cfg.MaxUploadBytes>>20)}
	}
	body := bufio.NewReaderSize(http.MaxBytesReader(w, r.Body, s.cfg.MaxUploadBytes+1), 64<<10)
	if magic, err := body.Peek(2); err != nil || magic[0] != 0x1f || magic[1] != 0x8b {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidSource,
			Message: "the upload is not a gzip-compressed tar archive (send the source tree as .tar.gz)"}
	}
	d, err := s.dep.Create(ctx, deploy.CreateRequest{
		Project: r.PathValue("project"), Environment: q.Get("environment"),
		Trigger: "upload", Promote: promote,
		Branch: q.Get("branch"), CommitSHA: q.Get("commit"), Message: q.Get("message"), Author: q.Get("author"),
		Dirty: dirty, Source: body, MaxSourceBytes: s.cfg.MaxUploadBytes,
	})
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
				Message: fmt.Sprintf("source upload is over the limit of %d MiB", s.cfg.MaxUploadBytes>>20)}
		}
		return err
	}
	writeJSON(w, http.StatusCreated, s.deploymentJSON(ctx, d))
	return nil
}

func (s *Server) getDeployment(ctx context.Context, id string) (store.Deployment, error) {
	return s.store.GetDeployment(ctx, id)
}

// deployment returns a handler that answers with the deployment act
// returns for the id in the path (reading, stopping or promoting it).
func (s *Server) deployment(act func(ctx context.Context, id string) (store.Deployment, error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		d, err := act(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.deploymentJSON(r.Context(), d))
		return nil
	}
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errBadRequest("invalid JSON body: " + err.Error())
	}
	return nil
}

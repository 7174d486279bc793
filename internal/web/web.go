// Package web is Slipway's dashboard: server-rendered HTML pages (html/template,
// assets embedded in the binary) with a little JavaScript for live updates.
//
// It shows projects, their environments and deployments, a deployment's
// phase timeline, its build log streamed live and its runtime logs, and a
// project's settings (environment variables, custom domains, start command,
// health check, scale to zero, and the link to a GitHub repository: its
// URL, clone token and push webhook). Every page works without
// JavaScript; with it, statuses update in place and logs stream.
//
// Signing in takes an API token (or the admin password, when one is
// configured) and sets an HMAC-signed, HttpOnly, SameSite=Lax session
// cookie. Every POST must carry the session's CSRF token and pass
// net/http's cross-origin protection.
//
// Live updates use server-sent events served by this package from the
// store and deploy.Controller.Changed, so they ride on the session cookie:
//
//	GET /live?scope=S&fp=F               event "change" when what the page shows changed
//	GET /deployments/{id}/build-log/stream   event "line", "status", "end"
//	GET /deployments/{id}/logs/stream        event "line" (runtime logs, follow)
//	GET /deployments/{id}/logs?before=N      JSON page of older runtime lines
//
// Mount the handler at "/" beside the API: it answers every path but
// /api/, /v2/, /git/ and /hooks/, which belong to other handlers.
package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/drain"
	"github.com/slipwayhq/slipway/internal/notify"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// Config wires the dashboard. Store, Deploy and Projects are required.
type Config struct {
	// Store is read only: every write goes through Projects (the project
	// rules) or Deploy (the lifecycle), as the API's do.
	Store    store.Reader
	Deploy   *deploy.Controller
	Projects *project.Service
	// RouterPort is the port apps are served on, used to build their URLs.
	// If zero, 80.
	RouterPort int
	// AdminPassword, if set, signs in as the admin user in addition to API
	// tokens. If empty, only API tokens sign in.
	AdminPassword string
	// SessionKey signs session cookies and CSRF tokens. If empty, a random
	// key is made by New, so sessions end when the server restarts.
	SessionKey []byte
	// SessionTTL is how long a sign-in lasts. If zero, 7 days.
	SessionTTL time.Duration
	// Notify and Drains, if set, manage the project's webhooks and log
	// drains (its notifications page).
	Notify *notify.Service
	Drains *drain.Service
	// LivePoll is how often a live page re-checks state that no deployment
	// event announces (new deployments, domains, promotions of other
	// deployments). If zero, 2 seconds.
	LivePoll time.Duration
	// Log receives errors. If nil, slog.Default().
	Log *slog.Logger
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// handler is the dashboard.
type handler struct {
	cfg    Config
	store  store.Reader
	dep    *deploy.Controller
	proj   *project.Service
	hosts  project.Hosts
	log    *slog.Logger
	pages  map[string]*template.Template
	assets *assets
	logins *loginLimiter
	mux    *http.ServeMux
	cop    *http.CrossOriginProtection
	// reveal seals a new webhook secret for the one page load that shows
	// it (see setReveal); its key is derived from SessionKey.
	reveal *secrets.Box
}

// New returns the dashboard's handler. It panics if cfg.Store,
// cfg.Deploy or cfg.Projects is nil.
func New(cfg Config) http.Handler {
	if cfg.Store == nil || cfg.Deploy == nil || cfg.Projects == nil {
		panic("web: Config.Store, Config.Deploy and Config.Projects are required")
	}
	if cfg.RouterPort == 0 {
		cfg.RouterPort = 80
	}
	if len(cfg.SessionKey) == 0 {
		cfg.SessionKey = make([]byte, 32)
		rand.Read(cfg.SessionKey)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 7 * 24 * time.Hour
	}
	if cfg.LivePoll <= 0 {
		cfg.LivePoll = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	revealKey := hmac.New(sha256.New, cfg.SessionKey)
	revealKey.Write([]byte("slipway:web-reveal"))
	reveal, err := secrets.New(revealKey.Sum(nil))
	if err != nil {
		panic(err)
	}
	h := &handler{
		cfg: cfg, store: cfg.Store, dep: cfg.Deploy, proj: cfg.Projects, hosts: cfg.Projects.Hosts(), log: cfg.Log, reveal: reveal,
		assets: newAssets(static),
		logins: newLoginLimiter(),
		mux:    http.NewServeMux(),
		cop:    http.NewCrossOriginProtection(),
	}
	h.pages = parsePages(h.funcs())
	h.routes()
	return h
}

func (h *handler) routes() {
	m := h.mux
	m.Handle("GET /static/", h.assets)
	m.HandleFunc("GET /login", h.loginPage)
	m.HandleFunc("POST /login", h.login)
	m.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, h.assets.url("favicon.svg"), http.StatusMovedPermanently)
	})

	page := func(pattern string, fn func(http.ResponseWriter, *http.Request) error) {
		m.Handle(pattern, h.signedIn(h.pageHandler(fn)))
	}
	action := func(pattern string, fn func(http.ResponseWriter, *http.Request) error) {
		m.Handle(pattern, h.signedIn(h.csrf(h.actionHandler(fn))))
	}
	stream := func(pattern string, fn http.HandlerFunc) {
		m.Handle(pattern, h.signedIn(fn))
	}

	page("GET /{$}", h.projectsPage)
	page("GET /projects/{project}", h.projectPage)
	page("GET /projects/{project}/settings", h.settingsPage)
	page("GET /deployments/{id}", h.deploymentPage)

	action("POST /logout", h.logout)
	action("POST /projects", h.createProject)
	action("POST /projects/{project}/settings", h.projectForm("general", h.saveSettings))
	action("POST /projects/{project}/environments", h.projectForm("environments", h.createEnvironment))
	action("POST /projects/{project}/vars", h.envForm("vars", h.setVar))
	action("POST /projects/{project}/vars/delete", h.envForm("vars", h.deleteVar))
	action("POST /projects/{project}/domains", h.envForm("domains", h.addDomain))
	action("POST /projects/{project}/domains/delete", h.envForm("domains", h.removeDomain))
	action("POST /projects/{project}/egress/allow", h.projectForm("egress", h.allowEgress))
	action("POST /projects/{project}/egress/deny", h.projectForm("egress", h.denyEgress))
	action("POST /projects/{project}/egress/none", h.projectForm("egress", h.egressNone))
	action("POST /projects/{project}/repository", h.projectForm("git", h.linkRepository))
	action("POST /projects/{project}/repository/unlink", h.projectForm("git", h.unlinkRepository))
	action("POST /projects/{project}/repository/token", h.projectForm("git", h.setCloneToken))
	action("POST /projects/{project}/repository/secret", h.projectForm("git", h.rotateSecret))
	action("POST /projects/{project}/previews", h.projectForm("previews", h.setPreviews))
	action("POST /projects/{project}/deploy-image", h.deployImage)
	action("POST /deployments/{id}/redeploy", h.redeploy)
	action("POST /deployments/{id}/promote", h.promote)
	action("POST /deployments/{id}/stop", h.stop)
	h.notifyRoutes(page, action)

	stream("GET /live", h.live)
	stream("GET /deployments/{id}/build-log/stream", h.logStream(store.LogBuild))
	stream("GET /deployments/{id}/build-log.txt", h.buildLogText)
	stream("GET /deployments/{id}/logs", h.runtimeLogs)
	stream("GET /deployments/{id}/logs/stream", h.logStream(store.LogRuntime))
	page("GET /projects/{project}/metrics", h.projectMetrics)
	page("GET /deployments/{id}/metrics", h.deploymentMetrics)

	m.Handle("/", h.signedIn(h.pageHandler(func(w http.ResponseWriter, r *http.Request) error {
		return &httpError{Status: http.StatusNotFound, Message: "There is no page at " + r.URL.Path + "."}
	})))
}

// ServeHTTP sets the security headers every answer carries and dispatches.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "+
		"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	h.mux.ServeHTTP(w, r)
}

// httpError is an error with a status and a message safe to show.
type httpError struct {
	Status  int
	Message string
}

func (e *httpError) Error() string { return e.Message }

// classify maps an error to a status and a message safe to show; detail
// of unexpected errors goes to the log only.
func (h *handler) classify(r *http.Request, err error) (int, string) {
	var he *httpError
	var ae *api.Error
	switch {
	case errors.As(err, &he):
		return he.Status, he.Message
	case errors.As(err, &ae):
		return ae.Status, capitalize(ae.Message) + "."
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, capitalize(err.Error()) + "."
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConflict):
		return http.StatusConflict, capitalize(err.Error()) + "."
	case errors.Is(err, project.ErrInvalid):
		return http.StatusBadRequest, capitalize(strings.TrimSuffix(err.Error(), ": "+project.ErrInvalid.Error())) + "."
	case errors.Is(err, context.Canceled):
		return 499, "The request was cancelled."
	}
	h.log.Error("dashboard", "method", r.Method, "path", r.URL.Path, "err", err)
	return http.StatusInternalServerError, "Something went wrong on the server; the details are in its log."
}

// pageHandler renders fn's error, if any, as an error page.
func (h *handler) pageHandler(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			status, msg := h.classify(r, err)
			w.Header().Set("Cache-Control", "no-store")
			h.render(w, r, status, "error", pageData{Title: http.StatusText(status), Data: errorView{Status: status, Message: msg}})
		}
	})
}

// actionHandler runs a form action: on error it flashes the message and
// sends the browser back where it came from.
func (h *handler) actionHandler(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			_, msg := h.classify(r, err)
			setFlash(w, "error", msg)
			to := backTo(r, "/")
			if rt := (*returnTo)(nil); errors.As(err, &rt) {
				to = rt.url
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
		}
	})
}

func (h *handler) url(host string) string {
	if h.cfg.RouterPort == 80 {
		return "http://" + host
	}
	return fmt.Sprintf("http://%s:%d", host, h.cfg.RouterPort)
}

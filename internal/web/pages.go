package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/store"
)

// deplView is a deployment as the pages show it.
type deplView struct {
	ID, Project, Environment, Status, Trigger string
	Summary                                   string // building, successful or failed
	Branch, SHA, Message, Author              string
	CreatedAt, UpdatedAt                      time.Time
	// Duration is from creation to RUNNING (or to the end); while the
	// deployment is in progress it counts from CreatedAt (InProgress).
	Duration   time.Duration
	InProgress bool
	Current    bool
	PreviewURL string
	Failure    string
	CanPromote bool
	// Rollback marks a promotable deployment older than the current one.
	Rollback bool
	CanStop  bool
	// V changes whenever what a row shows changes (live updates).
	V string
}

func (h *handler) deplView(ctx context.Context, d store.Deployment, currents map[string]string) deplView {
	cur, ok := currents[d.EnvironmentID]
	if !ok {
		if env, err := h.store.GetEnvironmentByID(ctx, d.EnvironmentID); err == nil {
			cur = env.CurrentDeploymentID
			if currents != nil {
				currents[d.EnvironmentID] = cur
			}
		}
	}
	st := deploy.Status(d.Status)
	v := deplView{
		ID: d.ID, Project: d.ProjectName, Environment: d.EnvironmentName, Status: d.Status, Trigger: d.Trigger,
		Branch: d.Branch, SHA: d.CommitSHA, Message: d.CommitMessage, Author: d.CommitAuthor,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, Current: cur == d.ID,
		PreviewURL: h.url(h.hosts.Preview(d.ID)), Failure: d.FailureReason, Summary: deploy.Summary(d),
	}
	switch {
	case !d.DeployEndedAt.IsZero():
		v.Duration = d.DeployEndedAt.Sub(d.CreatedAt)
	case !d.FinishedAt.IsZero():
		v.Duration = d.FinishedAt.Sub(d.CreatedAt)
	default:
		v.InProgress = !st.Terminal()
		v.Duration = time.Since(d.CreatedAt)
	}
	v.CanPromote = st == deploy.Running && !v.Current
	v.CanStop = !st.Terminal()
	v.V = fmt.Sprintf("%s.%s.%t", d.ID, d.Status, v.Current)
	return v
}

// projectRow is one line of the projects list.
type projectRow struct {
	Name, URL, Host string
	Current         *deplView // production's current deployment
	Latest          *deplView // the newest deployment, when not the current one
	Status          string    // of Current, else of Latest
	LastActivity    time.Time
	V               string
}

type projectsView struct {
	Projects []projectRow
}

func (h *handler) projectsPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	// The fingerprint is taken before the data is read: a change in
	// between then reaches the page as one more (harmless) refresh.
	fp, _, err := h.fingerprint(ctx, "projects")
	if err != nil {
		return err
	}
	ps, err := h.store.ListProjects(ctx)
	if err != nil {
		return err
	}
	view := projectsView{}
	for _, p := range ps {
		row, err := h.projectRow(ctx, p)
		if err != nil {
			return err
		}
		view.Projects = append(view.Projects, row)
	}
	h.render(w, r, http.StatusOK, "projects", pageData{Title: "Projects", Live: "projects", FP: fp, Data: view})
	return nil
}

func (h *handler) projectRow(ctx context.Context, p store.Project) (projectRow, error) {
	host := h.hosts.Project(p.Name)
	row := projectRow{Name: p.Name, Host: host, URL: h.url(host), LastActivity: p.CreatedAt}
	prod, err := h.store.GetEnvironment(ctx, p.ID, store.ProductionEnvironment)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return row, err
	}
	currents := map[string]string{prod.ID: prod.CurrentDeploymentID}
	if prod.CurrentDeploymentID != "" {
		if d, err := h.store.GetDeployment(ctx, prod.CurrentDeploymentID); err == nil {
			v := h.deplView(ctx, d, currents)
			row.Current = &v
			row.Status = d.Status
		}
	}
	latest, err := h.store.ListDeployments(ctx, store.DeploymentFilter{ProjectID: p.ID, Limit: 1})
	if err != nil {
		return row, err
	}
	if len(latest) == 1 {
		d := latest[0]
		if d.UpdatedAt.After(row.LastActivity) {
			row.LastActivity = d.UpdatedAt
		}
		if row.Current == nil || row.Current.ID != d.ID {
			v := h.deplView(ctx, d, currents)
			row.Latest = &v
			if row.Status == "" {
				row.Status = d.Status
			}
		}
	}
	row.V = row.Status
	if row.Current != nil {
		row.V += "." + row.Current.V
	}
	if row.Latest != nil {
		row.V += "." + row.Latest.V
	}
	return row, nil
}

// envView is an environment with where it points.
type envView struct {
	Name     string
	URL      string
	Host     string
	Branches []string
	Current  *deplView
	Domains  []domainView
	V        string
}

type domainView struct {
	Name, URL string
}

type projectView struct {
	Name         string
	URL, Host    string
	Envs         []envView
	Deployments  []deplView
	EnvNames     []string
	Statuses     []string
	FilterEnv    string
	FilterStatus string
	// Older is the query of the next page of deployments, when there is one.
	Older    string
	Filtered bool
	ListV    string
	GitURL   string
	Back     string
	Metrics  metricsView
}

var allStatuses = []string{"PENDING", "INITIALIZING", "BUILDING", "DEPLOYING", "RUNNING", "FAILED", "STOPPED"}

const deploymentsPerPage = 30

func (h *handler) envViews(ctx context.Context, p store.Project, currents map[string]string) ([]envView, []store.Environment, error) {
	envs, err := h.store.ListEnvironments(ctx, p.ID)
	if err != nil {
		return nil, nil, err
	}
	var out []envView
	for _, e := range envs {
		currents[e.ID] = e.CurrentDeploymentID
		host := h.hosts.Environment(p.Name, e.Name)
		ev := envView{Name: e.Name, Host: host, URL: h.url(host), Branches: e.Branches}
		doms, err := h.store.ListDomains(ctx, e.ID)
		if err != nil {
			return nil, nil, err
		}
		for _, d := range doms {
			ev.Domains = append(ev.Domains, domainView{Name: d.Name, URL: h.url(d.Name)})
		}
		ev.V = fmt.Sprintf("%s.%d", e.CurrentDeploymentID, len(doms))
		if e.CurrentDeploymentID != "" {
			if d, err := h.store.GetDeployment(ctx, e.CurrentDeploymentID); err == nil {
				v := h.deplView(ctx, d, currents)
				ev.Current = &v
				ev.V += "." + v.V
			}
		}
		out = append(out, ev)
	}
	return out, envs, nil
}

func (h *handler) projectPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	fp, _, err := h.fingerprint(ctx, "project:"+r.PathValue("project"))
	if err != nil {
		return err
	}
	p, err := h.store.GetProject(ctx, r.PathValue("project"))
	if err != nil {
		return err
	}
	currents := map[string]string{}
	envs, stored, err := h.envViews(ctx, p, currents)
	if err != nil {
		return err
	}
	host := h.hosts.Project(p.Name)
	view := projectView{Name: p.Name, Host: host, URL: h.url(host), Envs: envs, Statuses: allStatuses,
		GitURL: baseURL(r) + "/git/" + p.Name + ".git", Back: r.URL.RequestURI()}
	q := r.URL.Query()
	f := store.DeploymentFilter{ProjectID: p.ID, Limit: deploymentsPerPage + 1}
	for _, e := range stored {
		view.EnvNames = append(view.EnvNames, e.Name)
		if e.Name == q.Get("environment") {
			f.EnvironmentID = e.ID
			view.FilterEnv = e.Name
		}
	}
	if q.Get("environment") != "" && view.FilterEnv == "" {
		return &httpError{Status: http.StatusNotFound, Message: fmt.Sprintf("Project %s has no environment %q.", p.Name, q.Get("environment"))}
	}
	if st := strings.ToUpper(q.Get("status")); st != "" {
		if !deploy.Status(st).Valid() {
			return &httpError{Status: http.StatusBadRequest, Message: fmt.Sprintf("There is no status %q.", q.Get("status"))}
		}
		f.Statuses = []string{st}
		view.FilterStatus = st
	}
	if v := q.Get("before"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return &httpError{Status: http.StatusBadRequest, Message: "The 'before' parameter must be a time."}
		}
		f.Before = t
	}
	view.Filtered = view.FilterEnv != "" || view.FilterStatus != "" || !f.Before.IsZero()
	ds, err := h.store.ListDeployments(ctx, f)
	if err != nil {
		return err
	}
	if len(ds) > deploymentsPerPage {
		ds = ds[:deploymentsPerPage]
		next := q
		next.Set("before", ds[len(ds)-1].CreatedAt.Format(time.RFC3339Nano))
		view.Older = next.Encode()
	}
	curCreated := map[string]time.Time{}
	for _, e := range envs {
		if e.Current != nil {
			curCreated[e.Name] = e.Current.CreatedAt
		}
	}
	var vs []string
	for _, d := range ds {
		v := h.deplView(ctx, d, currents)
		v.Rollback = v.CanPromote && d.CreatedAt.Before(curCreated[d.EnvironmentName])
		view.Deployments = append(view.Deployments, v)
		vs = append(vs, v.V)
	}
	view.ListV = strings.Join(vs, ",")
	if view.Metrics, err = h.metricsOf(r, p.ID, "", "/projects/"+p.Name+"/metrics"); err != nil {
		return err
	}
	h.render(w, r, http.StatusOK, "project", pageData{
		Title: p.Name, Crumbs: []crumb{{"Projects", "/"}, {p.Name, ""}},
		Live: "project:" + p.Name, FP: fp, Data: view,
	})
	return nil
}

// phaseView is one step of a deployment's timeline.
type phaseView struct {
	Name     string
	State    string // "done", "active", "failed", "waiting", "skipped"
	Start    time.Time
	Duration time.Duration
	Note     string
}

type deploymentView struct {
	deplView
	Phases               []phaseView
	URLs                 []domainView
	StartCommand         string
	DetectedStartCommand string
	Builder              string
	Plan                 string // the stored build plan, indented JSON
	Detected             *api.Detected
	Dirty                bool
	Image, ImageDigest   string
	FinishedAt           time.Time
	Attempts             int
	Wakes                []store.Wake
	Terminal             bool
	HeadV                string
	runtimeView
	// Metrics are the plots of its history, once it has run; Steps its
	// build's steps as far as its log tells.
	Metrics *metricsView
	Steps   stepList
	// Building is true until the build is over (its steps are shown open).
	Building bool
}

// Dep is the deployment's row view (for the shared templates).
func (v deploymentView) Dep() deplView { return v.deplView }

func (h *handler) deploymentPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	fp, _, err := h.fingerprint(ctx, "deployment:"+r.PathValue("id"))
	if err != nil {
		return err
	}
	d, err := h.store.GetDeployment(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	view := deploymentView{
		deplView: h.deplView(ctx, d, nil), Phases: phases(d),
		StartCommand: d.StartCommand, DetectedStartCommand: d.DetectedStartCommand,
		Builder: d.Builder, Image: d.Image, ImageDigest: d.ImageDigest, FinishedAt: d.FinishedAt,
		Attempts: d.Attempts, Terminal: deploy.Status(d.Status).Terminal(),
		Detected: api.DetectedOf(d.Plan), Dirty: d.Dirty,
	}
	if d.Plan != "" {
		var buf bytes.Buffer
		if json.Indent(&buf, []byte(d.Plan), "", "  ") == nil {
			view.Plan = buf.String()
		}
	}
	if env, err := h.store.GetEnvironmentByID(ctx, d.EnvironmentID); err == nil && view.CanPromote {
		if cur, err := h.store.GetDeployment(ctx, env.CurrentDeploymentID); err == nil {
			view.Rollback = d.CreatedAt.Before(cur.CreatedAt)
		}
	}
	for _, host := range h.proj.Hostnames(ctx, d) {
		view.URLs = append(view.URLs, domainView{Name: host, URL: h.url(host)})
	}
	if wakes, err := h.dep.Wakes(ctx, d.ID, 5); err == nil {
		view.Wakes = wakes
	}
	view.runtimeView = h.runtimeView(ctx, d)
	if hasRun(d) {
		m, err := h.metricsOf(r, d.ProjectID, d.ID, "/deployments/"+d.ID+"/metrics")
		if err != nil {
			return err
		}
		view.Metrics = &m
	}
	if view.Steps, err = h.buildSteps(ctx, d.ID); err != nil {
		return err
	}
	switch deploy.Status(d.Status) {
	case deploy.Pending, deploy.Initializing, deploy.Building:
		view.Building = true
	}
	view.HeadV = fmt.Sprintf("%s.%d.%d.%s", view.V, len(view.URLs), d.UpdatedAt.UnixNano(), view.runtimeView.v())
	h.render(w, r, http.StatusOK, "deployment", pageData{
		Title:  "Deployment " + d.ID + " · " + d.ProjectName,
		Crumbs: []crumb{{"Projects", "/"}, {d.ProjectName, "/projects/" + d.ProjectName}, {d.ID, ""}},
		Live:   "deployment:" + d.ID, FP: fp, Data: view,
	})
	return nil
}

// phases lays out a deployment's lifecycle as a timeline: the queue wait,
// the three timed phases, and where it ended.
func phases(d store.Deployment) []phaseView {
	st := deploy.Status(d.Status)
	end := func(t time.Time) time.Time {
		if t.IsZero() {
			return time.Now()
		}
		return t
	}
	type step struct {
		name       string
		start, end time.Time
	}
	queueEnd := d.InitializingAt
	if queueEnd.IsZero() {
		queueEnd = d.FinishedAt
	}
	steps := []step{
		{"Queued", d.CreatedAt, queueEnd},
		{"Initializing", d.InitializingAt, d.InitEndedAt},
		{"Building", d.BuildingAt, d.BuildEndedAt},
		{"Deploying", d.DeployingAt, d.DeployEndedAt},
	}
	var out []phaseView
	reachedLast := -1
	for i, s := range steps {
		if !s.start.IsZero() {
			reachedLast = i
		}
	}
	for i, s := range steps {
		p := phaseView{Name: s.name, Start: s.start}
		switch {
		case s.start.IsZero():
			p.State = "waiting"
			if st.Terminal() || st == deploy.Running {
				p.State = "skipped"
			}
		case !s.end.IsZero():
			p.State = "done"
			p.Duration = s.end.Sub(s.start)
			if i == reachedLast && st == deploy.Failed {
				p.State = "failed"
			}
		case st.Terminal():
			// Interrupted: the phase ended when the deployment did.
			p.State = "failed"
			if st == deploy.Stopped {
				p.State = "skipped"
				p.Note = "stopped"
			}
			p.Duration = end(d.FinishedAt).Sub(s.start)
		default:
			p.State = "active"
			p.Duration = time.Since(s.start)
		}
		out = append(out, p)
	}
	final := phaseView{Name: statusLabelTitle(d.Status), State: "waiting"}
	switch st {
	case deploy.Running:
		final.State, final.Start = "done", d.DeployEndedAt
	case deploy.Failed:
		final.State, final.Start = "failed", d.FinishedAt
	case deploy.Stopped:
		final.State, final.Start = "stopped", d.FinishedAt
	default:
		final.Name = "Running"
	}
	return append(out, final)
}

func statusLabelTitle(s string) string {
	return capitalize(strings.ToLower(s))
}

// settingsView is the settings page.
type settingsView struct {
	Project       string
	S             store.ProjectSettings
	DetectedStart string
	DetectedRoot  string // the project root of the latest deployment, "" when not known
	Envs          []store.Environment
	Env           store.Environment
	Vars          []project.Var
	VarsError     string
	Domains       []domainView
	EnvHost       string
	BaseDomain    string
	WebhookURL    string
	RepoURL       string
	DefaultBranch string // of the linked repository, "" when not known
	SecretSet     bool
	TokenSet      bool
	// NewSecret is the webhook secret just generated, shown this once.
	NewSecret string
	// CanLink is false when the server cannot seal secrets.
	CanLink   bool
	Hooks     []deplView // recent deployments started by the webhook
	HooksNote string     // why Hooks could not be listed
	GitURL    string
	Back      string
	Egress    store.Egress
	// Sandboxes are the kinds the sandbox setting offers; DefaultSandbox
	// is the server's, used when the setting is empty.
	Sandboxes      []sandboxOption
	DefaultSandbox string
}

// sandboxOption is a sandbox kind as the settings form offers it.
type sandboxOption struct {
	Kind      string
	Available bool // this server can run it
}

func (h *handler) settingsPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := h.store.GetProject(ctx, r.PathValue("project"))
	if err != nil {
		return err
	}
	envs, err := h.store.ListEnvironments(ctx, p.ID)
	if err != nil {
		return err
	}
	view := settingsView{Project: p.Name, S: p.Settings, Envs: envs, Back: r.URL.RequestURI(),
		WebhookURL: baseURL(r) + "/hooks/github/" + p.Name, RepoURL: p.RepoURL, DefaultBranch: p.RepoDefaultBranch, SecretSet: len(p.WebhookSecret) > 0,
		TokenSet: len(p.RepoToken) > 0, NewSecret: h.takeReveal(w, r, p), CanLink: h.proj.CanLinkRepositories(),
		GitURL: baseURL(r) + "/git/" + p.Name + ".git", Egress: p.Egress, DefaultSandbox: h.dep.DefaultSandbox()}
	for _, kind := range project.Sandboxes {
		view.Sandboxes = append(view.Sandboxes, sandboxOption{Kind: kind, Available: slices.Contains(h.dep.Sandboxes(), kind)})
	}
	if hooks, err := h.webhookDeployments(r, p, 5); err != nil {
		view.HooksNote = "The recent deliveries could not be read."
		h.log.Error("settings page", "project", p.Name, "err", err)
	} else {
		view.Hooks = hooks
	}
	want := r.URL.Query().Get("env")
	if want == "" {
		want = store.ProductionEnvironment
	}
	found := false
	for _, e := range envs {
		if e.Name == want {
			view.Env, found = e, true
		}
	}
	if !found {
		return &httpError{Status: http.StatusNotFound, Message: fmt.Sprintf("Project %s has no environment %q.", p.Name, want)}
	}
	view.EnvHost = h.hosts.Environment(p.Name, view.Env.Name)
	view.BaseDomain = strings.TrimPrefix(h.hosts.Project(p.Name), p.Name+".")
	if vars, err := h.proj.Vars(ctx, view.Env); err != nil {
		view.VarsError = capitalize(err.Error()) + "."
	} else {
		view.Vars = vars
	}
	doms, err := h.store.ListDomains(ctx, view.Env.ID)
	if err != nil {
		return err
	}
	for _, d := range doms {
		view.Domains = append(view.Domains, domainView{Name: d.Name, URL: h.url(d.Name)})
	}
	if ds, err := h.store.ListDeployments(ctx, store.DeploymentFilter{ProjectID: p.ID, Limit: 1}); err == nil && len(ds) == 1 {
		view.DetectedStart = ds[0].DetectedStartCommand
		if det := api.DetectedOf(ds[0].Plan); det != nil {
			view.DetectedRoot = det.Root
		}
	}
	h.render(w, r, http.StatusOK, "settings", pageData{
		Title:  "Settings · " + p.Name,
		Crumbs: []crumb{{"Projects", "/"}, {p.Name, "/projects/" + p.Name}, {"Settings", ""}},
		Data:   view,
	})
	return nil
}

// baseURL is the dashboard's own origin as the browser sees it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

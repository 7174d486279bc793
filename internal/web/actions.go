package web

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/store"
)

// Form actions. Each answers with a redirect (post/redirect/get) and a
// flash message; an error returned is flashed by actionHandler.

func badRequest(format string, args ...any) error {
	return &httpError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// done ends a form action that worked: it flashes msg and sends the
// browser to url.
func done(w http.ResponseWriter, r *http.Request, msg, url string) error {
	setFlash(w, "ok", msg)
	http.Redirect(w, r, url, http.StatusSeeOther)
	return nil
}

// projectForm is a settings form of the project the path names: fn does
// the work and returns the message to flash and where the browser goes.
// When fn fails, the browser goes where fn said or, if it said nothing,
// back to the form's section of the settings page.
func (h *handler) projectForm(section string, fn func(w http.ResponseWriter, r *http.Request, p store.Project) (msg, to string, err error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, err := h.store.GetProject(r.Context(), r.PathValue("project"))
		if err != nil {
			return err
		}
		msg, to, err := fn(w, r, p)
		if err != nil {
			if to == "" {
				to = backTo(r, "/projects/"+p.Name+"/settings") + "#" + section
			}
			return &returnTo{err: err, url: to}
		}
		return done(w, r, msg, to)
	}
}

// envForm is a settings form of the environment its "env" field names: fn
// does the work and returns the message to flash; the browser goes back
// to the section of the environment's settings, whether fn fails or not.
func (h *handler) envForm(section string, fn func(r *http.Request, env store.Environment) (string, error)) func(http.ResponseWriter, *http.Request) error {
	return h.projectForm(section, func(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
		env, err := h.store.GetEnvironment(r.Context(), p.ID, r.PostFormValue("env"))
		if err != nil {
			return "", "", err
		}
		msg, err := fn(r, env)
		return msg, settingsURL(p, env) + "#" + section, err
	})
}

// returnTo is an action's error with where the browser should go to read
// it (instead of the form's "back" field).
type returnTo struct {
	err error
	url string
}

func (e *returnTo) Error() string { return e.err.Error() }
func (e *returnTo) Unwrap() error { return e.err }

func settingsURL(p store.Project, env store.Environment) string {
	return "/projects/" + p.Name + "/settings?env=" + env.Name
}

func (h *handler) createProject(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimSpace(r.PostFormValue("name"))
	if err := api.ValidateName("project", name); err != nil {
		return err
	}
	if _, err := h.store.CreateProject(r.Context(), store.Project{Name: name}); err != nil {
		return err
	}
	return done(w, r, "Project "+name+" created. Deploy to it with the CLI or a git push.", "/projects/"+name)
}

func (h *handler) redeploy(w http.ResponseWriter, r *http.Request) error {
	rebuild := r.PostFormValue("rebuild") != ""
	d, err := h.dep.Redeploy(r.Context(), r.PathValue("id"), rebuild)
	if err != nil {
		return err
	}
	how := "reusing its image"
	if rebuild {
		how = "with a fresh build"
	}
	return done(w, r, fmt.Sprintf("Redeploying as %s, %s.", d.ID, how), "/deployments/"+d.ID)
}

func (h *handler) promote(w http.ResponseWriter, r *http.Request) error {
	d, err := h.dep.Promote(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return done(w, r, fmt.Sprintf("%s is now the current deployment of %s.", d.ID, d.EnvironmentName), backTo(r, "/deployments/"+d.ID))
}

func (h *handler) stop(w http.ResponseWriter, r *http.Request) error {
	d, err := h.dep.Stop(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return done(w, r, fmt.Sprintf("Deployment %s is %s.", d.ID, strings.ToLower(d.Status)), backTo(r, "/deployments/"+d.ID))
}

func (h *handler) saveSettings(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	s := p.Settings // fields the form does not show are kept
	f := func(name string) string { return strings.TrimSpace(r.PostFormValue(name)) }
	s.StartCommand = f("startCommand")
	if len(s.StartCommand) > 4096 {
		return "", "", badRequest("The start command is longer than 4096 characters.")
	}
	s.HealthPath = f("healthPath")
	if s.HealthPath != "" && (!strings.HasPrefix(s.HealthPath, "/") || strings.ContainsAny(s.HealthPath, " \t\r\n")) {
		return "", "", badRequest("The health check path must start with / and hold no spaces.")
	}
	for _, n := range []struct {
		field, label string
		dst          *int
		max          int
	}{
		{"healthPort", "The health check port", &s.HealthPort, 65535},
		{"healthFailures", "The failure threshold", &s.HealthFailures, 100},
	} {
		*n.dst = 0
		v := f(n.field)
		if v == "" {
			continue
		}
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 || i > n.max {
			return "", "", badRequest("%s must be a number from 1 to %d.", n.label, n.max)
		}
		*n.dst = i
	}
	for _, d := range []struct {
		field, label string
		dst          *string
		zeroOK       bool
	}{
		{"healthInterval", "The health check interval", &s.HealthInterval, false},
		{"healthTimeout", "The health check timeout", &s.HealthTimeout, false},
		{"deployWindow", "The deployment window", &s.DeployWindow, false},
		{"idleTimeout", "The idle timeout", &s.IdleTimeout, true},
	} {
		v := f(d.field)
		*d.dst = v
		if v == "" || (d.zeroOK && v == "0") {
			continue
		}
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 {
			return "", "", badRequest("%s must be a duration such as 30s, 5m or 1h, not %q.", d.label, v)
		}
	}
	if err := h.store.UpdateProjectSettings(r.Context(), p.ID, s); err != nil {
		return "", "", err
	}
	return "Settings saved. They apply to deployments started from now on.", backTo(r, "/projects/"+p.Name+"/settings"), nil
}

func (h *handler) createEnvironment(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	ctx := r.Context()
	name := strings.TrimSpace(r.PostFormValue("name"))
	if err := api.ValidateName("environment", name); err != nil {
		return "", "", err
	}
	var branches []string
	for _, b := range strings.FieldsFunc(r.PostFormValue("branches"), func(c rune) bool { return c == ',' || c == ' ' }) {
		if b != "" {
			branches = append(branches, b)
		}
	}
	for _, b := range branches {
		if _, err := h.store.EnvironmentForBranch(ctx, p.ID, b); err == nil {
			return "", "", badRequest("Branch %s already deploys to another environment.", b)
		}
	}
	if _, err := h.store.CreateEnvironment(ctx, p.ID, name, branches); err != nil {
		return "", "", err
	}
	return "Environment " + name + " created.", "/projects/" + p.Name + "/settings?env=" + name, nil
}

func (h *handler) setVar(r *http.Request, env store.Environment) (string, error) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	if err := h.dep.SetVar(r.Context(), env, name, r.PostFormValue("value"), r.PostFormValue("secret") != ""); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s saved for %s. It applies to deployments started from now on.", name, env.Name), nil
}

func (h *handler) deleteVar(r *http.Request, env store.Environment) (string, error) {
	name := r.PostFormValue("name")
	if err := h.store.DeleteEnvVar(r.Context(), env.ID, name); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s removed from %s.", name, env.Name), nil
}

func (h *handler) addDomain(r *http.Request, env store.Environment) (string, error) {
	name := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(r.PostFormValue("domain"))), ".")
	if _, err := h.dep.AddDomain(r.Context(), env, name); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s now follows %s. Point its DNS at this server.", name, env.Name), nil
}

func (h *handler) removeDomain(r *http.Request, env store.Environment) (string, error) {
	name := r.PostFormValue("domain")
	doms, err := h.store.ListDomains(r.Context(), env.ID)
	if err != nil {
		return "", err
	}
	found := false
	for _, d := range doms {
		found = found || d.Name == name
	}
	if !found {
		return "", &httpError{Status: http.StatusNotFound, Message: fmt.Sprintf("%s is not a domain of %s.", name, env.Name)}
	}
	if err := h.dep.RemoveDomain(r.Context(), name); err != nil {
		return "", err
	}
	return name + " removed.", nil
}

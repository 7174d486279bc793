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

func (h *handler) createProject(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimSpace(r.PostFormValue("name"))
	if err := api.ValidateName("project", name); err != nil {
		return err
	}
	if _, err := h.store.CreateProject(r.Context(), store.Project{Name: name}); err != nil {
		return err
	}
	setFlash(w, "ok", "Project "+name+" created. Deploy to it with the CLI or a git push.")
	http.Redirect(w, r, "/projects/"+name, http.StatusSeeOther)
	return nil
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
	setFlash(w, "ok", fmt.Sprintf("Redeploying as %s, %s.", d.ID, how))
	http.Redirect(w, r, "/deployments/"+d.ID, http.StatusSeeOther)
	return nil
}

func (h *handler) promote(w http.ResponseWriter, r *http.Request) error {
	d, err := h.dep.Promote(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	setFlash(w, "ok", fmt.Sprintf("%s is now the current deployment of %s.", d.ID, d.EnvironmentName))
	http.Redirect(w, r, backTo(r, "/deployments/"+d.ID), http.StatusSeeOther)
	return nil
}

func (h *handler) stop(w http.ResponseWriter, r *http.Request) error {
	d, err := h.dep.Stop(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	setFlash(w, "ok", fmt.Sprintf("Deployment %s is %s.", d.ID, strings.ToLower(d.Status)))
	http.Redirect(w, r, backTo(r, "/deployments/"+d.ID), http.StatusSeeOther)
	return nil
}

func (h *handler) saveSettings(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := h.store.GetProject(ctx, r.PathValue("project"))
	if err != nil {
		return err
	}
	s := p.Settings // fields the form does not show are kept
	f := func(name string) string { return strings.TrimSpace(r.PostFormValue(name)) }
	s.StartCommand = f("startCommand")
	if len(s.StartCommand) > 4096 {
		return badRequest("The start command is longer than 4096 characters.")
	}
	s.HealthPath = f("healthPath")
	if s.HealthPath != "" && (!strings.HasPrefix(s.HealthPath, "/") || strings.ContainsAny(s.HealthPath, " \t\r\n")) {
		return badRequest("The health check path must start with / and hold no spaces.")
	}
	s.HealthPort = 0
	if v := f("healthPort"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return badRequest("The health check port must be a number from 1 to 65535.")
		}
		s.HealthPort = n
	}
	s.HealthFailures = 0
	if v := f("healthFailures"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return badRequest("The failure threshold must be a number from 1 to 100.")
		}
		s.HealthFailures = n
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
			return badRequest("%s must be a duration such as 30s, 5m or 1h, not %q.", d.label, v)
		}
	}
	if err := h.store.UpdateProjectSettings(ctx, p.ID, s); err != nil {
		return err
	}
	setFlash(w, "ok", "Settings saved. They apply to deployments started from now on.")
	http.Redirect(w, r, backTo(r, "/projects/"+p.Name+"/settings"), http.StatusSeeOther)
	return nil
}

func (h *handler) createEnvironment(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := h.store.GetProject(ctx, r.PathValue("project"))
	if err != nil {
		return err
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	if err := api.ValidateName("environment", name); err != nil {
		return err
	}
	var branches []string
	for _, b := range strings.FieldsFunc(r.PostFormValue("branches"), func(c rune) bool { return c == ',' || c == ' ' }) {
		if b != "" {
			branches = append(branches, b)
		}
	}
	for _, b := range branches {
		if _, err := h.store.EnvironmentForBranch(ctx, p.ID, b); err == nil {
			return badRequest("Branch %s already deploys to another environment.", b)
		}
	}
	if _, err := h.store.CreateEnvironment(ctx, p.ID, name, branches); err != nil {
		return err
	}
	setFlash(w, "ok", "Environment "+name+" created.")
	http.Redirect(w, r, "/projects/"+p.Name+"/settings?env="+name, http.StatusSeeOther)
	return nil
}

// formEnv is the project and environment a settings form names.
func (h *handler) formEnv(r *http.Request) (store.Project, store.Environment, error) {
	p, err := h.store.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return p, store.Environment{}, err
	}
	env, err := h.store.GetEnvironment(r.Context(), p.ID, r.PostFormValue("env"))
	return p, env, err
}

func settingsURL(p store.Project, env store.Environment) string {
	return "/projects/" + p.Name + "/settings?env=" + env.Name
}

func (h *handler) setVar(w http.ResponseWriter, r *http.Request) error {
	p, env, err := h.formEnv(r)
	if err != nil {
		return err
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	if err := h.dep.SetVar(r.Context(), env, name, r.PostFormValue("value"), r.PostFormValue("secret") != ""); err != nil {
		return err
	}
	setFlash(w, "ok", fmt.Sprintf("%s saved for %s. It applies to deployments started from now on.", name, env.Name))
	http.Redirect(w, r, settingsURL(p, env)+"#vars", http.StatusSeeOther)
	return nil
}

func (h *handler) deleteVar(w http.ResponseWriter, r *http.Request) error {
	p, env, err := h.formEnv(r)
	if err != nil {
		return err
	}
	name := r.PostFormValue("name")
	if err := h.store.DeleteEnvVar(r.Context(), env.ID, name); err != nil {
		return err
	}
	setFlash(w, "ok", fmt.Sprintf("%s removed from %s.", name, env.Name))
	http.Redirect(w, r, settingsURL(p, env)+"#vars", http.StatusSeeOther)
	return nil
}

func (h *handler) addDomain(w http.ResponseWriter, r *http.Request) error {
	p, env, err := h.formEnv(r)
	if err != nil {
		return err
	}
	name := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(r.PostFormValue("domain"))), ".")
	if _, err := h.dep.AddDomain(r.Context(), env, name); err != nil {
		return err
	}
	setFlash(w, "ok", fmt.Sprintf("%s now follows %s. Point its DNS at this server.", name, env.Name))
	http.Redirect(w, r, settingsURL(p, env)+"#domains", http.StatusSeeOther)
	return nil
}

func (h *handler) removeDomain(w http.ResponseWriter, r *http.Request) error {
	p, env, err := h.formEnv(r)
	if err != nil {
		return err
	}
	name := r.PostFormValue("domain")
	doms, err := h.store.ListDomains(r.Context(), env.ID)
	if err != nil {
		return err
	}
	found := false
	for _, d := range doms {
		found = found || d.Name == name
	}
	if !found {
		return &httpError{Status: http.StatusNotFound, Message: fmt.Sprintf("%s is not a domain of %s.", name, env.Name)}
	}
	if err := h.dep.RemoveDomain(r.Context(), name); err != nil {
		return err
	}
	setFlash(w, "ok", name+" removed.")
	http.Redirect(w, r, settingsURL(p, env)+"#domains", http.StatusSeeOther)
	return nil
}

package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
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
	p, err := h.proj.Create(r.Context(), r.PostFormValue("name"))
	if err != nil {
		return err
	}
	name := p.Name
	return done(w, r, "Project "+name+" created. Deploy to it with the CLI or a git push.", "/projects/"+name)
}

// deployImage deploys a prebuilt image by reference, as `slipway deploy
// --image` does, to production.
func (h *handler) deployImage(w http.ResponseWriter, r *http.Request) error {
	ref := strings.TrimSpace(r.PostFormValue("image"))
	if ref == "" {
		return badRequest("Name an image to deploy, such as %s:v1 or ghcr.io/org/app:1.", r.PathValue("project"))
	}
	d, err := h.dep.Create(r.Context(), deploy.CreateRequest{
		Project: r.PathValue("project"), Trigger: "image", Promote: true, SourceImage: ref,
	})
	if err != nil {
		return err
	}
	return done(w, r, fmt.Sprintf("Deploying image %s as %s.", ref, d.ID), "/deployments/"+d.ID)
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
	s.Sandbox = f("sandbox")
	s.NoSnapshots = f("noSnapshots") == "on"
	s.RootDirectory = f("rootDirectory")
	s.HealthPath = f("healthPath")
	s.HealthInterval, s.HealthTimeout = f("healthInterval"), f("healthTimeout")
	s.DeployWindow, s.IdleTimeout = f("deployWindow"), f("idleTimeout")
	// The form's numbers are parsed here; their ranges, like every other
	// rule, are project.ValidateSettings'.
	for _, n := range []struct {
		field, label string
		dst          *int
		max          int
	}{
		{"healthPort", "The health check port", &s.HealthPort, project.MaxPort},
		{"healthFailures", "The failure threshold", &s.HealthFailures, project.MaxHealthFailure},
	} {
		*n.dst = 0
		if v := f(n.field); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil || i < 1 {
				return "", "", badRequest("%s must be a number from 1 to %d.", n.label, n.max)
			}
			*n.dst = i
		}
	}
	if err := h.proj.UpdateSettings(r.Context(), p, s); err != nil {
		return "", "", err
	}
	return "Settings saved. They apply to deployments created from now on: redeploy a running one to apply them.", backTo(r, "/projects/"+p.Name+"/settings"), nil
}

func (h *handler) createEnvironment(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	env, err := h.proj.CreateEnvironment(r.Context(), p, r.PostFormValue("name"), project.ParseBranches(r.PostFormValue("branches")))
	if err != nil {
		return "", "", err
	}
	name := env.Name
	return "Environment " + name + " created.", "/projects/" + p.Name + "/settings?env=" + name, nil
}

func (h *handler) setVar(r *http.Request, env store.Environment) (string, error) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	if err := h.proj.SetVar(r.Context(), env, name, r.PostFormValue("value"), r.PostFormValue("secret") != ""); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s saved for %s. It applies to deployments created from now on: redeploy a running one to apply it.", name, env.Name), nil
}

func (h *handler) deleteVar(r *http.Request, env store.Environment) (string, error) {
	name := r.PostFormValue("name")
	if err := h.proj.DeleteVar(r.Context(), env, name); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s removed from %s.", name, env.Name), nil
}

func (h *handler) addDomain(r *http.Request, env store.Environment) (string, error) {
	dom, err := h.proj.AddDomain(r.Context(), env, r.PostFormValue("domain"))
	if err != nil {
		return "", err
	}
	name := dom.Name
	return fmt.Sprintf("%s now follows %s. Point its DNS at this server.", name, env.Name), nil
}

func (h *handler) removeDomain(r *http.Request, env store.Environment) (string, error) {
	name := r.PostFormValue("domain")
	if err := h.proj.RemoveDomain(r.Context(), env, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", &httpError{Status: http.StatusNotFound, Message: fmt.Sprintf("%s is not a domain of %s.", name, env.Name)}
		}
		return "", err
	}
	return name + " removed.", nil
}

// egressForm is where the egress forms send the browser back.
func egressForm(p store.Project) string { return "/projects/" + p.Name + "/settings#egress" }

func (h *handler) allowEgress(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	if _, err := h.proj.AllowEgress(r.Context(), p, r.PostFormValue("rule")); err != nil {
		return "", "", err
	}
	rule, _ := project.ParseEgressRule(r.PostFormValue("rule"))
	return fmt.Sprintf("%s apps may now reach %s.", p.Name, rule), egressForm(p), nil
}

func (h *handler) denyEgress(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	rule := r.PostFormValue("rule")
	if _, err := h.proj.DenyEgress(r.Context(), p, rule); err != nil {
		return "", "", err
	}
	return fmt.Sprintf("%s is no longer allowed.", rule), egressForm(p), nil
}

func (h *handler) egressNone(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	none := r.PostFormValue("none") == "1"
	if _, err := h.proj.SetEgressNone(r.Context(), p, none); err != nil {
		return "", "", err
	}
	msg := "Egress reopened: apps reach the public internet again."
	if none {
		msg = "Egress closed: apps reach nothing but Slipway's resolver and private network."
	}
	return msg, egressForm(p), nil
}

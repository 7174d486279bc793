package web

import (
	"fmt"
	"net/http"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/drain"
	"github.com/slipwayhq/slipway/internal/notify"
	"github.com/slipwayhq/slipway/internal/store"
)

// A project's notifications and log drains, on a settings page of their
// own (/projects/{project}/settings/notifications): the same records the
// API's …/notifications and …/drains write, through the same services.
// A webhook's secret is shown once, on the page the browser lands on
// after it is created (the reveal cookie of repository.go, whose path
// covers this page).

func (h *handler) notifyRoutes(page, action func(string, func(http.ResponseWriter, *http.Request) error)) {
	page("GET /projects/{project}/settings/notifications", h.notificationsPage)
	action("POST /projects/{project}/notifications", h.notifyForm(h.addWebhook))
	action("POST /projects/{project}/notifications/delete", h.notifyForm(h.removeWebhook))
	action("POST /projects/{project}/notifications/test", h.notifyForm(h.testWebhook))
	action("POST /projects/{project}/drains", h.notifyForm(h.addDrain))
	action("POST /projects/{project}/drains/delete", h.notifyForm(h.removeDrain))
}

func notifyURL(p store.Project, section string) string {
	return "/projects/" + p.Name + "/settings/notifications#" + section
}

// notifyForm is a form of the notifications page; the browser goes back
// to it whether fn fails or not.
func (h *handler) notifyForm(fn func(w http.ResponseWriter, r *http.Request, p store.Project) (string, string, error)) func(http.ResponseWriter, *http.Request) error {
	return h.projectForm("webhooks", func(w http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
		if h.cfg.Notify == nil || h.cfg.Drains == nil {
			return "", "", badRequest("This server sends no notifications and has no log drains.")
		}
		msg, to, err := fn(w, r, p)
		if err != nil && to == "" {
			to = notifyURL(p, "webhooks")
		}
		return msg, to, err
	})
}

type webhookView struct {
	api.Webhook
	Deliveries []api.WebhookDelivery
}

type notifyView struct {
	Project    string
	Off        bool
	Hooks      []webhookView
	Events     []string
	Default    map[string]bool
	NewSecret  string
	Drains     []api.LogDrain
	DrainsNote string
}

func (h *handler) notificationsPage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p, err := h.store.GetProject(ctx, r.PathValue("project"))
	if err != nil {
		return err
	}
	view := notifyView{Project: p.Name, Events: notify.Events, Default: map[string]bool{}}
	for _, e := range notify.DefaultEvents {
		view.Default[e] = true
	}
	if h.cfg.Notify == nil || h.cfg.Drains == nil {
		view.Off = true
	} else {
		hooks, err := h.cfg.Notify.List(ctx, p)
		if err != nil {
			return err
		}
		for _, hk := range hooks {
			v := webhookView{Webhook: api.WebhookJSON(hk)}
			ds, err := h.cfg.Notify.Deliveries(ctx, p, hk.ID, 10)
			if err != nil {
				return err
			}
			for _, d := range ds {
				v.Deliveries = append(v.Deliveries, api.DeliveryJSON(d))
			}
			view.Hooks = append(view.Hooks, v)
		}
		view.NewSecret = h.takeReveal(w, r, p)
		drains, err := h.cfg.Drains.List(ctx, p)
		if err != nil {
			return err
		}
		for _, d := range drains {
			view.Drains = append(view.Drains, api.LogDrainJSON(d))
		}
	}
	h.render(w, r, http.StatusOK, "notifications", pageData{
		Title:  "Notifications · " + p.Name,
		Crumbs: []crumb{{"Projects", "/"}, {p.Name, "/projects/" + p.Name}, {"Settings", "/projects/" + p.Name + "/settings"}, {"Notifications", ""}},
		Data:   view,
	})
	return nil
}

func (h *handler) addWebhook(w http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	r.ParseForm()
	hook, secret, err := h.cfg.Notify.Add(r.Context(), p, notify.HookSpec{URL: r.PostFormValue("url"),
		Format: r.PostFormValue("format"), Events: r.PostForm["events"]})
	if err != nil {
		return "", "", err
	}
	h.setReveal(w, r, p, secret)
	return "Webhook " + hook.ID + " added. Copy its signing secret now: it is shown this once.", notifyURL(p, "webhooks"), nil
}

func (h *handler) removeWebhook(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	id := r.PostFormValue("id")
	if err := h.cfg.Notify.Remove(r.Context(), p, id); err != nil {
		return "", "", err
	}
	return "Webhook " + id + " removed, with its delivery log.", notifyURL(p, "webhooks"), nil
}

func (h *handler) testWebhook(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	id := r.PostFormValue("id")
	d, err := h.cfg.Notify.SendTest(r.Context(), p, id, 10*time.Second)
	if err != nil {
		return "", "", err
	}
	to := notifyURL(p, "hook-"+id)
	switch {
	case d.State == store.DeliveryDelivered:
		return fmt.Sprintf("Test delivered to webhook %s (HTTP %d).", id, d.LastStatus), to, nil
	case d.Attempts == 0:
		return "Test queued for webhook " + id + "; its first attempt is still under way.", to, nil
	}
	return "", to, badRequest("The test to webhook %s failed: %s.%s", id, d.LastError, map[bool]string{true: " It will be retried.", false: ""}[d.State == store.DeliveryPending])
}

func (h *handler) addDrain(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	d, err := h.cfg.Drains.Add(r.Context(), p, drain.Spec{URL: r.PostFormValue("url"), CA: r.PostFormValue("ca")})
	if err != nil {
		return "", "", err
	}
	return "Log drain " + d.ID + " added: the project's runtime logs go to " + d.URL + " from now on.", notifyURL(p, "drains"), nil
}

func (h *handler) removeDrain(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	id := r.PostFormValue("id")
	if err := h.cfg.Drains.Remove(r.Context(), p, id); err != nil {
		return "", "", err
	}
	return "Log drain " + id + " removed.", notifyURL(p, "drains"), nil
}

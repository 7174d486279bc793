package web

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/store"
)

// The repository link of a project, from its settings page: the same
// record PUT /api/v1/projects/{project}/repository writes. A linked
// project is cloned from its URL (with its clone token, if set) when a
// GitHub push webhook signed with its secret arrives at
// /hooks/github/{project}.
//
// The webhook secret is shown once, on the page the browser lands on after
// it is generated (a short-lived cookie, sealed, scoped to that page,
// carries it across the redirect); afterwards it can only be rotated, as
// through the API. The clone token is write-only.

const revealCookie = "slipway_reveal"

// repoForm is where the repository forms send the browser back.
func repoForm(p store.Project) string { return "/projects/" + p.Name + "/settings#git" }

func (h *handler) linkRepository(w http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	linked, err := h.proj.LinkRepository(r.Context(), p, project.RepoLink{URL: r.PostFormValue("url"), Token: r.PostFormValue("token")})
	if err != nil {
		return "", "", err
	}
	msg := p.Name + " is linked to " + linked.URL + "."
	if linked.Converted {
		msg += " (The SSH address was turned into its https URL: this server clones over https, with the clone token for a private repository.)"
	}
	if linked.Secret != "" {
		h.setReveal(w, r, p, linked.Secret)
		msg += " Add the webhook below to the repository on GitHub, with the secret shown once."
	}
	return msg, repoForm(p), nil
}

func (h *handler) unlinkRepository(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	if err := h.proj.UnlinkRepository(r.Context(), p); err != nil {
		return "", "", err
	}
	return "Repository unlinked; its webhook secret and clone token are deleted, so webhook deliveries are refused. " +
		"Remove the webhook from the repository on GitHub too.", repoForm(p), nil
}

func (h *handler) setCloneToken(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	token := r.PostFormValue("token")
	if r.PostFormValue("clear") != "" {
		token = ""
	} else if strings.TrimSpace(token) == "" {
		return "", "", badRequest("Enter the clone token (a GitHub personal access token with read access to the repository).")
	}
	if err := h.proj.SetCloneToken(r.Context(), p, token); err != nil {
		return "", "", err
	}
	if token == "" {
		return "Clone token removed: the repository is cloned without credentials from now on.", repoForm(p), nil
	}
	return "Clone token saved. It is used for the next clone and never shown.", repoForm(p), nil
}

func (h *handler) rotateSecret(w http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	secret, err := h.proj.RotateWebhookSecret(r.Context(), p)
	if err != nil {
		return "", "", err
	}
	h.setReveal(w, r, p, secret)
	return "New webhook secret generated. Update it in the webhook's settings on GitHub: deliveries signed with the old one are refused from now on.",
		repoForm(p), nil
}

// setReveal hands a freshly generated webhook secret to the next load of
// the project's settings page in this session, sealed.
func (h *handler) setReveal(w http.ResponseWriter, r *http.Request, p store.Project, secret string) {
	sealed := h.reveal.Seal([]byte(p.ID + "|" + sessionFrom(r.Context()).SID + "|" + secret))
	http.SetCookie(w, &http.Cookie{Name: revealCookie, Value: b64.EncodeToString(sealed), Path: "/projects/" + p.Name + "/settings",
		MaxAge: 120, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// takeReveal returns (and forgets) the secret setReveal handed over for p,
// if any.
func (h *handler) takeReveal(w http.ResponseWriter, r *http.Request, p store.Project) string {
	c, err := r.Cookie(revealCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: revealCookie, Value: "", Path: "/projects/" + p.Name + "/settings", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	sealed, err := b64.DecodeString(c.Value)
	if err != nil {
		return ""
	}
	plain, err := h.reveal.Unseal(sealed)
	if err != nil {
		return ""
	}
	parts := strings.SplitN(string(plain), "|", 3)
	if len(parts) != 3 || parts[0] != p.ID || parts[1] != sessionFrom(r.Context()).SID {
		return ""
	}
	return parts[2]
}

// webhookDeployments are the project's recent deployments started by a
// GitHub push webhook, newest first: the deliveries that deployed. (The
// store records delivery ids only to refuse replays, so ignored and
// refused deliveries are not listed.)
func (h *handler) webhookDeployments(r *http.Request, p store.Project, n int) ([]deplView, error) {
	ds, err := h.store.ListDeployments(r.Context(), store.DeploymentFilter{ProjectID: p.ID, Limit: 200})
	if err != nil {
		return nil, fmt.Errorf("listing webhook deployments: %w", err)
	}
	currents := map[string]string{}
	var out []deplView
	for _, d := range ds {
		if d.Trigger == "webhook" && len(out) < n {
			out = append(out, h.deplView(r.Context(), d, currents))
		}
	}
	return out, nil
}

package web

import (
	"net/http"

	"github.com/slipwayhq/slipway/internal/store"
)

// setPreviews turns the project's pull-request previews on or off (the
// "previews" setting, from the Git & GitHub section of its settings).
func (h *handler) setPreviews(_ http.ResponseWriter, r *http.Request, p store.Project) (string, string, error) {
	s := p.Settings // the other settings are kept
	s.Previews = r.PostFormValue("previews") == "on"
	if err := h.proj.UpdateSettings(r.Context(), p, s); err != nil {
		return "", "", err
	}
	msg := "Pull-request previews are off: pull requests are ignored (existing previews go when their pull request closes)."
	if s.Previews {
		msg = "Pull-request previews are on: each pull request deploys into its own environment, pr-<number>."
	}
	return msg, backTo(r, "/projects/"+p.Name+"/settings") + "#previews", nil
}

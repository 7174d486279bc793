package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/slipwayhq/slipway/internal/drain"
	"github.com/slipwayhq/slipway/internal/notify"
	"github.com/slipwayhq/slipway/internal/store"
)

// Webhook is a project's outgoing webhook (notifications). Its URL is
// shown as a hint (scheme, host, last characters): the URL and the secret
// are sealed and never shown again.
type Webhook struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Format    string    `json:"format"`
	Events    []string  `json:"events"`
	CreatedAt time.Time `json:"createdAt"`
	// Secret signs the deliveries; only the answer to the creation
	// carries it.
	Secret string `json:"secret,omitempty"`
}

// CreateWebhookRequest is the body of POST …/notifications.
type CreateWebhookRequest struct {
	URL string `json:"url"`
	// Secret, if empty, is generated (and returned once).
	Secret string `json:"secret,omitempty"`
	// Format is "json" (default) or "slack".
	Format string `json:"format,omitempty"`
	// Events, if empty, are deployment.succeeded, deployment.failed,
	// app.crashed and app.unhealthy.
	Events []string `json:"events,omitempty"`
}

// WebhookDelivery is one entry of a webhook's delivery log.
type WebhookDelivery struct {
	ID       string `json:"id"`
	Webhook  string `json:"webhook"`
	Event    string `json:"event"`
	State    string `json:"state"` // pending, delivered, failed
	Attempts int    `json:"attempts"`
	// NextAttemptAt is when a pending delivery is tried again.
	NextAttemptAt *time.Time `json:"nextAttemptAt,omitempty"`
	// LastStatus is the HTTP status of the last answer (0: none came).
	LastStatus int       `json:"lastStatus"`
	LastError  string    `json:"lastError,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// LogDrain is a project's log drain and how it does since the server
// started. Its URL is shown as a hint.
type LogDrain struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Kind      string    `json:"kind"` // syslog or http
	TLS       bool      `json:"tls"`
	CreatedAt time.Time `json:"createdAt"`
	// Sent lines, Dropped ones (they found the buffer full), and those
	// Buffered now.
	Sent        int64      `json:"sent"`
	Dropped     int64      `json:"dropped"`
	Buffered    int        `json:"buffered"`
	Connected   bool       `json:"connected"`
	LastError   string     `json:"lastError,omitempty"`
	LastErrorAt *time.Time `json:"lastErrorAt,omitempty"`
}

// CreateLogDrainRequest is the body of POST …/drains.
type CreateLogDrainRequest struct {
	// URL is syslog://HOST:PORT (TCP), syslog+tls://HOST:PORT, or an
	// http(s) URL that takes POSTed JSON batches.
	URL string `json:"url"`
	// CA, if set, is the PEM of the certificate authorities a TLS
	// endpoint must chain to, instead of the system's.
	CA string `json:"ca,omitempty"`
}

// WebhookJSON is the API's view of a webhook.
func WebhookJSON(h notify.Hook) Webhook {
	return Webhook{ID: h.ID, URL: h.URL, Format: h.Format, Events: h.Events, CreatedAt: h.CreatedAt}
}

// DeliveryJSON is the API's view of a delivery.
func DeliveryJSON(d store.Delivery) WebhookDelivery {
	out := WebhookDelivery{ID: d.ID, Webhook: d.HookID, Event: d.Event, State: d.State, Attempts: d.Attempts,
		LastStatus: d.LastStatus, LastError: d.LastError, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	if d.State == store.DeliveryPending {
		t := d.NextAttemptAt
		out.NextAttemptAt = &t
	}
	return out
}

// LogDrainJSON is the API's view of a drain.
func LogDrainJSON(d drain.Status) LogDrain {
	out := LogDrain{ID: d.ID, URL: d.URL, Kind: d.Kind, TLS: d.TLS, CreatedAt: d.CreatedAt, Sent: d.Sent,
		Dropped: d.Dropped, Buffered: d.Buffered, Connected: d.Connected, LastError: d.LastError}
	if !d.LastErrorAt.IsZero() {
		t := d.LastErrorAt
		out.LastErrorAt = &t
	}
	return out
}

var errNoNotify = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this server does not send notifications"}
var errNoDrains = &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this server has no log drains"}

// notifyProject returns the project the path names, once notifications
// are configured.
func (s *Server) notifyProject(r *http.Request) (store.Project, error) {
	if s.cfg.Notify == nil {
		return store.Project{}, errNoNotify
	}
	return s.store.GetProject(r.Context(), r.PathValue("project"))
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) error {
	p, err := s.notifyProject(r)
	if err != nil {
		return err
	}
	hs, err := s.cfg.Notify.List(r.Context(), p)
	if err != nil {
		return err
	}
	out := []Webhook{}
	for _, h := range hs {
		out = append(out, WebhookJSON(h))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) error {
	p, err := s.notifyProject(r)
	if err != nil {
		return err
	}
	var req CreateWebhookRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	h, secret, err := s.cfg.Notify.Add(r.Context(), p, notify.HookSpec{URL: req.URL, Secret: req.Secret, Format: req.Format, Events: req.Events})
	if err != nil {
		return err
	}
	out := WebhookJSON(h)
	out.Secret = secret
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) error {
	p, err := s.notifyProject(r)
	if err != nil {
		return err
	}
	if err := s.cfg.Notify.Remove(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// testWebhook sends a test delivery and answers with it after its first
// attempt (or after 15 seconds, still pending).
func (s *Server) testWebhook(w http.ResponseWriter, r *http.Request) error {
	p, err := s.notifyProject(r)
	if err != nil {
		return err
	}
	d, err := s.cfg.Notify.SendTest(r.Context(), p, r.PathValue("id"), 15*time.Second)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, DeliveryJSON(d))
	return nil
}

func (s *Server) listWebhookDeliveries(w http.ResponseWriter, r *http.Request) error {
	p, err := s.notifyProject(r)
	if err != nil {
		return err
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return errBadRequest("limit must be a number from 1 to 500")
		}
		limit = n
	}
	ds, err := s.cfg.Notify.Deliveries(r.Context(), p, r.PathValue("id"), limit)
	if err != nil {
		return err
	}
	out := []WebhookDelivery{}
	for _, d := range ds {
		out = append(out, DeliveryJSON(d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) drainProject(r *http.Request) (store.Project, error) {
	if s.cfg.Drains == nil {
		return store.Project{}, errNoDrains
	}
	return s.store.GetProject(r.Context(), r.PathValue("project"))
}

func (s *Server) listDrains(w http.ResponseWriter, r *http.Request) error {
	p, err := s.drainProject(r)
	if err != nil {
		return err
	}
	ds, err := s.cfg.Drains.List(r.Context(), p)
	if err != nil {
		return err
	}
	out := []LogDrain{}
	for _, d := range ds {
		out = append(out, LogDrainJSON(d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createDrain(w http.ResponseWriter, r *http.Request) error {
	p, err := s.drainProject(r)
	if err != nil {
		return err
	}
	var req CreateLogDrainRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	d, err := s.cfg.Drains.Add(r.Context(), p, drain.Spec{URL: req.URL, CA: req.CA})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, LogDrainJSON(d))
	return nil
}

func (s *Server) deleteDrain(w http.ResponseWriter, r *http.Request) error {
	p, err := s.drainProject(r)
	if err != nil {
		return err
	}
	if err := s.cfg.Drains.Remove(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Package notify sends a project's outgoing webhooks: a JSON payload (or a
// Slack-compatible message) signed with HMAC-SHA256, when a deployment
// succeeds or fails, when an app crashes or turns unhealthy and, if asked,
// when it is scaled to zero or woken.
//
// Every delivery is stored, pending, before it is sent (in the same
// goroutine that observes the event, right after the lifecycle has
// persisted it), and a worker sends the pending ones, retrying transient
// failures (no answer, 5xx, 408, 429) with exponential backoff up to
// Config.MaxAttempts; other answers end it at once. A server that stops or
// crashes with deliveries pending sends them when it starts again:
// deliveries are at least once, and carry an id (DeliveryHeader) for
// receivers to drop repeats. The store keeps each webhook's recent
// deliveries as its delivery log.
//
// The webhook's URL (a Slack URL is itself a credential) and secret are
// sealed at rest and never shown again; the URL is shown as a hint.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// Config wires a Service. Store and Secrets are required.
type Config struct {
	Store   *store.Store
	Secrets *secrets.Box
	// DeploymentURL returns the URL of a deployment (its preview URL) for
	// payloads. If nil, payloads carry none.
	DeploymentURL func(d store.Deployment) string
	// Client sends deliveries. If nil, one with Timeout that follows no
	// redirects.
	Client *http.Client
	// Timeout bounds one attempt. If zero, 10 seconds.
	Timeout time.Duration
	// MaxAttempts is how many times a delivery is tried before it is
	// failed. If zero, 8.
	MaxAttempts int
	// FirstRetry is the wait before the second attempt; each later wait
	// doubles, up to MaxRetry. If zero, 10 seconds and 1 hour (8 attempts
	// then span about 21 minutes).
	FirstRetry, MaxRetry time.Duration
	// Concurrency is how many deliveries are sent at once. If zero, 4.
	Concurrency int
	// Keep is how many finished deliveries each webhook keeps in its log.
	// If zero, 100.
	Keep int
	// Log receives errors. If nil, slog.Default().
	Log *slog.Logger
}

// Service manages webhooks and sends their deliveries. Its methods are
// safe for concurrent use.
type Service struct {
	cfg   Config
	store *store.Store
	box   *secrets.Box
	log   *slog.Logger

	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	inflight map[string]bool
	started  bool
}

// New validates cfg and returns a Service; Start starts sending.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Secrets == nil {
		return nil, errors.New("notify: Store and Secrets are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.FirstRetry <= 0 {
		cfg.FirstRetry = 10 * time.Second
	}
	if cfg.MaxRetry <= 0 {
		cfg.MaxRetry = time.Hour
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 100
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{cfg: cfg, store: cfg.Store, box: cfg.Secrets, log: cfg.Log, wake: make(chan struct{}, 1),
		ctx: ctx, cancel: cancel, inflight: map[string]bool{}}, nil
}

// Start starts sending deliveries, the pending ones left by a previous
// run first.
func (s *Service) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.started = true
	s.wg.Add(1)
	go s.run()
}

// Close stops sending: attempts in flight are abandoned, and their
// deliveries stay pending for the next start.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// Hook is a webhook as it is shown: its URL only as a hint.
type Hook struct {
	ID        string
	URL       string // a hint: scheme, host and the last characters
	Format    string
	Events    []string
	CreatedAt time.Time
}

// HookSpec is a webhook to create.
type HookSpec struct {
	URL string
	// Secret signs deliveries. If empty, a random one is made (and
	// returned once by Add).
	Secret string
	// Format is FormatJSON (if empty) or FormatSlack.
	Format string
	// Events are those sent. If empty, DefaultEvents.
	Events []string
}

// Validate checks spec and fills in its defaults.
func (spec *HookSpec) Validate() error {
	spec.URL = strings.TrimSpace(spec.URL)
	if err := validURL(spec.URL); err != nil {
		return err
	}
	switch spec.Format {
	case "":
		spec.Format = FormatJSON
	case FormatJSON, FormatSlack:
	default:
		return fmt.Errorf("unknown format %q (json or slack): %w", spec.Format, project.ErrInvalid)
	}
	if len(spec.Events) == 0 {
		spec.Events = slices.Clone(DefaultEvents)
	}
	var events []string
	for _, e := range spec.Events {
		e = strings.TrimSpace(e)
		if !slices.Contains(Events, e) {
			return fmt.Errorf("unknown event %q (one of %s): %w", e, strings.Join(Events, ", "), project.ErrInvalid)
		}
		if !slices.Contains(events, e) {
			events = append(events, e)
		}
	}
	spec.Events = events
	if len(spec.Secret) > 256 {
		return fmt.Errorf("the secret is over 256 characters: %w", project.ErrInvalid)
	}
	return nil
}

func validURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(raw) > 2048 {
		return fmt.Errorf("the webhook URL must be an http or https URL: %w", project.ErrInvalid)
	}
	return nil
}

func hookView(h store.Hook) Hook {
	return Hook{ID: h.ID, URL: h.URLHint, Format: h.Format, Events: h.Events, CreatedAt: h.CreatedAt}
}

// Add creates a webhook of p and returns it with its secret (the one
// given, or the one made), which is never shown again.
func (s *Service) Add(ctx context.Context, p store.Project, spec HookSpec) (Hook, string, error) {
	if err := spec.Validate(); err != nil {
		return Hook{}, "", err
	}
	if spec.Secret == "" {
		b := make([]byte, 24)
		rand.Read(b)
		spec.Secret = hex.EncodeToString(b)
	}
	h, err := s.store.CreateHook(ctx, store.Hook{ProjectID: p.ID, URL: s.box.Seal([]byte(spec.URL)), URLHint: secrets.Hint(spec.URL),
		Secret: s.box.Seal([]byte(spec.Secret)), Format: spec.Format, Events: spec.Events})
	if err != nil {
		return Hook{}, "", err
	}
	return hookView(h), spec.Secret, nil
}

// List returns p's webhooks.
func (s *Service) List(ctx context.Context, p store.Project) ([]Hook, error) {
	hs, err := s.store.ListHooks(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	out := []Hook{}
	for _, h := range hs {
		out = append(out, hookView(h))
	}
	return out, nil
}

// Remove deletes p's webhook id with its delivery log; pending deliveries
// are dropped.
func (s *Service) Remove(ctx context.Context, p store.Project, id string) error {
	return s.store.DeleteHook(ctx, p.ID, id)
}

// Deliveries returns the newest deliveries of p's webhook id (of all its
// webhooks if id is empty), newest first.
func (s *Service) Deliveries(ctx context.Context, p store.Project, id string, limit int) ([]store.Delivery, error) {
	if id != "" {
		if err := s.owns(ctx, p, id); err != nil {
			return nil, err
		}
	}
	return s.store.ListDeliveries(ctx, p.ID, id, limit)
}

func (s *Service) owns(ctx context.Context, p store.Project, id string) error {
	h, err := s.store.GetHook(ctx, id)
	if err != nil {
		return err
	}
	if h.ProjectID != p.ID {
		return fmt.Errorf("webhook %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// SendTest queues a Test delivery to p's webhook id and waits up to wait
// for its first attempt. It returns the delivery as it is then (still
// pending if the attempt took longer, or failed and awaits a retry).
func (s *Service) SendTest(ctx context.Context, p store.Project, id string, wait time.Duration) (store.Delivery, error) {
	h, err := s.store.GetHook(ctx, id)
	if err != nil {
		return store.Delivery{}, err
	}
	if h.ProjectID != p.ID {
		return store.Delivery{}, fmt.Errorf("webhook %q: %w", id, store.ErrNotFound)
	}
	pl := Payload{Event: Test, Time: time.Now().UTC(), Project: p.Name,
		Message: fmt.Sprintf("%s: a test notification from Slipway", p.Name)}
	ds, err := s.enqueue(ctx, []store.Hook{h}, pl)
	if err != nil {
		return store.Delivery{}, err
	}
	d := ds[0]
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		got, err := s.store.GetDelivery(ctx, d.ID)
		if err != nil {
			return d, err
		}
		d = got
		if d.Attempts > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return d, nil
		case <-time.After(50 * time.Millisecond):
		}
	}
	return d, nil
}

// enqueue stores a pending delivery of p to each of hooks (with its own
// id) and wakes the sender.
func (s *Service) enqueue(ctx context.Context, hooks []store.Hook, p Payload) ([]store.Delivery, error) {
	var ds []store.Delivery
	for _, h := range hooks {
		p.ID = store.NewID()
		b, err := body(h.Format, p)
		if err != nil {
			return nil, err
		}
		ds = append(ds, store.Delivery{ID: p.ID, HookID: h.ID, Event: p.Event, Body: b})
	}
	if err := s.store.EnqueueDeliveries(ctx, ds, s.cfg.Keep); err != nil {
		return nil, err
	}
	s.poke()
	return ds, nil
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

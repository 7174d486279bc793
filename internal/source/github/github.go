// Package github receives GitHub push and pull_request webhooks, fetches
// the pushed commit, and reports back through GitHub's REST API (Client:
// commit statuses, pull-request comments).
//
// A Handler answers POST /hooks/github/<project> (the server mounts it with
// the pattern "POST /hooks/github/{project}"). For each delivery, in order:
//
//  1. the project is looked up (unknown → 404);
//  2. the body (at most 25 MiB, as GitHub sends) is verified against the
//     X-Hub-Signature-256 header: HMAC-SHA256 of the raw body with the
//     project's secret, compared in constant time (wrong, missing, or no
//     secret configured → 401, nothing queued);
//  3. X-GitHub-Event "ping" → 200 "pong"; "pull_request" → handled as
//     below by Config.PullRequest when it is set (actions opened,
//     synchronize, reopened and closed; others → 200 "ignored"); events
//     other than "push" → 200 "ignored";
//  4. the push payload is parsed (application/json or the form encoding
//     GitHub also offers); pushes to refs that are not branches (tags) and
//     branch deletions → 200 "ignored"; a repository other than the one
//     linked to the project → 422;
//  5. the delivery is deduplicated on what the signature covers: the
//     project, repository, ref and the ref's old and new commits (a
//     redelivery → 200 "duplicate", nothing queued twice). The
//     X-GitHub-Delivery id is not signed, so a captured delivery sent
//     again under new ids is still the same push;
//  6. Config.Enqueue is called → 202 "queued".
//
// Every answer is a small JSON object, {"status": …, "message": …}, which
// GitHub shows in the delivery's log. The handler does no git work: Enqueue
// only records the event, and a worker later calls Fetch to check the
// commit out and create the deployment, so deliveries are answered in
// milliseconds (GitHub gives up after 10 s).
package github

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"

	"github.com/slipwayhq/slipway/internal/source"
)

// ErrIgnored, wrapped in an error returned by Enqueue, answers the delivery
// 200 "ignored" with the error's message, e.g.
//
//	fmt.Errorf("branch %q is not mapped to an environment: %w", b, github.ErrIgnored)
var ErrIgnored = errors.New("ignored")

// Link is how a project is connected to a GitHub repository.
type Link struct {
	// Secret is the webhook secret configured on GitHub. If empty, every
	// delivery for the project is refused (401).
	Secret []byte
	// Repository is the linked repository, as "owner/name" or any of its
	// URLs (https://github.com/owner/name[.git], git@github.com:owner/name.git).
	// If empty, any repository whose deliveries carry a valid signature is
	// accepted.
	Repository string
}

// PushEvent is a verified push to a branch.
type PushEvent struct {
	// Push is the ref update and its head commit. Project is empty from
	// ParsePush; Created, Deleted and Forced are the payload's flags; Message
	// and Author are empty when the payload has no head commit.
	source.Push
	// DeliveryID is the X-GitHub-Delivery header (empty from ParsePush).
	DeliveryID string
	// Repository is the repository's "owner/name"; CloneURL its HTTPS clone
	// URL as GitHub reports it.
	Repository string
	CloneURL   string
	// DefaultBranch is the repository's default branch as the payload
	// reports it ("" when it does not).
	DefaultBranch string
}

// Config configures a Handler. Lookup and Enqueue are required.
type Config struct {
	// Lookup returns the project's link to GitHub. ok false answers 404.
	Lookup func(ctx context.Context, project string) (link Link, ok bool, err error)
	// Enqueue records a push to deploy. It must not fetch or build: the
	// delivery waits for it. Wrap ErrIgnored to decline the event (e.g. a
	// branch mapped to no environment); any other error answers 500.
	Enqueue func(ctx context.Context, ev PushEvent) error
	// PullRequest, if set, handles pull_request events (deduplicated as
	// pushes are, on PullRequestKey); like Enqueue, it must only record
	// what to do, and wraps ErrIgnored to decline. If nil, they are
	// ignored.
	PullRequest func(ctx context.Context, ev PullRequestEvent) error
	// Seen records a delivery's key (DeliveryKey) and reports whether it
	// was recorded before, atomically (e.g. an INSERT that may conflict).
	// If nil, the last 10,000 keys are remembered in memory, so a
	// redelivery after a restart of the server is not recognised.
	Seen func(ctx context.Context, key string) (bool, error)
	// Forget removes a delivery key recorded by Seen, called when Enqueue
	// fails so that GitHub's redelivery is not taken for a duplicate. If
	// nil (and Seen is set), nothing is called.
	Forget func(ctx context.Context, key string) error
	// MaxBodyBytes bounds a delivery's body. If zero, 25 MiB: GitHub caps
	// payloads at 25 MB.
	MaxBodyBytes int64
	// Log receives operational messages. If nil, slog.Default().
	Log *slog.Logger
}

// Handler verifies GitHub webhook deliveries and queues push events.
type Handler struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Lookup == nil || cfg.Enqueue == nil {
		return nil, errors.New("github: Lookup and Enqueue are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 25 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Seen == nil {
		m := newMemorySeen(10_000)
		cfg.Seen, cfg.Forget = m.seen, m.forget
	}
	return &Handler{cfg: cfg, log: cfg.Log}, nil
}

var projectName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// answer is the JSON body of every response.
type answer struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

func reply(w http.ResponseWriter, code int, status, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(answer{Status: status, Message: fmt.Sprintf(format, args...)})
}

// ServeHTTP handles one delivery; see the package documentation.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		reply(w, http.StatusMethodNotAllowed, "error", "webhooks are delivered with POST")
		return
	}
	project := r.PathValue("project")
	if project == "" {
		project = path.Base(r.URL.Path)
	}
	if !projectName.MatchString(project) {
		reply(w, http.StatusNotFound, "error", "project %q not found", project)
		return
	}
	ctx := r.Context()
	link, ok, err := h.cfg.Lookup(ctx, project)
	if err != nil {
		h.log.Error("github: looking up project", "project", project, "err", err)
		reply(w, http.StatusInternalServerError, "error", "internal error")
		return
	}
	if !ok {
		reply(w, http.StatusNotFound, "error", "project %q not found", project)
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			reply(w, http.StatusRequestEntityTooLarge, "error", "payload larger than %d bytes", mbe.Limit)
			return
		}
		reply(w, http.StatusBadRequest, "error", "reading payload: %v", err)
		return
	}
	if len(link.Secret) == 0 {
		reply(w, http.StatusUnauthorized, "error", "no webhook secret is configured for project %q", project)
		return
	}
	if !ValidSignature(link.Secret, body, r.Header.Get("X-Hub-Signature-256")) {
		reply(w, http.StatusUnauthorized, "error", "X-Hub-Signature-256 is missing or does not match the project's webhook secret")
		return
	}

	event := r.Header.Get("X-GitHub-Event")
	switch event {
	case "ping":
		reply(w, http.StatusOK, "pong", "slipway project %q is ready for push events", project)
		return
	case "push":
	case "pull_request":
		if h.cfg.PullRequest != nil {
			h.pullRequest(w, r, project, link, body)
			return
		}
		reply(w, http.StatusOK, "ignored", "event %q is not handled, only push", event)
		return
	case "":
		reply(w, http.StatusBadRequest, "error", "missing X-GitHub-Event header")
		return
	default:
		reply(w, http.StatusOK, "ignored", "event %q is not handled, only push and pull_request", event)
		return
	}

	payload, err := formPayload(r.Header.Get("Content-Type"), body)
	if err != nil {
		reply(w, http.StatusBadRequest, "error", "%v", err)
		return
	}
	ev, err := ParsePush(payload)
	if err != nil {
		reply(w, http.StatusBadRequest, "error", "%v", err)
		return
	}
	ev.Project = project
	ev.DeliveryID = r.Header.Get("X-GitHub-Delivery")
	if link.Repository != "" && !SameRepository(link.Repository, ev.Repository) {
		reply(w, http.StatusUnprocessableEntity, "error",
			"delivery is for repository %s, but project %q is linked to %s", ev.Repository, project, link.Repository)
		return
	}
	if ev.Branch == "" {
		reply(w, http.StatusOK, "ignored", "%s is not a branch", ev.Ref)
		return
	}
	if ev.Deleted {
		reply(w, http.StatusOK, "ignored", "branch %q was deleted", ev.Branch)
		return
	}
	if ev.DeliveryID == "" {
		reply(w, http.StatusBadRequest, "error", "missing X-GitHub-Delivery header")
		return
	}

	dup := fmt.Sprintf("this push (%s of %s at %s) was received before", ev.Branch, ev.Repository, source.ShortSHA(ev.NewSHA))
	if !h.handleOnce(ctx, w, DeliveryKey(ev), ev.DeliveryID, project, dup, "queueing push", "the push was not queued",
		func() error { return h.cfg.Enqueue(ctx, ev) }) {
		return
	}
	reply(w, http.StatusAccepted, "queued", "deploying %s of %s at %s", ev.Branch, ev.Repository, source.ShortSHA(ev.NewSHA))
}

// handleOnce hands a delivery to handle unless its key was seen before
// (then it answers duplicate with dup). When handle fails, the key is
// forgotten so that GitHub's redelivery is handled, and the answer is a
// 500 saying failed; an ErrIgnored answers 200 ignored. It reports
// whether handle succeeded, with nothing answered yet.
func (h *Handler) handleOnce(ctx context.Context, w http.ResponseWriter, key, delivery, project, dup, doing, failed string, handle func() error) bool {
	seen, err := h.cfg.Seen(ctx, key)
	if err != nil {
		h.log.Error("github: recording delivery", "delivery", delivery, "err", err)
		reply(w, http.StatusInternalServerError, "error", "internal error")
		return false
	}
	if seen {
		reply(w, http.StatusOK, "duplicate", "%s", dup)
		return false
	}
	if err := handle(); err != nil {
		if errors.Is(err, ErrIgnored) {
			reply(w, http.StatusOK, "ignored", "%v", err)
			return false
		}
		h.log.Error("github: "+doing, "project", project, "delivery", delivery, "err", err)
		if h.cfg.Forget != nil {
			if ferr := h.cfg.Forget(context.WithoutCancel(ctx), key); ferr != nil {
				h.log.Error("github: forgetting delivery", "delivery", delivery, "err", ferr)
			}
		}
		reply(w, http.StatusInternalServerError, "error", "internal error: %s", failed)
		return false
	}
	return true
}

// pullRequest handles a verified pull_request delivery: parsed, checked
// against the linked repository, deduplicated, then handed to
// Config.PullRequest.
func (h *Handler) pullRequest(w http.ResponseWriter, r *http.Request, project string, link Link, body []byte) {
	ctx := r.Context()
	payload, err := formPayload(r.Header.Get("Content-Type"), body)
	if err != nil {
		reply(w, http.StatusBadRequest, "error", "%v", err)
		return
	}
	ev, err := ParsePullRequest(payload)
	if err != nil {
		reply(w, http.StatusBadRequest, "error", "%v", err)
		return
	}
	ev.Project = project
	ev.DeliveryID = r.Header.Get("X-GitHub-Delivery")
	if link.Repository != "" && !SameRepository(link.Repository, ev.Repository) {
		reply(w, http.StatusUnprocessableEntity, "error",
			"delivery is for repository %s, but project %q is linked to %s", ev.Repository, project, link.Repository)
		return
	}
	switch ev.Action {
	case "opened", "synchronize", "reopened", "closed":
	default:
		reply(w, http.StatusOK, "ignored", "pull request action %q is not handled", ev.Action)
		return
	}
	if ev.DeliveryID == "" {
		reply(w, http.StatusBadRequest, "error", "missing X-GitHub-Delivery header")
		return
	}
	dup := fmt.Sprintf("this event (%s of pull request #%d at %s) was received before", ev.Action, ev.Number, source.ShortSHA(ev.HeadSHA))
	if !h.handleOnce(ctx, w, PullRequestKey(ev), ev.DeliveryID, project, dup, "handling pull request", "the pull request event was not handled",
		func() error { return h.cfg.PullRequest(ctx, ev) }) {
		return
	}
	if ev.Action == "closed" {
		reply(w, http.StatusAccepted, "queued", "removing the preview of pull request #%d", ev.Number)
		return
	}
	reply(w, http.StatusAccepted, "queued", "deploying pull request #%d at %s", ev.Number, source.ShortSHA(ev.HeadSHA))
}

// DeliveryKey identifies a push by what its signature covers, for
// deduplication: the project, the repository, the ref and its old and new
// commits. GitHub's redelivery of a push has the same key; so has a
// captured delivery sent again with another X-GitHub-Delivery id, which
// the signature does not cover.
func DeliveryKey(ev PushEvent) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{ev.Project, strings.ToLower(ev.Repository), ev.Ref, ev.OldSHA, ev.NewSHA}, "\x00")))
	return "push:" + hex.EncodeToString(sum[:16])
}

// ValidSignature reports whether header (the X-Hub-Signature-256 value,
// "sha256=<hex>") is the HMAC-SHA256 of body keyed with secret. The
// comparison takes constant time.
func ValidSignature(secret, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	sig, err := hex.DecodeString(hexSig)
	if err != nil || len(sig) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(sig, mac.Sum(nil))
}

// Sign returns the X-Hub-Signature-256 value GitHub sends for body.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// formPayload returns the JSON payload of a delivery: the body itself, or
// its "payload" field when the webhook is configured to send forms.
func formPayload(contentType string, body []byte) ([]byte, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/json", "":
		return body, nil
	case "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("parsing form payload: %w", err)
		}
		if !v.Has("payload") {
			return nil, errors.New("form payload has no payload field")
		}
		return []byte(v.Get("payload")), nil
	}
	return nil, fmt.Errorf("unsupported content type %q", contentType)
}

// SameRepository reports whether a and b name the same repository: each may
// be "owner/name" or a URL of it (https, ssh, git; with or without ".git").
// The comparison ignores case, as GitHub does.
func SameRepository(a, b string) bool {
	na, nb := repoPath(a), repoPath(b)
	return na != "" && strings.EqualFold(na, nb)
}

// repoPath reduces a repository reference to "owner/name".
func repoPath(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
		if j := strings.IndexByte(s, '/'); j >= 0 {
			s = s[j+1:] // drop the host
		} else {
			return ""
		}
	} else if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[i+1:] // git@github.com:owner/name
	}
	s = strings.TrimSuffix(strings.Trim(s, "/"), ".git")
	if parts := strings.Split(s, "/"); len(parts) > 2 {
		s = strings.Join(parts[len(parts)-2:], "/") // github.com/owner/name
	}
	return s
}

// memorySeen remembers the last max delivery ids.
type memorySeen struct {
	mu    sync.Mutex
	max   int
	ids   map[string]bool
	order []string
}

func newMemorySeen(max int) *memorySeen {
	return &memorySeen{max: max, ids: map[string]bool{}}
}

func (m *memorySeen) seen(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ids[id] {
		return true, nil
	}
	m.ids[id] = true
	m.order = append(m.order, id)
	for len(m.order) > m.max {
		delete(m.ids, m.order[0])
		m.order = m.order[1:]
	}
	return false, nil
}

func (m *memorySeen) forget(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.ids, id) // its place in order is dropped when it comes up
	return nil
}

var _ http.Handler = (*Handler)(nil)

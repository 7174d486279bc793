// Package drain forwards a project's runtime logs to log drains: a syslog
// endpoint (RFC 5424 messages over TCP, or over TLS, framed by octet
// counting as RFC 6587 and RFC 5425 have it) or an HTTP endpoint (batches
// of lines as JSON).
//
// A drain is fed after the lines are stored (Service is a deploy.LogTap),
// and never holds up the app or the store: each drain has a bounded
// buffer, and lines that find it full are dropped and counted. A drain
// reports what it dropped in its status (the API) and as a line, sent
// down the drain when it catches up and written to the deployment's
// runtime log. A drain whose endpoint fails reconnects with backoff; the
// batch in hand is sent again, so a line may arrive twice, never out of
// order.
//
// A drain's URL may carry credentials (a token in its path or query, a
// user and password): it is sealed at rest and shown as a hint.
package drain

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// Kinds of drain, by URL scheme.
const (
	// KindSyslog: syslog://HOST:PORT (TCP) or syslog+tls://HOST:PORT.
	KindSyslog = "syslog"
	// KindHTTP: http:// or https:// URL that takes POSTed JSON batches.
	KindHTTP = "http"
)

// Config wires a Service. Store and Secrets are required.
type Config struct {
	Store   *store.Store
	Secrets *secrets.Box
	// BufferLines and BufferBytes bound what waits for each drain. If
	// zero, 10,000 lines and 4 MiB.
	BufferLines int
	BufferBytes int
	// Hostname is the HOSTNAME of syslog messages. If empty, this
	// machine's host name.
	Hostname string
	// Timeout bounds connecting, and each write or request. If zero, 10
	// seconds.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a failed drain
	// tries again (doubling). If zero, 1 and 30 seconds.
	MinBackoff, MaxBackoff time.Duration
	// Log receives errors. If nil, slog.Default().
	Log *slog.Logger
}

// Service runs the drains of every project. Its methods are safe for
// concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	drains map[string]*drain // by id
	closed bool
	// byProject is a snapshot of the running drains by project id, read
	// without a lock on the log path.
	byProject atomic.Pointer[map[string][]*drain]
}

// New validates cfg and returns a Service; Start starts the stored drains.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Secrets == nil {
		return nil, errors.New("drain: Store and Secrets are required")
	}
	if cfg.BufferLines <= 0 {
		cfg.BufferLines = 10_000
	}
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = 4 << 20
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
		if cfg.Hostname == "" {
			cfg.Hostname = "slipway"
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Service{cfg: cfg, log: cfg.Log, drains: map[string]*drain{}}
	s.byProject.Store(&map[string][]*drain{})
	return s, nil
}

// Start starts every stored drain.
func (s *Service) Start(ctx context.Context) error {
	ds, err := s.cfg.Store.ListDrains(ctx, "")
	if err != nil {
		return fmt.Errorf("listing log drains: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		s.startLocked(d)
	}
	s.publishLocked()
	return nil
}

// Close stops every drain; what is buffered is lost.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	ds := s.drains
	s.drains = map[string]*drain{}
	s.publishLocked()
	s.mu.Unlock()
	for _, d := range ds {
		d.close()
	}
}

// startLocked starts the drain stored as row (unless Close was called).
func (s *Service) startLocked(row store.Drain) {
	if s.closed {
		return
	}
	d := &drain{s: s, row: row, signal: make(chan struct{}, 1), done: make(chan struct{})}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	s.drains[row.ID] = d
	raw, err := s.cfg.Secrets.Unseal(row.URL)
	if err == nil {
		err = d.setTarget(string(raw), row.CA)
	}
	if err != nil {
		d.lastErr, d.lastErrAt = "cannot use the drain's URL: "+err.Error(), time.Now()
		close(d.done)
		return
	}
	go d.run()
}

// publishLocked publishes the running drains by project.
func (s *Service) publishLocked() {
	m := map[string][]*drain{}
	for _, d := range s.drains {
		if d.target != nil {
			m[d.row.ProjectID] = append(m[d.row.ProjectID], d)
		}
	}
	s.byProject.Store(&m)
}

// RuntimeLines offers lines of d's runtime log to its project's drains,
// without blocking: lines that find a drain's buffer full are dropped
// (and counted). It makes the Service a deploy.LogTap.
func (s *Service) RuntimeLines(d store.Deployment, lines []store.LogLine) {
	for _, dr := range (*s.byProject.Load())[d.ProjectID] {
		dr.offer(d, lines)
	}
}

// Spec is a drain to create.
type Spec struct {
	// URL is syslog://HOST:PORT, syslog+tls://HOST:PORT, or an http(s)
	// URL (credentials in it are kept sealed).
	URL string
	// CA, if set, is the PEM of the certificate authorities a TLS
	// endpoint's certificate must chain to, instead of the system's.
	CA string
}

// Validate checks spec.
func (spec *Spec) Validate() error {
	spec.URL = strings.TrimSpace(spec.URL)
	_, err := parseTarget(spec.URL)
	if err != nil {
		return err
	}
	if spec.CA != "" {
		if !x509.NewCertPool().AppendCertsFromPEM([]byte(spec.CA)) {
			return fmt.Errorf("the CA holds no PEM certificate: %w", project.ErrInvalid)
		}
		if len(spec.CA) > 64<<10 {
			return fmt.Errorf("the CA is over 64 KiB: %w", project.ErrInvalid)
		}
	}
	return nil
}

// parseTarget parses a drain URL and returns its kind.
func parseTarget(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || len(raw) > 2048 {
		return "", fmt.Errorf("invalid drain URL: %w", project.ErrInvalid)
	}
	switch u.Scheme {
	case "syslog", "syslog+tls":
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" || u.Hostname() == "" {
			return "", fmt.Errorf("a syslog drain is %s://HOST:PORT: %w", u.Scheme, project.ErrInvalid)
		}
		return KindSyslog, nil
	case "http", "https":
		if u.Host == "" {
			return "", fmt.Errorf("the drain URL has no host: %w", project.ErrInvalid)
		}
		return KindHTTP, nil
	}
	return "", fmt.Errorf("a drain URL is syslog://HOST:PORT, syslog+tls://HOST:PORT, or an http(s) URL: %w", project.ErrInvalid)
}

// Status is a drain as it is shown: its URL as a hint, and how it does
// since the server started.
type Status struct {
	ID        string
	URL       string
	Kind      string
	TLS       bool
	CreatedAt time.Time
	// Sent is how many lines were sent (written to the connection, or
	// accepted by the HTTP endpoint); Dropped how many found the buffer
	// full; Buffered how many wait.
	Sent, Dropped int64
	Buffered      int
	// Connected: the last attempt to send succeeded.
	Connected   bool
	LastError   string
	LastErrorAt time.Time
}

// Add creates a drain of p and starts it.
func (s *Service) Add(ctx context.Context, p store.Project, spec Spec) (Status, error) {
	if err := spec.Validate(); err != nil {
		return Status{}, err
	}
	row, err := s.cfg.Store.CreateDrain(ctx, store.Drain{ProjectID: p.ID, URL: s.cfg.Secrets.Seal([]byte(spec.URL)),
		URLHint: secrets.Hint(spec.URL), CA: spec.CA})
	if err != nil {
		return Status{}, err
	}
	s.mu.Lock()
	s.startLocked(row)
	s.publishLocked()
	d := s.drains[row.ID]
	s.mu.Unlock()
	if d == nil {
		return statusOf(row), nil
	}
	return d.status(), nil
}

// List returns p's drains.
func (s *Service) List(ctx context.Context, p store.Project) ([]Status, error) {
	rows, err := s.cfg.Store.ListDrains(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	out := []Status{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, row := range rows {
		if d := s.drains[row.ID]; d != nil {
			out = append(out, d.status())
		} else {
			out = append(out, statusOf(row))
		}
	}
	return out, nil
}

// Remove deletes p's drain id and stops it.
func (s *Service) Remove(ctx context.Context, p store.Project, id string) error {
	if err := s.cfg.Store.DeleteDrain(ctx, p.ID, id); err != nil {
		return err
	}
	s.mu.Lock()
	d := s.drains[id]
	delete(s.drains, id)
	s.publishLocked()
	s.mu.Unlock()
	if d != nil {
		d.close()
	}
	return nil
}

func statusOf(row store.Drain) Status {
	st := Status{ID: row.ID, URL: row.URLHint, CreatedAt: row.CreatedAt, Kind: KindHTTP}
	scheme, _, _ := strings.Cut(row.URLHint, "://")
	if strings.HasPrefix(scheme, "syslog") {
		st.Kind = KindSyslog
	}
	st.TLS = scheme == "https" || scheme == "syslog+tls"
	return st
}

// newHTTPClient is the client of an HTTP drain.
func newHTTPClient(timeout time.Duration, tc *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = 2
	return &http.Client{Timeout: timeout, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

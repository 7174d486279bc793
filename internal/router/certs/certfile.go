package certs

// Certificates for Slipway's own hostnames under the base domain: a
// certificate the operator obtained (typically *.<base> plus <base>, by a
// dns-01 challenge with their DNS provider), kept fresh from its files, and
// the host policy for ordering ACME certificates for project and
// environment hostnames one by one.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipwayhq/slipway/internal/router"
)

// DefaultCertCheckInterval is how often, at most, a CertFile looks at its
// files for a renewal.
const DefaultCertCheckInterval = 30 * time.Second

// CertFileConfig names an operator's certificate and key files.
type CertFileConfig struct {
	// CertFile is the PEM certificate chain, leaf first. Required.
	CertFile string
	// KeyFile is the PEM private key of the leaf. Required.
	KeyFile string
	// CheckInterval is how often, at most, the files' modification times
	// and sizes are compared with the loaded pair's, on TLS handshakes; a
	// change reloads the pair. If zero, DefaultCertCheckInterval.
	CheckInterval time.Duration
	// Log receives reload messages. If nil, slog.Default().
	Log *slog.Logger
}

// CertFile is a certificate and key loaded from files and reloaded when the
// files change, so a renewal needs no restart. A pair that fails to load on
// reload is logged and the previous one is kept. It is safe for concurrent
// use; create it with NewCertFile.
type CertFile struct {
	cfg       CertFileConfig
	cur       atomic.Pointer[tls.Certificate]
	nextCheck atomic.Int64 // UnixNano of the next look at the files
	mu        sync.Mutex   // serialises reloads; guards stamp
	stamp     [2]fileStamp // of CertFile and KeyFile when cur was read
}

// fileStamp is what tells a changed file: its modification time and size.
type fileStamp struct {
	mod  time.Time
	size int64
}

// NewCertFile loads the pair. Its errors name the file at fault.
func NewCertFile(cfg CertFileConfig) (*CertFile, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, fmt.Errorf("tls certificate: both a certificate file and a key file are needed")
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultCertCheckInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &CertFile{cfg: cfg}
	stamp, err := c.stat()
	if err != nil {
		return nil, err
	}
	cert, err := c.load()
	if err != nil {
		return nil, err
	}
	c.stamp = stamp
	c.cur.Store(cert)
	c.nextCheck.Store(time.Now().Add(cfg.CheckInterval).UnixNano())
	return c, nil
}

// stat stamps both files.
func (c *CertFile) stat() ([2]fileStamp, error) {
	var s [2]fileStamp
	for i, name := range []string{c.cfg.CertFile, c.cfg.KeyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return s, fmt.Errorf("tls certificate: %w", err)
		}
		s[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return s, nil
}

// load reads and checks the pair.
func (c *CertFile) load() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(c.cfg.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(c.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls certificate %s with key %s: %w", c.cfg.CertFile, c.cfg.KeyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls certificate %s: %w", c.cfg.CertFile, err)
		}
	}
	return &cert, nil
}

// Leaf returns the loaded leaf certificate.
func (c *CertFile) Leaf() *x509.Certificate { return c.cur.Load().Leaf }

// Certificate returns the pair if its leaf covers host (a name in any case,
// with or without port or trailing dot; wildcards match one label, as
// x509.Certificate.VerifyHostname says), else nil. When the check interval
// has passed it first looks at the files, reloading them if they changed;
// one caller does so while the others go on with the loaded pair.
func (c *CertFile) Certificate(host string) *tls.Certificate {
	if now := time.Now(); now.UnixNano() >= c.nextCheck.Load() && c.mu.TryLock() {
		c.nextCheck.Store(now.Add(c.cfg.CheckInterval).UnixNano())
		c.reload()
		c.mu.Unlock()
	}
	h, ok := router.CanonicalHost(host)
	if !ok || h[0] == '[' {
		return nil
	}
	cert := c.cur.Load()
	if cert.Leaf.VerifyHostname(h) != nil {
		return nil
	}
	return cert
}

// reload loads the pair again if either file changed. The caller holds mu.
func (c *CertFile) reload() {
	stamp, err := c.stat()
	if err != nil {
		c.cfg.Log.Error("checking the TLS certificate; keeping the loaded one", "err", err)
		return
	}
	if stamp == c.stamp {
		return
	}
	// The stamp is taken before reading: a write that lands during the
	// read changes it again and is read next time.
	c.stamp = stamp
	cert, err := c.load()
	if err != nil {
		c.cfg.Log.Error("reloading the TLS certificate; keeping the loaded one", "err", err)
		return
	}
	c.cur.Store(cert)
	c.cfg.Log.Info("reloaded the TLS certificate", "file", c.cfg.CertFile,
		"names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter)
}

// RoutedBaseHosts returns a policy for ACMEConfig.BaseHostPolicy: it allows
// a name that t routes right now, unless it is its deployment's preview
// hostname (<deployment>.<baseDomain>). In Slipway that leaves the project
// default hostnames and the environment hostnames, which follow an
// environment's current deployment.
func RoutedBaseHosts(t *router.Table, baseDomain string) func(ctx context.Context, host string) error {
	base, _ := router.CanonicalHost(baseDomain)
	return func(_ context.Context, host string) error {
		h, ok := router.CanonicalHost(host)
		if !ok {
			return fmt.Errorf("malformed name %q", host)
		}
		r, ok := t.Lookup(h)
		if !ok {
			return fmt.Errorf("%s is not routed", h)
		}
		if h == r.Deployment+"."+base {
			return fmt.Errorf("%s is a preview hostname", h)
		}
		return nil
	}
}

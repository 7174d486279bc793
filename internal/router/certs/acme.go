// Package certs gives the router's TLS listener its certificates: from an
// ACME CA (Let's Encrypt by default) for custom domains and, optionally, for
// Slipway's own hostnames under the base domain (ACME), and from files the
// operator keeps fresh, typically a wildcard for the base domain (CertFile).
//
// It is apart from package router so that what only needs routes (the
// control plane writes a router.Table) does not pull in an ACME client. It
// uses router.Table and router.CanonicalHost; router knows nothing of it.
//
// The ACME protocol is golang.org/x/crypto/acme/autocert's: it is maintained
// by the Go team beside crypto/tls, implements RFC 8555 with the tls-alpn-01
// and http-01 challenges, renews ahead of expiry, and keeps its state in a
// pluggable cache. This package only decides which names may have a
// certificate and wires autocert to the router's listeners.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/slipwayhq/slipway/internal/router"
)

// ErrHostNotAllowed is returned (wrapped) for a host that may not have a
// certificate: not a custom domain, a name under the base domain that
// BaseHostPolicy does not allow, an IP address or a malformed name. A TLS handshake for such a host fails.
var ErrHostNotAllowed = errors.New("host is not allowed a certificate")

// Defaults for ACMEConfig.
const (
	// DefaultACMEDirectory is Let's Encrypt's production directory.
	DefaultACMEDirectory = acme.LetsEncryptURL
	// acmeRequestTimeout bounds each HTTP request to the ACME server.
	acmeRequestTimeout = 30 * time.Second
	// hostPolicyTimeout bounds one call of ACMEConfig.HostPolicy.
	hostPolicyTimeout = 10 * time.Second
)

// ACMEConfig configures certificates for custom domains. The zero value is
// valid but allows no host: every TLS handshake fails until HostPolicy says
// yes to something.
type ACMEConfig struct {
	// DirectoryURL is the ACME server's directory URL. If empty,
	// DefaultACMEDirectory (Let's Encrypt production). Tests point it at
	// Pebble; operators may use Let's Encrypt's staging directory first.
	DirectoryURL string

	// Email is the contact address registered with the CA, which uses it
	// for expiry and policy notices. If empty, the account has no contact.
	Email string

	// CacheDir keeps the ACME account key and the certificates, so they
	// survive restarts. Each directory URL gets its own subdirectory, so
	// switching CAs (staging to production) never serves the other CA's
	// certificates. Created with mode 0700. If empty, everything is kept in
	// memory only and every restart orders new certificates, which CAs
	// rate-limit; a server sets <data>/acme.
	CacheDir string

	// HostPolicy reports whether host may have a certificate: nil means
	// yes. host is canonical (see router.CanonicalHost: lowercase, no port, no
	// trailing dot) and is never an IP address or a name under BaseDomain.
	// It is called on every full TLS handshake (not on resumed sessions) and
	// for every http-01 challenge request, with a context bounded to 10 s,
	// so it must be fast and safe for concurrent use; a removed domain stops
	// getting its cached certificate at once. If nil, no host is allowed.
	HostPolicy func(ctx context.Context, host string) error

	// BaseDomain is the base of Slipway's own hostnames (preview URLs,
	// project and environment hostnames). HostPolicy is never asked about
	// it or any name under it: the base domain itself and names more than
	// one label below it never get an ACME certificate, and names one label
	// below it get one only if BaseHostPolicy allows. If empty, no name is
	// excluded on that ground.
	BaseDomain string

	// BaseHostPolicy reports whether a name one label below BaseDomain
	// (myapp.<base>) may have an ACME certificate of its own, like
	// HostPolicy (same canonical host, same context bound, same every-
	// handshake calls). Meant for project and environment hostnames, which
	// are few and long-lived; not for preview hostnames: every deployment
	// has one, and ordering a certificate per deployment would soon hit the
	// CA's rate limits (Let's Encrypt: 50 certificates per registered
	// domain per week). RoutedBaseHosts is such a policy. If nil, no name
	// under BaseDomain gets an ACME certificate.
	BaseHostPolicy func(ctx context.Context, host string) error

	// Certificate is a certificate the operator obtained, typically for
	// *.<base> and <base> by a dns-01 challenge. It is served for every
	// server name its leaf covers, before and instead of ACME, whatever
	// the policies say; other names go to ACME. If nil, none.
	Certificate *CertFile

	// CACertFile is a PEM file with the root certificates trusted for the
	// ACME server's own HTTPS (a private CA, or Pebble in tests). If empty,
	// the system roots.
	CACertFile string
}

// ACME obtains, caches, renews and serves certificates for custom domains.
// Create it with NewACME; it is safe for concurrent use.
//
// Wiring: serve the Router over TLS with ServeTLS (or any TLS server using
// TLSConfig) and wrap the plain-HTTP listener's handler with HTTPHandler.
// A certificate is ordered on the first handshake for an allowed host that
// has none (the handshake waits for it, a few seconds) or ahead of time with
// Obtain. The CA validates the name with tls-alpn-01 on the TLS listener,
// falling back to http-01 on the plain-HTTP listener; public CAs connect to
// ports 443 and 80 respectively, so at least one of them must reach Slipway.
type ACME struct {
	mgr        *autocert.Manager
	base       string // canonical BaseDomain, or ""
	policy     func(ctx context.Context, host string) error
	basePolicy func(ctx context.Context, host string) error
	cert       *CertFile // or nil
}

// NewACME checks cfg and returns an ACME. It creates the cache directory but
// does not contact the CA: the account is registered on the first order.
func NewACME(cfg ACMEConfig) (*ACME, error) {
	dir := cfg.DirectoryURL
	if dir == "" {
		dir = DefaultACMEDirectory
	}
	u, err := url.Parse(dir)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("acme: invalid directory URL %q", dir)
	}
	a := &ACME{policy: cfg.HostPolicy, basePolicy: cfg.BaseHostPolicy, cert: cfg.Certificate}
	if cfg.BaseDomain != "" {
		b, ok := router.CanonicalHost(cfg.BaseDomain)
		if !ok {
			return nil, fmt.Errorf("acme: invalid base domain %q", cfg.BaseDomain)
		}
		a.base = b
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CACertFile != "" {
		pem, err := os.ReadFile(cfg.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("acme: reading CA certificates: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("acme: no PEM certificate in %s", cfg.CACertFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}

	var cache autocert.Cache
	if cfg.CacheDir != "" {
		d := filepath.Join(cfg.CacheDir, cacheSubdir(u))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("acme: creating cache directory: %w", err)
		}
		cache = autocert.DirCache(d)
	}

	a.mgr = &autocert.Manager{
		// Enabling ACME (a flag of the server) is the operator's agreement
		// to the CA's terms of service.
		Prompt:     autocert.AcceptTOS,
		Cache:      cache,
		HostPolicy: a.allow,
		Email:      cfg.Email,
		Client: &acme.Client{
			DirectoryURL: dir,
			UserAgent:    "slipway",
			HTTPClient:   &http.Client{Transport: transport, Timeout: acmeRequestTimeout},
		},
	}
	return a, nil
}

// cacheSubdir names the cache subdirectory of one ACME directory URL:
// its host, port and path with every other byte replaced by '_'.
func cacheSubdir(u *url.URL) string {
	s := strings.TrimSuffix(u.Host+u.Path, "/")
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// allow is the host policy: the autocert HostPolicy, and the check run on
// every handshake and challenge request. host may carry a port (a Host
// header does).
func (a *ACME) allow(ctx context.Context, host string) error {
	h, ok := router.CanonicalHost(host)
	if !ok {
		return fmt.Errorf("acme: %w: malformed name %q", ErrHostNotAllowed, host)
	}
	if h[0] == '[' || net.ParseIP(h) != nil {
		return fmt.Errorf("acme: %w: %s is an IP address", ErrHostNotAllowed, h)
	}
	policy := a.policy
	if a.base != "" && (h == a.base || strings.HasSuffix(h, "."+a.base)) {
		label := strings.TrimSuffix(h, "."+a.base)
		if a.basePolicy == nil || h == a.base || strings.Contains(label, ".") {
			return fmt.Errorf("acme: %w: %s is under the base domain %s", ErrHostNotAllowed, h, a.base)
		}
		policy = a.basePolicy
	}
	if policy == nil {
		return fmt.Errorf("acme: %w: %s (no host policy)", ErrHostNotAllowed, h)
	}
	if ctx == nil { // a ClientHelloInfo not from a handshake has none
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, hostPolicyTimeout)
	defer cancel()
	if err := policy(ctx, h); err != nil {
		return fmt.Errorf("acme: %w: %s: %w", ErrHostNotAllowed, h, err)
	}
	return nil
}

// getCertificate is the tls.Config hook. Challenge handshakes (tls-alpn-01)
// go straight to autocert, which answers them only for orders in flight;
// a name the operator's certificate covers gets it; every other handshake
// must pass the host policy first, so a domain that is no longer custom
// loses its cached certificate too.
func (a *ACME) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
		return a.mgr.GetCertificate(hello)
	}
	if a.cert != nil && hello.ServerName != "" {
		if c := a.cert.Certificate(hello.ServerName); c != nil {
			return c, nil
		}
	}
	if err := a.allow(hello.Context(), hello.ServerName); err != nil {
		return nil, err
	}
	return a.mgr.GetCertificate(hello)
}

// TLSConfig returns a TLS configuration for the router's TLS listener: it
// serves the operator's certificate (ACMEConfig.Certificate) for the names
// it covers and ACME certificates for allowed hosts (ordering them when
// needed), answers tls-alpn-01 challenges, and offers HTTP/2 and HTTP/1.1.
// A handshake for any other name fails. Each call returns a new value the
// caller may change.
func (a *ACME) TLSConfig() *tls.Config {
	cfg := a.mgr.TLSConfig()
	cfg.GetCertificate = a.getCertificate
	cfg.MinVersion = tls.VersionTLS12
	return cfg
}

// HTTPHandler returns the handler for the plain-HTTP listener: it answers
// http-01 challenges (requests under /.well-known/acme-challenge/ for an
// allowed host) and passes every other request to fallback, typically the
// Router, so apps stay reachable over plain HTTP. If fallback is nil, other
// GET and HEAD requests are redirected to https on port 443 and the rest
// get 400. Calling HTTPHandler enables the http-01 challenge; without it
// only tls-alpn-01 is used.
func (a *ACME) HTTPHandler(fallback http.Handler) http.Handler {
	challenge := a.mgr.HTTPHandler(fallback)
	if fallback == nil {
		return challenge
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") && a.allow(r.Context(), r.Host) == nil {
			challenge.ServeHTTP(w, r)
			return
		}
		// Not a challenge for a custom domain: an app's own path (say, on a
		// preview URL) or an ordinary request.
		fallback.ServeHTTP(w, r)
	})
}

// Obtain makes sure host has a valid certificate: from the cache if there
// is one, else by ordering one now, so that the first visitor need not wait.
// It returns ErrHostNotAllowed (wrapped) for a host the policy refuses, and
// the CA's error when issuance fails. Issuance takes a few seconds and is
// bounded by autocert at 5 minutes; if ctx ends first, Obtain returns
// ctx.Err() and the order completes in the background.
func (a *ACME) Obtain(ctx context.Context, host string) error {
	if err := a.allow(ctx, host); err != nil {
		return err
	}
	h, _ := router.CanonicalHost(host)
	// A ClientHello of a modern client, so the ECDSA certificate (the one
	// browsers get) is the one obtained.
	hello := &tls.ClientHelloInfo{
		ServerName:        h,
		CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_AES_128_GCM_SHA256},
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:   []tls.CurveID{tls.CurveP256},
		SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
	}
	done := make(chan error, 1)
	go func() {
		_, err := a.mgr.GetCertificate(hello)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("acme: obtaining a certificate for %s: %w", h, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ServeTLS serves srv over TLS on ln with a's certificates until srv is
// shut down, and then returns nil. srv.Handler is typically the Router;
// srv.TLSConfig, if nil, is set to a.TLSConfig(). Failed handshakes (hosts
// that may not have a certificate, scanners) are logged to srv.ErrorLog.
func (a *ACME) ServeTLS(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig == nil {
		srv.TLSConfig = a.TLSConfig()
	}
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving TLS on %s: %w", ln.Addr(), err)
	}
	return nil
}

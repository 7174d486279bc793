// Package server assembles a running Slipway server from its parts — the
// store, the embedded registry, BuildKit, the runc driver, the router, the
// deployment controller and the API — and runs it until its context ends.
package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/build/buildkit"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/registry"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime/runc"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/source/github"
	"github.com/slipwayhq/slipway/internal/source/gitserver"
	"github.com/slipwayhq/slipway/internal/store"
	"github.com/slipwayhq/slipway/internal/web"
)

// Config configures a server. The zero value of each field has the
// documented default; DESIGN.md lists the flags and environment variables
// that set them.
type Config struct {
	// DataDir holds all state. If empty, /var/lib/slipway as root, else
	// ~/.local/share/slipway.
	DataDir string
	// Listen is the API, dashboard and registry address. If empty,
	// 127.0.0.1:7300.
	Listen string
	// RouterListen is where apps are served. If empty, ":80" as root, else
	// ":8080".
	RouterListen string
	// BaseDomain is the suffix of app hostnames. If empty,
	// "slipway.localhost".
	BaseDomain string
	// DeployWindow bounds how long a deployment may take to become healthy.
	// If zero, 5 minutes.
	DeployWindow time.Duration
	// IdleTimeout is how long an app may go without requests before it is
	// scaled to zero. If zero, 5 minutes; negative means never. A project
	// setting overrides it.
	IdleTimeout time.Duration
	// BuildkitHost is the address of an existing buildkitd. If empty, the
	// server starts and supervises its own.
	BuildkitHost string
	// TLSListen, if set, serves apps over HTTPS on this address with
	// certificates from an ACME CA for custom domains, and for names under
	// the base domain as TLSCert and TLSBaseHosts say (by default none).
	// If empty, TLS is off and the other TLS fields must be empty.
	TLSListen string
	// TLSCert and TLSKey are PEM files of a certificate the operator
	// obtained, typically for *.<BaseDomain> and BaseDomain. It is served
	// for every name it covers and re-read when the files change (checked
	// at most every 30 s). Both or neither; if empty, none.
	TLSCert, TLSKey string
	// TLSBaseHosts orders ACME certificates for project and environment
	// hostnames under BaseDomain that exist (are routed) and TLSCert does
	// not cover; never for preview hostnames. If false, none.
	TLSBaseHosts bool
	// ACMEDirectory is the ACME CA's directory URL. If empty, Let's
	// Encrypt's production directory.
	ACMEDirectory string
	// ACMEEmail is the contact of the ACME account. May be empty.
	ACMEEmail string
	// ACMECACert is a PEM file of roots to trust for the ACME server's own
	// HTTPS (a test CA such as Pebble). If empty, the system roots.
	ACMECACert string
	// AdminPassword, if set, signs the admin in to the dashboard (API
	// tokens always do).
	AdminPassword string
	// BootstrapToken is the admin token created on the first start. If
	// empty, one is generated.
	BootstrapToken string
	// BaseImagesDir holds base-image stand-ins (OCI layouts written by
	// scripts/base-images.sh) pushed into the registry at start. If empty,
	// <DataDir>/base-images.
	BaseImagesDir string
	// Started, if set, is called once the server serves, with the API and
	// router addresses.
	Started func(api, router net.Addr)
	// Out receives the one-time admin token banner. If nil, os.Stdout.
	Out io.Writer
	// Log receives operational messages. If nil, slog.Default().
	Log *slog.Logger
}

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7300"
	}
	if c.RouterListen == "" {
		c.RouterListen = ":8080"
		if os.Geteuid() == 0 {
			c.RouterListen = ":80"
		}
	}
	if c.BaseDomain == "" {
		c.BaseDomain = "slipway.localhost"
	}
	if c.BaseImagesDir == "" {
		c.BaseImagesDir = filepath.Join(c.DataDir, "base-images")
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// DefaultDataDir is /var/lib/slipway for root, else ~/.local/share/slipway.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/slipway"
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "slipway")
}

// Run starts the server and blocks until ctx ends, then shuts down. App
// instances keep running across a shutdown; the next start re-attaches.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	log := cfg.Log
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, "slipway.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := bootstrapToken(ctx, st, cfg); err != nil {
		return err
	}

	// Listen first: the registry's address is where builds push.
	apiLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening for the API on %s: %w", cfg.Listen, err)
	}
	defer apiLn.Close()
	routerLn, err := net.Listen("tcp", cfg.RouterListen)
	if err != nil {
		return fmt.Errorf("listening for apps on %s: %w", cfg.RouterListen, err)
	}
	defer routerLn.Close()
	registryHost := loopbackHost(apiLn.Addr().(*net.TCPAddr))

	// An internal token, never stored, lets BuildKit and the runtime talk
	// to the registry.
	internal := randomToken()
	var apiServer *api.Server
	authorize := func(r *http.Request) bool {
		if _, pw, ok := r.BasicAuth(); ok && subtle.ConstantTimeCompare([]byte(pw), []byte(internal)) == 1 {
			return true
		}
		return apiServer.Authorized(r)
	}
	reg, err := registry.New(registry.Config{Dir: filepath.Join(cfg.DataDir, "registry"), Authorize: authorize})
	if err != nil {
		return err
	}
	if err := seedBaseImages(ctx, reg, cfg.BaseImagesDir, log); err != nil {
		log.Warn("seeding base images", "err", err)
	}

	bkAddr := cfg.BuildkitHost
	if bkAddr == "" {
		if _, err := buildkit.LookPath(buildkit.DefaultBinary); err != nil {
			return err
		}
		d, err := buildkit.StartDaemon(ctx, buildkit.DaemonConfig{
			Root:                filepath.Join(cfg.DataDir, "buildkit"),
			PlainHTTPRegistries: []string{registryHost},
			DockerHubMirrors:    []string{registryHost},
			Logger:              log,
		})
		if err != nil {
			return fmt.Errorf("starting buildkitd: %w", err)
		}
		defer d.Close()
		bkAddr = d.Addr()
	}
	builder, err := buildkit.New(bkAddr, buildkit.Config{Credentials: map[string]buildkit.Credential{
		registryHost: {Username: "slipway", Secret: internal},
	}})
	if err != nil {
		return err
	}
	defer builder.Close()

	driver, err := runc.New(runc.Config{
		Root:          filepath.Join(cfg.DataDir, "runtime"),
		RemoteOptions: []remote.Option{remote.WithAuth(&authn.Basic{Username: "slipway", Password: internal})},
	})
	if err != nil {
		return err
	}

	box, err := secrets.Open(filepath.Join(cfg.DataDir, "secret.key"))
	if err != nil {
		return err
	}
	table := &router.Table{}
	routerPort := routerLn.Addr().(*net.TCPAddr).Port
	trig := &triggers{store: st, box: box, url: func(host string) string { return appURL(host, routerPort) }}
	ctl, err := deploy.New(deploy.Config{
		Store: st, Builder: builder, Driver: driver, Routes: table,
		Registry: registryHost, DataDir: cfg.DataDir, BaseDomain: cfg.BaseDomain,
		DeployWindow: cfg.DeployWindow, IdleTimeout: cfg.IdleTimeout, Secrets: box,
		Fetch: trig.fetch, Log: log,
	})
	if err != nil {
		return err
	}
	trig.ctl = ctl
	rt := &router.Router{Table: table, OnRequest: ctl.Touch, OnRequestDone: ctl.RequestDone}
	git, err := gitserver.New(gitserver.Config{
		Root: filepath.Join(cfg.DataDir, "git"), Authorize: authorize, Pusher: trig, Log: log,
		Exists: func(ctx context.Context, project string) (bool, error) {
			_, err := st.GetProject(ctx, project)
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			return err == nil, err
		},
	})
	if err != nil {
		return err
	}
	hook, err := github.New(github.Config{
		Lookup: trig.link, Enqueue: trig.enqueue, Log: log,
		Seen:   func(ctx context.Context, id string) (bool, error) { return st.RecordDelivery(ctx, id, "") },
		Forget: st.ForgetDelivery,
	})
	if err != nil {
		return err
	}
	dashboard := web.New(web.Config{Store: st, Deploy: ctl, RouterPort: routerPort, AdminPassword: cfg.AdminPassword,
		SessionKey: box.Derive("web-session"), Log: log})
	apiServer = api.New(api.Config{Store: st, Deploy: ctl, Registry: reg, Git: git, GitHubHook: hook, Web: dashboard,
		Secrets: box, RouterPort: routerPort, Log: log})

	// Streams (logs, live pages) end when the server shuts down.
	serveCtx, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	apiHTTP := &http.Server{Handler: apiServer.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return serveCtx }}
	// The router's listener is served by a router.Front: plain GETs and
	// HEADs by the front itself, every other connection by routerHTTP.
	routerHTTP := &http.Server{Handler: rt, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	routerFront := &router.Front{Router: rt, Fallback: routerHTTP}
	errc := make(chan error, 3)
	var routerTLS *http.Server
	serveTLS := func() {}
	if cfg.TLSListen == "" && (cfg.TLSCert != "" || cfg.TLSKey != "" || cfg.TLSBaseHosts) {
		return errors.New("a TLS certificate or --tls-base-hosts needs --tls-listen")
	}
	if cfg.TLSListen != "" {
		var cert *router.CertFile
		if cfg.TLSCert != "" || cfg.TLSKey != "" {
			if cert, err = router.NewCertFile(router.CertFileConfig{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, Log: log}); err != nil {
				return err
			}
		}
		var basePolicy func(context.Context, string) error
		if cfg.TLSBaseHosts {
			basePolicy = router.RoutedBaseHosts(table, cfg.BaseDomain)
		}
		acm, err := router.NewACME(router.ACMEConfig{
			Certificate: cert, BaseHostPolicy: basePolicy,
			DirectoryURL: cfg.ACMEDirectory, Email: cfg.ACMEEmail, CACertFile: cfg.ACMECACert,
			CacheDir: filepath.Join(cfg.DataDir, "acme"), BaseDomain: cfg.BaseDomain,
			HostPolicy: func(ctx context.Context, host string) error {
				ok, err := st.HasDomain(ctx, host)
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("%s is not a custom domain of any environment", host)
				}
				return nil
			},
		})
		if err != nil {
			return err
		}
		tlsLn, err := net.Listen("tcp", cfg.TLSListen)
		if err != nil {
			return fmt.Errorf("listening for HTTPS on %s: %w", cfg.TLSListen, err)
		}
		routerHTTP.Handler = acm.HTTPHandler(rt) // http-01 challenges
		routerTLS = &http.Server{Handler: rt, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		serveTLS = func() { go func() { errc <- acm.ServeTLS(routerTLS, tlsLn) }() }
		attrs := []any{"listen", tlsLn.Addr().String(), "acme", cfg.ACMEDirectory, "base_hosts_acme", cfg.TLSBaseHosts}
		if cert != nil {
			attrs = append(attrs, "cert", cfg.TLSCert, "cert_names", cert.Leaf().DNSNames, "cert_not_after", cert.Leaf().NotAfter)
		}
		log.Info("serving apps over HTTPS", attrs...)
	}
	go func() { errc <- serve(apiHTTP.Serve, apiLn) }()
	// Apps are served only once reconciliation has routed them: until then
	// the bound listener holds new connections instead of answering 404.
	if err := ctl.Start(ctx); err != nil {
		return err
	}
	go func() { errc <- serve(routerFront.Serve, routerLn) }()
	serveTLS()
	log.Info("slipway is up", "api", "http://"+apiLn.Addr().String(), "router", routerLn.Addr().String(),
		"base_domain", cfg.BaseDomain, "data", cfg.DataDir, "buildkit", bkAddr)
	if cfg.Started != nil {
		cfg.Started(apiLn.Addr(), routerLn.Addr())
	}

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	log.Info("shutting down; app instances keep running")
	began := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	endStreams()
	apiHTTP.Shutdown(sctx)
	routerFront.Shutdown(sctx)
	if routerTLS != nil {
		routerTLS.Shutdown(sctx)
	}
	ctl.Close()
	log.Info("stopped serving", "took", time.Since(began).Round(time.Millisecond))
	return err
}

// appURL renders an app hostname as a URL on the router's port.
func appURL(host string, port int) string {
	if port == 80 {
		return "http://" + host
	}
	return fmt.Sprintf("http://%s:%d", host, port)
}

// serve runs an http.Server's or a router.Front's Serve on ln; a shutdown
// is not an error.
func serve(fn func(net.Listener) error, ln net.Listener) error {
	if err := fn(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loopbackHost names the API listener as builds and runtimes on this host
// reach it: an unspecified address becomes 127.0.0.1.
func loopbackHost(a *net.TCPAddr) string {
	ip := a.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
}

func randomToken() string {
	var b [20]byte
	rand.Read(b[:])
	return "sw_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// bootstrapToken creates the admin token on the first start: from
// cfg.BootstrapToken or generated, printed once and written to
// <data>/admin-token (mode 0600). Later starts leave it alone.
func bootstrapToken(ctx context.Context, st *store.Store, cfg Config) error {
	n, err := st.CountTokens(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	token := cfg.BootstrapToken
	if token == "" {
		token = randomToken()
	}
	path := filepath.Join(cfg.DataDir, "admin-token")
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := st.CreateToken(ctx, "admin", token); err != nil {
		return fmt.Errorf("creating the admin token: %w", err)
	}
	fmt.Fprintf(cfg.Out, "\nSlipway admin token (shown once; also saved to %s):\n\n    %s\n\n", path, token)
	return nil
}

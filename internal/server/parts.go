package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/baseimage"
	"github.com/slipwayhq/slipway/internal/build"
	"github.com/slipwayhq/slipway/internal/build/buildkit"
	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/drain"
	"github.com/slipwayhq/slipway/internal/metrics"
	"github.com/slipwayhq/slipway/internal/netns"
	"github.com/slipwayhq/slipway/internal/notify"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/registry"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/router/certs"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/source/github"
	"github.com/slipwayhq/slipway/internal/source/gitserver"
	"github.com/slipwayhq/slipway/internal/store"
	"github.com/slipwayhq/slipway/internal/web"
)

// server is a running server's parts. Each start method sets up one part
// from the parts started before it and registers how to stop it; stop
// undoes them in reverse order. A field is set by the method named in its
// comment and only read after it.
type server struct {
	cfg   Config
	log   *slog.Logger
	errc  chan error // a listener's serve loop failed
	stops []func(context.Context)

	store *store.Store // openStore
	box   *secrets.Box // openStore
	// internal is a token, never stored, with which BuildKit and the
	// runtime reach the registry (openStore).
	internal string

	apiLn, routerLn net.Listener // listen
	registryHost    string       // listen: host:port builds push to and runtimes pull from
	routerPort      int          // listen

	registry     *registry.Registry            // startRegistry
	baseImages   *baseimage.Maker              // makeBaseImages; nil unless Config.BuildBaseImages
	buildNet     *buildkit.Network             // startBuildNetwork; nil: BuildKit's default
	builder      *buildkit.Builder             // startBuilder
	buildkitAddr string                        // startBuilder
	network      *netns.Network                // startNetwork; nil when instance networking is off
	privateLn    net.Listener                  // startNetwork: on the gateway, where private names are served
	drivers      map[string]runtime.Driver     // startRuntime: by sandbox kind
	kube         kubeClient                    // startRuntime, with --runtime kubernetes
	unavailable  map[string]error              // startRuntime: why a sandbox kind cannot run here
	metrics      *metrics.Metrics              // startMetrics
	metricsLn    net.Listener                  // startMetrics, with MetricsListen
	notify       *notify.Service               // startNotify
	drains       *drain.Service                // startNotify
	table        *router.Table                 // newController: written by ctl, read by app
	ctl          *deploy.Controller            // newController
	links        linkReader                    // newController
	gh           *feedback                     // newController: GitHub statuses and comments
	app          *router.Router                // serveApps
	router       atomic.Pointer[router.Router] // s.app, for the lifecycle's goroutines
}

// onStop registers fn to run at shutdown, before every part started
// earlier is stopped.
func (s *server) onStop(fn func(context.Context)) { s.stops = append(s.stops, fn) }

// stop stops the parts in reverse order, within 5 seconds for those that
// drain connections.
func (s *server) stop() {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i](ctx)
	}
	s.log.Info("stopped", "took", time.Since(began).Round(time.Millisecond))
}

// serveOn serves ln with fn (an http.Server's or a router.Front's Serve)
// until shutdown; a failure ends Run.
func (s *server) serveOn(fn func(net.Listener) error, ln net.Listener) {
	go func() { s.errc <- serve(fn, ln) }()
}

func (s *server) openStore(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	// Only the server reaches into its data: unpacked images (which may
	// hold setuid files), instances' layers, the key and the database.
	// Scripts or an older version may have created it 0755.
	if err := os.Chmod(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("restricting data directory: %w", err)
	}
	st, err := store.Open(filepath.Join(s.cfg.DataDir, "slipway.db"))
	if err != nil {
		return err
	}
	s.store = st
	s.onStop(func(context.Context) { st.Close() })
	if s.box, err = secrets.Open(filepath.Join(s.cfg.DataDir, "secret.key")); err != nil {
		return err
	}
	s.internal = randomToken()
	return bootstrapToken(ctx, st, s.cfg)
}

// listen binds both listeners first: the registry's address is the API's,
// and apps' connections wait in the router's backlog until reconciliation
// has routed them.
func (s *server) listen(context.Context) error {
	var err error
	if s.apiLn, err = net.Listen("tcp", s.cfg.Listen); err != nil {
		return fmt.Errorf("listening for the API on %s: %w", s.cfg.Listen, err)
	}
	s.onStop(func(context.Context) { s.apiLn.Close() })
	if s.routerLn, err = net.Listen("tcp", s.cfg.RouterListen); err != nil {
		return fmt.Errorf("listening for apps on %s: %w", s.cfg.RouterListen, err)
	}
	s.onStop(func(context.Context) { s.routerLn.Close() })
	s.registryHost = loopbackHost(s.apiLn.Addr().(*net.TCPAddr))
	s.routerPort = s.routerLn.Addr().(*net.TCPAddr).Port
	return nil
}

// authorize lets in the internal token (BuildKit, the runtime) and API
// tokens (users' git and registry clients).
func (s *server) authorize(r *http.Request) bool {
	if _, pw, ok := r.BasicAuth(); ok && subtle.ConstantTimeCompare([]byte(pw), []byte(s.internal)) == 1 {
		return true
	}
	return api.Authorized(s.store, r)
}

func (s *server) startRegistry(ctx context.Context) error {
	reg, err := registry.New(registry.Config{Dir: filepath.Join(s.cfg.DataDir, "registry"), Authorize: s.authorize})
	if err != nil {
		return err
	}
	s.registry = reg
	if err := seedBaseImages(ctx, reg, s.cfg.BaseImagesDir, s.log); err != nil {
		s.log.Warn("seeding base images", "err", err)
	}
	return nil
}

// buildCache bounds buildkitd's cache by --build-cache, and keeps twice
// --min-free-disk free, so that its collector frees space before new
// builds are refused for the lack of it.
func (s *server) buildCache() buildkit.CachePolicy {
	var p buildkit.CachePolicy
	if s.cfg.BuildCache > 0 {
		p.MaxUsed = s.cfg.BuildCache
		if s.cfg.MinFreeDisk > 0 {
			p.MinFree = 2 * s.cfg.MinFreeDisk
		}
	}
	return p
}

func (s *server) startBuilder(ctx context.Context) error {
	s.buildkitAddr = s.cfg.BuildkitHost
	if s.buildkitAddr == "" {
		if _, err := buildkit.LookPath(buildkit.DefaultBinary); err != nil {
			return err
		}
		d, err := buildkit.StartDaemon(ctx, buildkit.DaemonConfig{
			Root:                filepath.Join(s.cfg.DataDir, "buildkit"),
			PlainHTTPRegistries: []string{s.registryHost},
			DockerHubMirrors:    []string{s.registryHost},
			Network:             s.buildNet,
			Steps:               s.cfg.BuildSteps,
			Cache:               s.buildCache(),
			Logger:              s.log,
		})
		if err != nil {
			return fmt.Errorf("starting buildkitd: %w", err)
		}
		s.onStop(func(context.Context) { d.Close() })
		s.buildkitAddr = d.Addr()
	}
	// No credentials of its own: each build gets a token scoped to its
	// project (newController's RegistryGrant), so a Dockerfile can't pull
	// another project's image.
	b, err := buildkit.New(s.buildkitAddr, buildkit.Config{})
	if err != nil {
		return err
	}
	s.builder = b
	s.onStop(func(context.Context) { b.Close() })
	return nil
}

// newController creates the lifecycle; serveApps starts it. It writes the
// routing table that the router made in serveApps reads.
func (s *server) newController(context.Context) error {
	s.links = linkReader{store: s.store, box: s.box}
	s.gh = newFeedback(s.store, s.links, &github.Client{BaseURL: s.cfg.GitHubAPIURL}, project.Hosts{Base: s.cfg.BaseDomain},
		func(host string) string { return appURL(host, s.routerPort) }, s.log)
	s.table = &router.Table{}
	var builder build.Builder = s.metrics.Builder(s.builder) // timed without any wait for base images
	if s.baseImages != nil {
		builder = waitForBaseImages{Builder: builder, maker: s.baseImages}
	}
	ctl, err := deploy.New(deploy.Config{
		Store: s.store, Builder: builder, Sandboxes: s.drivers, Sandbox: s.cfg.Sandbox, Unavailable: s.unavailable, Routes: s.table,
		Observer: deploy.Observers{metricsObserver{s.metrics}, s.gh, s.notify}, LogTap: s.drains,
		Registry: s.registryHost, DataDir: s.cfg.DataDir, BaseDomain: s.cfg.BaseDomain,
		DeployWindow: s.cfg.DeployWindow, IdleTimeout: s.cfg.IdleTimeout, Secrets: s.box,
		PreparedSandboxes: s.cfg.PreparedSandboxes, RestoreAheadMemory: s.cfg.RestoreAheadMemory, NoSnapshots: s.cfg.NoSnapshots,
		InstanceStopped: func(deployment string) {
			if app := s.router.Load(); app != nil {
				app.CloseIdleConnectionsTo(deployment)
			}
		},
		Fetch: s.links.fetch, Log: s.log, Retention: s.retention(),
		RegistryGrant: func(project string) (string, func()) {
			return s.registry.Grant(registry.Grant{Pull: []string{"library/", project + "/"}, Push: project})
		},
	})
	if err != nil {
		return err
	}
	s.ctl = ctl
	// Instances keep running: a restarted server re-attaches to them.
	s.onStop(func(context.Context) { ctl.Close() })
	return nil
}

// serveAPI serves the API listener: the REST API, the registry, git
// pushes, GitHub webhooks and the dashboard, all over the project rules
// and the lifecycle. It answers while serveApps reconciles.
func (s *server) serveAPI(context.Context) error {
	var fw project.Firewall
	if s.network != nil {
		fw = firewall{s.network}
	}
	rules, err := project.New(project.Config{Store: s.store, Lifecycle: s.ctl, Secrets: s.box,
		Hosts: project.Hosts{Base: s.cfg.BaseDomain}, Firewall: fw, DefaultBranch: s.gh.client.DefaultBranch})
	if err != nil {
		return err
	}
	trig := &triggers{rules: rules, ctl: s.ctl, links: s.links, url: func(host string) string { return appURL(host, s.routerPort) }, gh: s.gh}
	git, err := gitserver.New(gitserver.Config{
		Root: filepath.Join(s.cfg.DataDir, "git"), Authorize: s.authorize, Pusher: trig, Log: s.log,
		Exists: func(ctx context.Context, name string) (bool, error) {
			_, err := s.store.GetProject(ctx, name)
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
		Lookup: trig.link, Enqueue: trig.enqueue, PullRequest: trig.pullRequest, Log: s.log,
		Seen:   func(ctx context.Context, id string) (bool, error) { return s.store.RecordDelivery(ctx, id, "") },
		Forget: s.store.ForgetDelivery,
	})
	if err != nil {
		return err
	}
	dashboard := web.New(web.Config{Store: s.store, Deploy: s.ctl, Projects: rules, RouterPort: s.routerPort,
		AdminPassword: s.cfg.AdminPassword, SessionKey: s.box.Derive("web-session"), Log: s.log,
		Notify: s.notify, Drains: s.drains})
	handler := api.New(api.Config{Store: s.store, Deploy: s.ctl, Projects: rules, Registry: s.registry, Git: git,
		GitHubHook: hook, Web: dashboard, Secrets: s.box, RouterPort: s.routerPort, Metrics: s.metrics.Handler(), Log: s.log,
		Notify: s.notify, Drains: s.drains}).Handler()

	// What waits for GitHub is sent from now on (queued before a restart
	// too).
	ghCtx, stopGH := context.WithCancel(context.Background())
	ghDone := make(chan struct{})
	go func() { defer close(ghDone); s.gh.run(ghCtx) }()
	s.onStop(func(context.Context) { stopGH(); <-ghDone })

	// Streams (logs, live pages) end when the server shuts down.
	streams, endStreams := context.WithCancel(context.Background())
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return streams }}
	s.serveOn(srv.Serve, s.apiLn)
	s.onStop(func(ctx context.Context) {
		endStreams()
		srv.Shutdown(ctx)
	})
	return nil
}

// serveApps reconciles the deployments found (routing the running ones)
// and only then serves the router: plain GETs and HEADs by its Front,
// every other connection by net/http; and HTTPS when configured.
func (s *server) serveApps(ctx context.Context) error {
	if err := s.ctl.Start(ctx); err != nil {
		return err
	}
	s.app = &router.Router{Table: s.table, OnRequest: s.ctl.Touch, OnRequestDone: s.ctl.RequestDone, Metrics: s.metrics}
	s.router.Store(s.app)
	plain := &http.Server{Handler: s.app, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if s.cfg.TLSListen != "" {
		acm, err := s.serveTLS()
		if err != nil {
			return err
		}
		plain.Handler = acm.HTTPHandler(s.app) // http-01 challenges
	}
	front := &router.Front{Router: s.app, Fallback: plain}
	s.serveOn(front.Serve, s.routerLn)
	s.onStop(func(ctx context.Context) { front.Shutdown(ctx) })
	return s.servePrivate()
}

// serveTLS serves apps over HTTPS: the operator's certificate for the
// names it covers, ACME for custom domains and, if asked, for project and
// environment hostnames.
func (s *server) serveTLS() (*certs.ACME, error) {
	cfg := s.cfg
	var cert *certs.CertFile
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		var err error
		if cert, err = certs.NewCertFile(certs.CertFileConfig{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, Log: s.log}); err != nil {
			return nil, err
		}
	}
	var basePolicy func(context.Context, string) error
	if cfg.TLSBaseHosts {
		basePolicy = certs.RoutedBaseHosts(s.table, cfg.BaseDomain)
	}
	acm, err := certs.NewACME(certs.ACMEConfig{
		Certificate: cert, BaseHostPolicy: basePolicy,
		DirectoryURL: cfg.ACMEDirectory, Email: cfg.ACMEEmail, CACertFile: cfg.ACMECACert,
		CacheDir: filepath.Join(cfg.DataDir, "acme"), BaseDomain: cfg.BaseDomain,
		HostPolicy: func(ctx context.Context, host string) error {
			ok, err := s.store.HasDomain(ctx, host)
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
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.TLSListen)
	if err != nil {
		return nil, fmt.Errorf("listening for HTTPS on %s: %w", cfg.TLSListen, err)
	}
	srv := &http.Server{Handler: s.app, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	s.serveOn(func(ln net.Listener) error { return acm.ServeTLS(srv, ln) }, ln)
	s.onStop(func(ctx context.Context) { srv.Shutdown(ctx) })
	attrs := []any{"listen", ln.Addr().String(), "acme", cfg.ACMEDirectory, "base_hosts_acme", cfg.TLSBaseHosts}
	if cert != nil {
		attrs = append(attrs, "cert", cfg.TLSCert, "cert_names", cert.Leaf().DNSNames, "cert_not_after", cert.Leaf().NotAfter)
	}
	s.log.Info("serving apps over HTTPS", attrs...)
	return acm, nil
}

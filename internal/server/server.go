// Package server assembles a running Slipway server from its parts — the
// store, the embedded registry, BuildKit, the sandboxes' drivers, the router, the
// deployment controller and the API — and runs it until its context ends.
package server

import (
	"context"
	"crypto/rand"
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

	"github.com/slipwayhq/slipway/internal/build/buildkit"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/store"
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
	// Sandbox is the sandbox kind (runc, gvisor, microvm) of deployments
	// whose project sets none; the server does not start if it cannot run
	// it. If empty, "runc".
	Sandbox string
	// Runtime is where instances run: "local" (this host, in each
	// kind's sandbox) or "kubernetes" (pods of the cluster Kubeconfig
	// names; every sandbox kind is then a kubernetes driver). If empty,
	// "local".
	Runtime string
	// Kubeconfig is the kubeconfig file of the cluster, with --runtime
	// kubernetes. If empty, the cluster the server runs in.
	Kubeconfig string
	// RegistryURL is where the cluster's nodes reach Slipway's registry
	// (this server's Listen address as they see it), with --runtime
	// kubernetes. Required then.
	RegistryURL string
	// KubeNode, if set, places every pod on that node, without the
	// cluster's scheduler.
	KubeNode string
	// KubeSplitLogs asks the API server for pods' stdout and stderr apart
	// (its PodLogsQuerySplitStreams feature); else both go to stdout.
	KubeSplitLogs bool
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
	// AppNetwork is the IPv4 range (CIDR) of the apps' addresses on
	// Slipway's bridge. If empty, a /16 that no route of the host uses;
	// "none": apps get loopback only (no egress, no private networking).
	AppNetwork string
	// DNSUpstream is the comma-separated HOST:PORT list of resolvers the
	// apps' resolver forwards to. If empty, the host's (/etc/resolv.conf).
	DNSUpstream string
	// BuildCache is the most disk, in bytes, buildkitd's build cache
	// keeps; it is also pruned while the disk has less free than twice
	// MinFreeDisk, so that builds are refused only when the cache can't
	// help. If zero, BuildKit's own policy (80% of the disk, up to 100 GB).
	BuildCache int64
	// BuildSteps is enforced on every build step (RUN) of the buildkitd
	// Slipway starts: capabilities dropped (CAP_NET_RAW by default) and
	// memory, pids and CPU caps. Zero limits: none. Not used with
	// BuildkitHost (an external buildkitd runs steps its own way).
	BuildSteps buildkit.StepPolicy
	// MinFreeDisk refuses new builds (the deployment fails, saying why)
	// while the data directory's filesystem has fewer free bytes; running
	// apps keep serving. If zero, 2 GiB; negative: never refused.
	MinFreeDisk int64
	// KeepStopped is how long a STOPPED or FAILED deployment keeps its
	// source, runtime logs and image before the collection removes them.
	// If zero, 7 days.
	KeepStopped time.Duration
	// CollectInterval is how often the collection runs (also once at
	// start). If zero, every hour.
	CollectInterval time.Duration
	// BaseImagesDir holds base-image stand-ins (OCI layouts written by
	// scripts/base-images.sh) pushed into the registry at start. If empty,
	// <DataDir>/base-images.
	BaseImagesDir string
	// BuildBaseImages makes the stand-ins that BaseImagesDir lacks in the
	// background (as scripts/base-images.sh would: root, debootstrap and
	// the host's Debian mirror), pushing each into the registry when it is
	// written; a build that needs one waits for it, and says so in its
	// log. If false, builds find only what BaseImagesDir held at start.
	BuildBaseImages bool
	// BaseImagesCache is where BuildBaseImages keeps rootfs trees and
	// layers. If empty, /var/cache/slipway/base-images (shared with
	// scripts/base-images.sh).
	BaseImagesCache string
	// UserNSRange is the range of host user and group IDs that the IDs of
	// every instance map to, each instance in a user namespace of its own:
	// "BASE" (65536 IDs), "BASE:SIZE" or "UID:GID:SIZE" (at least 65536
	// IDs). If empty, the range of the user "slipway" in /etc/subuid and
	// /etc/subgid, else 65536 IDs from 1879048192. "off": instances run in
	// the host's user namespace (an image without USER runs as the host's
	// root), for hosts where user namespaces cannot work.
	UserNSRange string
	// MetricsListen, if set, also serves GET /metrics there, without a
	// token (on the API listener it needs one). An address without a host
	// (":9100") is on loopback. If empty, no such listener.
	MetricsListen string
	// HistoryInterval is how often the metrics history (the dashboard's
	// plots) samples the metrics. If zero, 10 seconds.
	HistoryInterval time.Duration
	// GitHubAPIURL is the GitHub REST API that commit statuses,
	// pull-request comments and default-branch look-ups go to, such as
	// https://ghe.example.com/api/v3. If empty, https://api.github.com
	// for repositories on github.com and https://HOST/api/v3 for those on
	// other hosts (GitHub Enterprise Server).
	GitHubAPIURL string
	// PreparedSandboxes is how many sandboxes are kept prepared ahead for
	// the next wake of apps scaled to zero (the apps that fell asleep
	// last keep theirs). If zero, 8; negative: none.
	PreparedSandboxes int
	// RestoreAheadMemory bounds the memory of the sandboxes prepared
	// ahead whose app is restored from its snapshot already (gvisor),
	// paused, so that a wake only resumes it. If zero, 512 MiB; negative:
	// snapshots are restored at the wake.
	RestoreAheadMemory int64
	// NoSnapshots turns snapshot wakes off: gvisor instances start the
	// app at each wake instead of resuming the snapshot of their
	// deployment's first healthy instance (DataDir/snapshots).
	NoSnapshots bool
	// Started, if set, is called once the server serves, with the API and
	// router addresses.
	Started func(api, router net.Addr)
	// Out receives the one-time banner saying where the admin token is. If
	// nil, os.Stdout.
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
	if c.Sandbox == "" {
		c.Sandbox = project.SandboxRunc
	}
	if c.MinFreeDisk == 0 {
		c.MinFreeDisk = 2 << 30
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
//
// The parts start in the order below, each once the parts it needs are
// up, and stop in the reverse order (see parts.go).
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	s := &server{cfg: cfg, log: cfg.Log, errc: make(chan error, 4)}
	defer s.stop()
	for _, start := range []func(context.Context) error{
		s.openStore,         // SQLite, the secret key, the admin token
		s.listen,            // the API's and the router's addresses
		s.startRegistry,     // at the API's address: builds push there
		s.makeBaseImages,    // the missing base images, in the background
		s.startNetwork,      // the instances' bridge, egress policy and resolver
		s.startBuildNetwork, // the builds' bridge and resolver, for buildkitd's CNI
		s.startBuilder,      // buildkitd (ours, or BuildkitHost) and its client
		s.startRuntime,      // a driver per sandbox kind, attaching instances to the network
		s.startMetrics,      // what the router, lifecycle and builds report to
		s.startNotify,       // outgoing webhooks and log drains
		s.newController,     // the lifecycle (started by serveApps)
		s.serveAPI,          // project rules, git, webhooks, dashboard, API
		s.serveApps,         // reconcile, then the router (HTTPS, private names)
		s.startCollection,   // retention: now, then every CollectInterval
		s.startHistory,      // the metrics history the dashboard plots
	} {
		if err := start(ctx); err != nil {
			return err
		}
	}
	s.log.Info("slipway is up", "api", "http://"+s.apiLn.Addr().String(), "router", s.routerLn.Addr().String(),
		"base_domain", cfg.BaseDomain, "data", cfg.DataDir, "buildkit", s.buildkitAddr)
	if cfg.Started != nil {
		cfg.Started(s.apiLn.Addr(), s.routerLn.Addr())
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-s.errc:
	}
	s.log.Info("shutting down; app instances keep running")
	return err
}

// validate checks what defaults cannot fix.
func (c *Config) validate() error {
	if c.TLSListen == "" && (c.TLSCert != "" || c.TLSKey != "" || c.TLSBaseHosts) {
		return errors.New("a TLS certificate or --tls-base-hosts needs --tls-listen")
	}
	if !project.ValidSandbox(c.Sandbox) {
		return fmt.Errorf("--sandbox %q: want one of %s", c.Sandbox, strings.Join(project.Sandboxes, ", "))
	}
	switch c.Runtime {
	case "", RuntimeLocal:
	case RuntimeKubernetes:
		if !kubernetesBuilt {
			return errNoKubernetes
		}
		if _, err := registryURLHost(c.RegistryURL); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--runtime %q: want %s or %s", c.Runtime, RuntimeLocal, RuntimeKubernetes)
	}
	return nil
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
// cfg.BootstrapToken or generated, and written to <data>/admin-token
// (mode 0600); the server prints where it is, never the token. Later
// starts leave it alone.
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
	// Where it is, never the token itself: the server's output often ends
	// up in a log file (scripts/run.sh appends it to server.log), which
	// would then hold the admin's credential.
	fmt.Fprintf(cfg.Out, "\nSlipway admin token created and saved to %s (mode 0600):\n\n    export SLIPWAY_TOKEN=$(cat %s)\n\n", path, path)
	return nil
}

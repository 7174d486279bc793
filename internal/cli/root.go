// Package cli is the `slipway` command line: the server and the client
// commands that talk to its API.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/internal/server"
)

// Version is set at build time.
var Version = "dev"

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	root := newRoot()
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		if code, ok := err.(exitCode); ok {
			return int(code)
		}
		return 1
	}
	return 0
}

// exitCode ends the process with a code after the error was already shown.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "slipway",
		Short: "Slipway: push code, get a live URL — on your own server",
		Long: `Slipway builds your code into an image, runs it in a sandbox and serves it
at its own URL. This binary is both the server (slipway server) and the CLI.

The CLI finds the server through SLIPWAY_URL and SLIPWAY_TOKEN, or what
'slipway login' saved.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.AddCommand(newServerCmd(), newDeployCmd(), newProjectsCmd(), newDeploymentsCmd(),
		newLogsCmd(), newStopCmd(), newPlanCmd(), newPromoteCmd(), newRedeployCmd(), newEnvCmd(), newEgressCmd(), newPreviewsCmd(), newStartCommandCmd(),
		newLoginCmd(), newNotifyCmd(), newDrainsCmd())
	return root
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func envInt(name string, def int64) int64 {
	if n, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil {
		return n
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if f, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return f
	}
	return def
}

func newServerCmd() *cobra.Command {
	var cfg server.Config
	defRouter := ":8080"
	if os.Geteuid() == 0 {
		defRouter = ":80"
	}
	var verbose bool
	snapshots := true
	if v, err := strconv.ParseBool(os.Getenv("SLIPWAY_SNAPSHOTS")); err == nil {
		snapshots = v
	}
	var buildMemory, minFreeDisk, buildCache, restoreAhead string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Slipway server (API, registry, builder, runtime and router)",
		Long: `Run the Slipway server: the API and dashboard, the embedded OCI registry
(under /v2/ on the API address), a supervised buildkitd (unless BUILDKIT_HOST is
set), the sandboxes apps run in (runc by default; see --sandbox) and the
router that serves apps by hostname. Apps get an
address on Slipway's bridge: they reach the public internet (and what
"slipway egress allow" opens), resolve names through Slipway's resolver, and
reach each other as http://<project>.internal; never this host, cloud metadata,
other apps' instances, private ranges or the LAN.

On the first start an admin token is created (SLIPWAY_BOOTSTRAP_TOKEN, or
generated), printed once and saved to <data>/admin-token. Base-image stand-ins
built by scripts/base-images.sh are read from SLIPWAY_BASE_IMAGES (default
<data>/base-images) and pushed into the registry at start; with
--build-base-images the server makes those missing there itself, in the
background (cache: SLIPWAY_BASE_IMAGES_CACHE, default
/var/cache/slipway/base-images), and a build that needs one waits for it,
saying so in its log. The dashboard is at
the API address; sign in with an API token, or with SLIPWAY_ADMIN_PASSWORD when
it is set.

Every flag can also be set with the environment variable shown.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			cfg.BuildkitHost = os.Getenv("BUILDKIT_HOST")
			cfg.BootstrapToken = os.Getenv("SLIPWAY_BOOTSTRAP_TOKEN")
			cfg.BaseImagesDir = os.Getenv("SLIPWAY_BASE_IMAGES")
			cfg.BaseImagesCache = os.Getenv("SLIPWAY_BASE_IMAGES_CACHE")
			cfg.AdminPassword = os.Getenv("SLIPWAY_ADMIN_PASSWORD")
			mem, err := units.RAMInBytes(buildMemory)
			if err != nil || mem < 0 {
				return fmt.Errorf("--build-memory %q: want a size such as 4GiB or 512MiB, or 0 for no limit", buildMemory)
			}
			cfg.BuildSteps.MemoryBytes = mem
			if cfg.BuildSteps.Pids < 0 || cfg.BuildSteps.CPUs < 0 {
				return fmt.Errorf("--build-pids and --build-cpus must not be negative")
			}
			if cfg.IdleTimeout == 0 {
				cfg.IdleTimeout = -1 // --idle-timeout 0: never scale to zero
			}
			cache, err := units.RAMInBytes(buildCache)
			if err != nil || cache < 0 {
				return fmt.Errorf("--build-cache %q: want a size such as 10GiB, or 0 for BuildKit's own bound (80%% of the disk, up to 100 GB)", buildCache)
			}
			cfg.BuildCache = cache
			if cfg.PreparedSandboxes == 0 {
				cfg.PreparedSandboxes = -1 // --prepared-sandboxes 0: none
			}
			cfg.NoSnapshots = !snapshots
			if cfg.RestoreAheadMemory, err = sizeOrNone("restore-ahead-memory", restoreAhead, "a size such as 512MiB, or 0 to restore snapshots at the wake"); err != nil {
				return err
			}
			if cfg.MinFreeDisk, err = sizeOrNone("min-free-disk", minFreeDisk, "a size such as 2GiB or 500MiB, or 0 to never refuse builds"); err != nil {
				return err
			}
			return server.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data", envOr("SLIPWAY_DATA", server.DefaultDataDir()), "data directory (SLIPWAY_DATA)")
	f.StringVar(&cfg.Listen, "listen", envOr("SLIPWAY_LISTEN", "127.0.0.1:7300"), "API, dashboard and registry address (SLIPWAY_LISTEN)")
	f.StringVar(&cfg.RouterListen, "router", envOr("SLIPWAY_ROUTER", defRouter), "address apps are served on (SLIPWAY_ROUTER)")
	f.StringVar(&cfg.BaseDomain, "base-domain", envOr("SLIPWAY_BASE_DOMAIN", "slipway.localhost"), "base domain of app hostnames (SLIPWAY_BASE_DOMAIN)")
	f.DurationVar(&cfg.DeployWindow, "deploy-window", envDuration("SLIPWAY_DEPLOY_WINDOW", 5*time.Minute), "how long a deployment may take to become healthy (SLIPWAY_DEPLOY_WINDOW)")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", envDuration("SLIPWAY_IDLE_TIMEOUT", 5*time.Minute), "scale an app to zero after this long without requests; 0 = never (SLIPWAY_IDLE_TIMEOUT)")
	f.StringVar(&cfg.TLSListen, "tls-listen", os.Getenv("SLIPWAY_TLS_LISTEN"), "serve apps over HTTPS here, e.g. :443: custom domains with ACME certificates, base-domain names per --tls-cert and --tls-base-hosts; empty = off (SLIPWAY_TLS_LISTEN)")
	f.StringVar(&cfg.TLSCert, "tls-cert", os.Getenv("SLIPWAY_TLS_CERT"), "PEM certificate you obtained (e.g. *.<base-domain> and <base-domain>), served over HTTPS for every name it covers; re-read when it changes (SLIPWAY_TLS_CERT)")
	f.StringVar(&cfg.TLSKey, "tls-key", os.Getenv("SLIPWAY_TLS_KEY"), "PEM private key of --tls-cert (SLIPWAY_TLS_KEY)")
	baseHosts, _ := strconv.ParseBool(os.Getenv("SLIPWAY_TLS_BASE_HOSTS"))
	f.BoolVar(&cfg.TLSBaseHosts, "tls-base-hosts", baseHosts, "order ACME certificates for project and environment hostnames under the base domain that --tls-cert does not cover (never for preview hostnames) (SLIPWAY_TLS_BASE_HOSTS)")
	f.StringVar(&cfg.ACMEDirectory, "acme-directory", envOr("SLIPWAY_ACME_DIRECTORY", ""), "ACME directory URL; empty = Let's Encrypt (SLIPWAY_ACME_DIRECTORY)")
	f.StringVar(&cfg.ACMEEmail, "acme-email", os.Getenv("SLIPWAY_ACME_EMAIL"), "contact e-mail of the ACME account (SLIPWAY_ACME_EMAIL)")
	f.StringVar(&cfg.ACMECACert, "acme-ca-cert", os.Getenv("SLIPWAY_ACME_CA_CERT"), "PEM roots for the ACME server's HTTPS, for test CAs (SLIPWAY_ACME_CA_CERT)")
	f.StringVar(&cfg.Sandbox, "sandbox", envOr("SLIPWAY_SANDBOX", "runc"), "sandbox of the projects that choose none (their setting \"sandbox\"): runc, gvisor or microvm, of those this host can run (SLIPWAY_SANDBOX)")
	f.StringVar(&cfg.Runtime, "runtime", envOr("SLIPWAY_RUNTIME", "local"), "where apps run: local (this host) or kubernetes (pods of the cluster --kubeconfig names, pulled from --registry-url; every sandbox kind then asks the cluster for its isolation) (SLIPWAY_RUNTIME)")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file of the cluster, with --runtime kubernetes; empty = the cluster the server runs in (KUBECONFIG)")
	f.StringVar(&cfg.RegistryURL, "registry-url", os.Getenv("SLIPWAY_REGISTRY_URL"), "where the cluster's nodes reach Slipway's registry (this server's --listen as they see it), e.g. http://10.0.0.5:7300; required with --runtime kubernetes (SLIPWAY_REGISTRY_URL)")
	f.StringVar(&cfg.KubeNode, "kube-node", os.Getenv("SLIPWAY_KUBE_NODE"), "with --runtime kubernetes, place every pod on this node without the scheduler; empty = the cluster's scheduler places them (SLIPWAY_KUBE_NODE)")
	kubeSplit, _ := strconv.ParseBool(os.Getenv("SLIPWAY_KUBE_SPLIT_LOGS"))
	f.BoolVar(&cfg.KubeSplitLogs, "kube-split-logs", kubeSplit, "with --runtime kubernetes, read pods' stdout and stderr apart (the cluster's PodLogsQuerySplitStreams feature gate must be on); else both are logged as stdout (SLIPWAY_KUBE_SPLIT_LOGS)")
	f.StringVar(&cfg.AppNetwork, "app-network", os.Getenv("SLIPWAY_APP_NETWORK"), "IPv4 range (CIDR) of the apps' addresses on Slipway's bridge; empty = a /16 that no route of the host uses; \"none\" = apps get loopback only (SLIPWAY_APP_NETWORK)")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", os.Getenv("SLIPWAY_METRICS_LISTEN"), "also serve GET /metrics (Prometheus) here without a token, e.g. :9100 (a port alone is on loopback); on --listen it needs an API token; empty = off (SLIPWAY_METRICS_LISTEN)")
	f.StringVar(&cfg.GitHubAPIURL, "github-api-url", os.Getenv("SLIPWAY_GITHUB_API_URL"), "GitHub REST API for commit statuses, pull-request comments and default branches, e.g. https://ghe.example.com/api/v3; empty = https://api.github.com for github.com repositories, https://HOST/api/v3 for others (SLIPWAY_GITHUB_API_URL)")
	f.StringVar(&cfg.DNSUpstream, "dns-upstream", os.Getenv("SLIPWAY_DNS_UPSTREAM"), "HOST:PORT[,HOST:PORT] the apps' resolver forwards to; empty = the host's resolvers from /etc/resolv.conf (SLIPWAY_DNS_UPSTREAM)")
	f.StringVar(&minFreeDisk, "min-free-disk", envOr("SLIPWAY_MIN_FREE_DISK", "2GiB"), "refuse new builds (the deployment fails, saying why) while the data directory's disk has less free; running apps keep serving; 0 = never (SLIPWAY_MIN_FREE_DISK)")
	f.DurationVar(&cfg.KeepStopped, "keep-stopped", envDuration("SLIPWAY_KEEP_STOPPED", 7*24*time.Hour), "how long a STOPPED or FAILED deployment keeps its source, runtime logs and image before they are collected (SLIPWAY_KEEP_STOPPED)")
	f.DurationVar(&cfg.CollectInterval, "collect-interval", envDuration("SLIPWAY_COLLECT_INTERVAL", time.Hour), "how often old logs, sources and images are collected (also once at start) (SLIPWAY_COLLECT_INTERVAL)")
	f.StringVar(&buildCache, "build-cache", envOr("SLIPWAY_BUILD_CACHE", "10GiB"), "most disk the build cache keeps (least recently used pruned first; it is also pruned while the disk has less free than twice --min-free-disk); 0 = BuildKit's own bound (SLIPWAY_BUILD_CACHE)")
	f.StringVar(&buildMemory, "build-memory", envOr("SLIPWAY_BUILD_MEMORY", "4GiB"), "memory (and memory+swap) cap of each build step, e.g. 4GiB; 0 = none (SLIPWAY_BUILD_MEMORY)")
	f.Int64Var(&cfg.BuildSteps.Pids, "build-pids", envInt("SLIPWAY_BUILD_PIDS", 4096), "processes and threads cap of each build step; 0 = none (SLIPWAY_BUILD_PIDS)")
	f.Float64Var(&cfg.BuildSteps.CPUs, "build-cpus", envFloat("SLIPWAY_BUILD_CPUS", 0), "CPU cap of each build step, in cores; 0 = none (SLIPWAY_BUILD_CPUS)")
	buildBase, _ := strconv.ParseBool(os.Getenv("SLIPWAY_BUILD_BASE_IMAGES"))
	f.BoolVar(&cfg.BuildBaseImages, "build-base-images", buildBase, "make the base-image stand-ins missing from SLIPWAY_BASE_IMAGES in the background (root, debootstrap, the host's Debian mirror); builds that need one wait for it (SLIPWAY_BUILD_BASE_IMAGES)")
	f.StringVar(&cfg.UserNSRange, "userns-range", os.Getenv("SLIPWAY_USERNS_RANGE"), "host user and group IDs that each instance's IDs map to, in a user namespace of its own: BASE, BASE:SIZE or UID:GID:SIZE (at least 65536 IDs); empty = the \"slipway\" entries of /etc/subuid and /etc/subgid, else 1879048192:65536; \"off\" = no user namespace (root in an image is the host's root) (SLIPWAY_USERNS_RANGE)")
	f.IntVar(&cfg.PreparedSandboxes, "prepared-sandboxes", int(envInt("SLIPWAY_PREPARED_SANDBOXES", 8)), "sandboxes kept prepared ahead (filesystem, network, cgroup, runc create) for the next wake of apps scaled to zero, the apps that fell asleep last first; each holds about 2.5 MiB; 0 = none (SLIPWAY_PREPARED_SANDBOXES)")
	f.StringVar(&restoreAhead, "restore-ahead-memory", envOr("SLIPWAY_RESTORE_AHEAD_MEMORY", "512MiB"), "memory that sandboxes prepared ahead may hold with their gvisor app already restored from its snapshot and paused, so that its wake only resumes it (a Flask app holds about 70 MiB); beyond it, snapshots are restored at the wake; 0 = always at the wake (SLIPWAY_RESTORE_AHEAD_MEMORY)")
	f.BoolVar(&snapshots, "snapshots", snapshots, "save each gvisor deployment's first healthy instance (its memory and files, under the data directory) and wake later instances from that snapshot instead of starting the app; false = every wake starts the app (SLIPWAY_SNAPSHOTS)")
	f.BoolVarP(&verbose, "verbose", "v", false, "log debug messages")
	return cmd
}

// sizeOrNone parses the size flag --name (value v) whose 0 means none:
// -1 in the server's config, where zero means the default.
func sizeOrNone(name, v, want string) (int64, error) {
	n, err := units.RAMInBytes(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--%s %q: want %s", name, v, want)
	}
	if n == 0 {
		return -1, nil
	}
	return n, nil
}

func newLoginCmd() *cobra.Command {
	var c clientConfig
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Save the server URL and API token for later commands",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.Token == "" {
				return fmt.Errorf("--token is required")
			}
			c.URL = strings.TrimRight(c.URL, "/")
			cl := &client{cfg: c, http: newClient().http}
			if err := cl.call(cmd.Context(), "GET", "/api/v1/projects", nil, nil); err != nil {
				return fmt.Errorf("checking the token against %s: %w", c.URL, err)
			}
			path := configPath()
			if err := os.MkdirAll(strings.TrimSuffix(path, "/config.json"), 0o700); err != nil {
				return err
			}
			b, _ := json.MarshalIndent(c, "", "  ")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Logged in to %s (saved to %s)\n", c.URL, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&c.URL, "url", envOr("SLIPWAY_URL", "http://127.0.0.1:7300"), "server URL")
	cmd.Flags().StringVar(&c.Token, "token", os.Getenv("SLIPWAY_TOKEN"), "API token")
	return cmd
}

// jsonFlag adds the --json flag to cmd.
func jsonFlag(cmd *cobra.Command, asJSON *bool) {
	cmd.Flags().BoolVar(asJSON, "json", false, "print JSON")
}

// show makes one API call and prints the answer: as JSON when asJSON, else
// with text.
func show[T any](cmd *cobra.Command, asJSON bool, method, path string, in any, text func(T) error) error {
	var v T
	if err := newClient().call(cmd.Context(), method, path, in, &v); err != nil {
		return err
	}
	if asJSON {
		return printJSON(cmd, v)
	}
	return text(v)
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

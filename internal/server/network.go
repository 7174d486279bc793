package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/build/buildkit"
	"github.com/slipwayhq/slipway/internal/netns"
	"github.com/slipwayhq/slipway/internal/netns/dns"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/runtime"
)

// NetworkNames are the names of the kernel objects of the instances'
// network that a server with data directory dataDir owns: its bridge and
// its nftables tables. They derive from the data directory, so servers
// with their own data (tests, several installs) never share one.
func NetworkNames(dataDir string) (bridge, table string) {
	h := dataHash(dataDir)
	return "slipway-" + h, "slipway_" + h
}

// BuildNetworkNames are NetworkNames for the builds' network.
func BuildNetworkNames(dataDir string) (bridge, table string) {
	h := dataHash(dataDir)
	return "slipwayb-" + h, "slipwayb_" + h
}

func dataHash(dataDir string) string {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:3])
}

// RemoveNetwork removes the kernel state of a stopped server's networks —
// bridges, nftables tables, leases, the builds' CNI address pool — which a
// server leaves behind on purpose so that the next start adopts it. For
// tests and uninstalling; instances still attached lose their network.
func RemoveNetwork(dataDir string) error {
	var errs []error
	for _, kind := range []struct {
		names func(string) (string, string)
		dir   string
	}{{NetworkNames, "network"}, {BuildNetworkNames, "network-builds"}} {
		bridge, table := kind.names(dataDir)
		n, err := netns.Open(netns.Config{Bridge: bridge, Table: table, StateDir: filepath.Join(dataDir, kind.dir),
			Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, n.Remove())
		// host-local's address pool of the builds' CNI network.
		errs = append(errs, os.RemoveAll(filepath.Join("/var/lib/cni/networks", bridge)))
	}
	return errors.Join(errs...)
}

// networkOff reports whether the operator turned instance networking off.
func (c *Config) networkOff() bool { return c.AppNetwork == "none" }

// startNetwork opens the instances' network (bridge, nftables policy) and
// the resolver on its gateway, applies every project's egress policy and
// removes what belongs to instances that are gone. It runs before the
// runtime, which attaches instances to it.
func (s *server) startNetwork(ctx context.Context) error {
	if s.cfg.networkOff() {
		s.log.Info("instance networking is off (--app-network none): apps have loopback only")
		return nil
	}
	var prefix netip.Prefix
	if s.cfg.AppNetwork != "" {
		p, err := netip.ParsePrefix(s.cfg.AppNetwork)
		if err != nil || !p.Addr().Is4() || p.Bits() > 28 {
			return fmt.Errorf("--app-network %q: want an IPv4 CIDR of /28 or larger, such as 10.88.0.0/16, or none", s.cfg.AppNetwork)
		}
		prefix = p.Masked()
	}
	// The router answers private names on the gateway's port 80; where
	// the public router already listens on every address's port 80 (the
	// default as root), the gateway's port 80 is redirected to a port of
	// the private listener's own. The gateway's address exists once the
	// bridge does: the network is opened a first time for it, the
	// listener bound there on a port the kernel picks (and held from then
	// on, so nothing else can take it), and the network opened again with
	// the redirect to that port.
	bridge, table := NetworkNames(s.cfg.DataDir)
	cfg := netns.Config{
		Bridge: bridge, Table: table, Prefix: prefix,
		StateDir: filepath.Join(s.cfg.DataDir, "network"),
		Log:      s.log,
	}
	first, err := netns.Open(cfg)
	if err != nil {
		return fmt.Errorf("opening the instances' network: %w", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(first.Gateway().String(), "0"))
	first.Close()
	if err != nil {
		return fmt.Errorf("listening for private names on the gateway: %w", err)
	}
	s.privateLn = ln
	s.onStop(func(context.Context) { ln.Close() }) // if servePrivate never takes it
	cfg.Redirects = map[uint16]uint16{internalPort: uint16(ln.Addr().(*net.TCPAddr).Port)}
	n, err := netns.Open(cfg)
	if err != nil {
		return fmt.Errorf("opening the instances' network: %w", err)
	}
	s.network = n
	s.onStop(func(context.Context) { n.Close() }) // the kernel state stays for the next start
	if err := s.applyEgress(ctx); err != nil {
		return err
	}
	live, err := s.store.ListLiveInstances(ctx)
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(live))
	for _, in := range live {
		ids = append(ids, in.ID)
	}
	if err := n.Reconcile(ctx, ids); err != nil {
		return fmt.Errorf("reconciling the instances' network: %w", err)
	}

	hosts := project.Hosts{Base: s.cfg.BaseDomain}
	gw := n.Gateway()
	resolver, err := dns.Serve(dns.Config{
		Listen:    net.JoinHostPort(gw.String(), "53"),
		Upstreams: s.dnsUpstreams(),
		Internal: func(name string) (netip.Addr, bool) {
			_, ok := hosts.FromInternal(name)
			return gw, ok
		},
		Log: s.log,
	})
	if err != nil {
		return fmt.Errorf("serving DNS to the instances: %w", err)
	}
	s.onStop(func(context.Context) { resolver.Close() })
	return nil
}

// CNIBinaryDir is where Debian's containernetworking-plugins are.
const CNIBinaryDir = "/usr/lib/cni"

// startBuildNetwork gives build steps a network of their own, on the same
// mechanism as the instances': a bridge with the same default-deny policy
// (the internet yes; the host, metadata, the LAN and instances no), and a
// resolver on its gateway. buildkitd reaches it through CNI's bridge
// plugin. Without it, BuildKit falls back to the host's network, where a
// RUN step reaches the API, the registry and everything on loopback; so
// a server that starts its own buildkitd refuses to go on without it,
// unless networking is off (--app-network none).
func (s *server) startBuildNetwork(ctx context.Context) error {
	if s.cfg.networkOff() || s.cfg.BuildkitHost != "" {
		return nil
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(CNIBinaryDir, plugin)); err != nil {
			return fmt.Errorf("builds need the CNI plugins in %s (apt-get install containernetworking-plugins), or --app-network none to run them on the host's network: %w", CNIBinaryDir, err)
		}
	}
	bridge, table := BuildNetworkNames(s.cfg.DataDir)
	n, err := netns.Open(netns.Config{
		Bridge: bridge, Table: table,
		StateDir: filepath.Join(s.cfg.DataDir, "network-builds"),
		Log:      s.log,
	})
	if err != nil {
		return fmt.Errorf("opening the builds' network: %w", err)
	}
	s.onStop(func(context.Context) { n.Close() })
	gw := n.Gateway()
	resolver, err := dns.Serve(dns.Config{Listen: net.JoinHostPort(gw.String(), "53"), Upstreams: s.dnsUpstreams(), Log: s.log})
	if err != nil {
		return fmt.Errorf("serving DNS to builds: %w", err)
	}
	s.onStop(func(context.Context) { resolver.Close() })
	conf, err := json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       bridge,
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false, // the table masquerades
			"ipam": map[string]any{
				"type":   "host-local",
				"ranges": [][]map[string]string{{{"subnet": n.Prefix().String(), "gateway": gw.String()}}},
				"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
			},
		}},
	}, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.cfg.DataDir, "network-builds", "cni.conflist")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		return fmt.Errorf("writing the builds' CNI configuration: %w", err)
	}
	s.buildNet = &buildkit.Network{CNIConfig: path, CNIBinaryDir: CNIBinaryDir, Nameservers: []string{gw.String()}}
	return nil
}

// dnsUpstreams are the resolvers Slipway's resolvers forward to: the
// operator's, or (nil) the host's.
func (s *server) dnsUpstreams() []string {
	if s.cfg.DNSUpstream == "" {
		return nil
	}
	return strings.Split(s.cfg.DNSUpstream, ",")
}

// applyEgress hands every project's egress policy to the network.
func (s *server) applyEgress(ctx context.Context) error {
	ps, err := s.store.ListProjects(ctx)
	if err != nil {
		return err
	}
	for _, p := range ps {
		e, err := project.EgressOf(p)
		if err != nil {
			s.log.Error("a project's egress policy is unreadable; it gets the default", "project", p.Name, "err", err)
			continue
		}
		if err := (firewall{s.network}).SetEgress(p.ID, e); err != nil {
			return err
		}
	}
	return nil
}

// internalPort is where instances reach the router for private names, on
// the gateway (redirected to the private listener's port).
const internalPort = 80

// servePrivate serves the router on the gateway for private names
// (<project>.internal and the like): apps reach each other through it,
// waking them as the public router does; any other name answers 404.
func (s *server) servePrivate() error {
	if s.network == nil {
		return nil
	}
	ln := s.privateLn
	hosts := project.Hosts{Base: s.cfg.BaseDomain}
	srv := &http.Server{Handler: privateNames(hosts, s.app), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	s.serveOn(srv.Serve, ln)
	s.onStop(func(ctx context.Context) { srv.Shutdown(ctx) })
	return nil
}

// privateNames routes a request for a private name as the request for
// the public hostname it stands for.
func privateNames(hosts project.Hosts, app *router.Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		public, ok := hosts.FromInternal(host)
		if !ok {
			http.Error(w, "Only <project>.internal, <project>-<environment>.internal and <deployment>.internal names are served here.", http.StatusNotFound)
			return
		}
		r.Host = public
		app.ServeHTTP(w, r)
	})
}

// firewall applies the project rules' egress policies to the network.
type firewall struct{ n *netns.Network }

func (f firewall) SetEgress(projectID string, e project.Egress) error {
	var p netns.Egress
	p.None = e.None
	for _, r := range e.Allow {
		p.Allow = append(p.Allow, netns.Allow{Prefix: r.Prefix, Port: r.Port})
	}
	return f.n.SetEgress(projectID, p)
}

// networkPool is how many network namespaces the runtime keeps wired
// ahead, so a burst of that many wakes does no network setup.
const networkPool = 4

// attacher is the network as the runtime sees it.
type attacher struct{ n *netns.Network }

func (a attacher) Attach(ctx context.Context, id, group, nsPath string) (runtime.Lease, error) {
	l, err := a.n.Attach(ctx, id, group, nsPath)
	if err != nil {
		return runtime.Lease{}, err
	}
	return runtime.Lease{Addr: l.Addr, Gateway: l.Gateway, DNS: l.DNS}, nil
}

func (a attacher) Claim(ctx context.Context, from, id, group string) (runtime.Lease, error) {
	l, err := a.n.Claim(ctx, from, id, group)
	return runtime.Lease{Addr: l.Addr, Gateway: l.Gateway, DNS: l.DNS}, err
}

func (a attacher) Detach(ctx context.Context, id string) error { return a.n.Detach(ctx, id) }

var (
	_ project.Firewall = firewall{}
	_ runtime.Network  = attacher{}
)

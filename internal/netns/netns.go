// Package netns gives app instances' network namespaces a network and
// enforces their egress policy, on the real kernel.
//
// Every instance namespace gets a veth pair: the host side on a Linux
// bridge whose address is the instances' gateway (with bridge-port
// isolation, so instances cannot reach each other at layer 2), the other
// side inside the namespace as eth0 with a leased IPv4 address and a
// default route via the gateway. Traffic leaving the host is masqueraded.
//
// The policy lives in nftables tables Slipway owns (family inet and
// bridge, both named Config.Table; see rules.go for the layout), written
// whole in one transaction by Open and changed afterwards one transaction
// at a time. By default an instance reaches the public internet and
// nothing else: not the host (but for the resolver on the gateway's port
// 53 and Config.GatewayPorts), link-local addresses, other instances,
// private and reserved ranges, or the host's LAN. A group (a project)
// opens destinations with SetEgress, or closes egress altogether.
//
// Nothing comes in: only replies reach an instance from outside. IPv4 only.
//
// Lifecycle: Open (creates or adopts the bridge and rewrites the tables
// from the state dir), then Attach and Detach around each namespace's
// life, SetEgress whenever a group's policy changes, Reconcile once the
// caller knows which instances still live; Close leaves the kernel state
// for the next Open to adopt, Remove tears it all down. A Network is safe
// for concurrent use.
package netns

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Config configures a Network. Its zero value works but for StateDir.
type Config struct {
	// Bridge is the Linux bridge instances attach to. If empty, "slipway0".
	Bridge string
	// Prefix is the instances' IPv4 range; the first address is the
	// bridge's (the gateway). If zero, the prefix of a previous run (from
	// StateDir) is kept; else the first of 10.88.0.0/16, 10.89.0.0/16,
	// 10.90.0.0/16, 172.29.0.0/16, 172.30.0.0/16, 172.31.0.0/16,
	// 10.91.0.0/16 … 10.254.0.0/16 that overlaps no route of the host.
	Prefix netip.Prefix
	// Table is the name of the nftables tables (families inet and bridge)
	// Slipway owns. If empty, "slipway".
	Table string
	// StateDir holds the address leases and the groups' egress (a small
	// JSON file, written before the kernel is changed), so a restarted
	// server adopts them. Required.
	StateDir string
	// GatewayPorts are TCP ports on the gateway address that instances
	// may reach (Slipway's DNS is always allowed on 53 udp+tcp). If
	// empty, none.
	GatewayPorts []uint16
	// Redirects sends instances' TCP to the gateway on a port (the key) to
	// another port of the gateway (the value), which they may then reach:
	// for a service that must answer instances on a port that a wildcard
	// listener of the host already holds (the router on :80). If empty,
	// none.
	Redirects map[uint16]uint16
	// Log receives operational messages. If nil, slog.Default().
	Log *slog.Logger
}

// ErrClosed is returned by a Network's methods after Close or Remove.
var ErrClosed = errors.New("netns: network closed")

// Network is the instances' network: a bridge, leases and the policy.
type Network struct {
	cfg     Config
	log     *slog.Logger
	bridge  string
	prefix  netip.Prefix
	gateway netip.Addr
	path    string // of the state file
	inet    *nftables.Table
	bridgeT *nftables.Table

	mu     sync.Mutex
	st     *state
	brIdx  int
	closed bool
}

var tableRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_-]{0,63}$`)

// validate checks cfg and fills in its defaults.
func (cfg Config) validate() (Config, error) {
	if cfg.Bridge == "" {
		cfg.Bridge = "slipway0"
	}
	if cfg.Table == "" {
		cfg.Table = "slipway"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	switch {
	case cfg.StateDir == "":
		return cfg, errors.New("netns: Config.StateDir is required")
	case len(cfg.Bridge) > unix.IFNAMSIZ-1 || strings.ContainsAny(cfg.Bridge, "/ \t\n:"):
		return cfg, fmt.Errorf("netns: bridge name %q: want at most 15 bytes, no '/', ':' or spaces", cfg.Bridge)
	case !tableRE.MatchString(cfg.Table):
		return cfg, fmt.Errorf("netns: table name %q: want a letter, then letters, digits, '_' or '-'", cfg.Table)
	}
	if cfg.Prefix.IsValid() {
		if !cfg.Prefix.Addr().Is4() || cfg.Prefix.Bits() > 30 || cfg.Prefix.Bits() < 8 {
			return cfg, fmt.Errorf("netns: prefix %s: want an IPv4 range from /8 to /30", cfg.Prefix)
		}
		cfg.Prefix = cfg.Prefix.Masked()
	}
	return cfg, nil
}

// Open creates or adopts the bridge (address = gateway, up), enables IPv4
// forwarding, reads the host's addresses and LAN, and writes the whole
// nftables tables in one transaction (replacing what a previous run left)
// from the leases and egress policies in StateDir. Groups' egress is
// persisted there by SetEgress, so instances keep their policy across a
// restart without waiting for the caller; calling SetEgress again for
// every group at start is harmless.
func Open(cfg Config) (*Network, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	n := &Network{
		cfg: cfg, log: cfg.Log, bridge: cfg.Bridge, path: statePath(cfg.StateDir),
		inet:    &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet},
		bridgeT: &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyBridge},
	}
	if n.st, err = loadState(n.path); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}

	br, err := netlink.LinkByName(n.bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		br = nil
	case err != nil:
		return nil, fmt.Errorf("netns: looking up bridge %s: %w", n.bridge, err)
	case br.Type() != "bridge":
		return nil, fmt.Errorf("netns: %s exists and is a %s, not a bridge", n.bridge, br.Type())
	}
	skip := 0
	if br != nil {
		skip = br.Attrs().Index
	}
	routes, err := hostRoutes(skip)
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}

	n.prefix = cfg.Prefix
	if !n.prefix.IsValid() {
		n.prefix = n.st.Prefix
	}
	if !n.prefix.IsValid() && br != nil {
		n.prefix = bridgePrefix(br)
	}
	if !n.prefix.IsValid() {
		if n.prefix, err = choosePrefix(routes); err != nil {
			return nil, fmt.Errorf("netns: %w", err)
		}
	}
	n.gateway = n.prefix.Addr().Next()
	if n.st.Prefix.IsValid() && n.st.Prefix != n.prefix {
		n.log.Warn("the instances' network changed; leases of the old one are dropped", "old", n.st.Prefix.String(), "new", n.prefix.String())
	}
	n.st.Prefix = n.prefix
	for id, l := range n.st.Leases {
		if !n.usable(l.Addr) {
			delete(n.st.Leases, id)
		}
	}
	if err := n.st.save(n.path); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}

	adopted := br != nil
	if br, err = n.ensureBridge(br); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	n.brIdx = br.Attrs().Index
	if err := enableForwarding(); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	host, err := hostDenied(routes)
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	deny := merge(append(append(slices.Clone(reserved), n.prefix), host...))
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	if err := n.writeAll(c, deny); err != nil {
		return nil, fmt.Errorf("netns: writing nftables tables %s: %w", n.cfg.Table, err)
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("netns: writing nftables tables %s: %w", n.cfg.Table, err)
	}
	n.warnForwardDrop(c)
	n.log.Info("instance network open", "bridge", n.bridge, "adopted", adopted, "prefix", n.prefix.String(),
		"gateway", n.gateway.String(), "table", n.cfg.Table, "leases", len(n.st.Leases), "denied_ranges", len(deny))
	return n, nil
}

// bridgePrefix is the prefix of the bridge's first IPv4 address, if any.
func bridgePrefix(br netlink.Link) netip.Prefix {
	addrs, err := dump(func() ([]netlink.Addr, error) { return netlink.AddrList(br, netlink.FAMILY_V4) })
	if err != nil || len(addrs) == 0 {
		return netip.Prefix{}
	}
	ip, _ := netip.AddrFromSlice(addrs[0].IP)
	ones, _ := addrs[0].Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones).Masked()
}

// ensureBridge creates the bridge if br is nil, gives it the gateway's
// address (and no other IPv4 address) and sets it up.
func (n *Network) ensureBridge(br netlink.Link) (netlink.Link, error) {
	if br == nil {
		la := netlink.NewLinkAttrs()
		la.Name = n.bridge
		la.HardwareAddr = bridgeMAC(n.bridge)
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return nil, fmt.Errorf("creating bridge %s: %w", n.bridge, err)
		}
		var err error
		if br, err = netlink.LinkByName(n.bridge); err != nil {
			return nil, fmt.Errorf("creating bridge %s: %w", n.bridge, err)
		}
	}
	want := netip.PrefixFrom(n.gateway, n.prefix.Bits())
	addrs, err := dump(func() ([]netlink.Addr, error) { return netlink.AddrList(br, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", n.bridge, err)
	}
	have := false
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if netip.PrefixFrom(ip.Unmap(), ones) == want {
			have = true
			continue
		}
		if err := netlink.AddrDel(br, &a); err != nil {
			return nil, fmt.Errorf("bridge %s: removing old address %s: %w", n.bridge, a.IPNet, err)
		}
	}
	if !have {
		addr := &netlink.Addr{IPNet: ipnet(want)}
		if err := netlink.AddrAdd(br, addr); err != nil {
			return nil, fmt.Errorf("bridge %s: adding %s: %w", n.bridge, want, err)
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", n.bridge, err)
	}
	return br, nil
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// usable reports whether a may be leased: inside the prefix, not the
// network, gateway or broadcast address.
func (n *Network) usable(a netip.Addr) bool {
	if !a.Is4() || !n.prefix.Contains(a) || a == n.prefix.Addr() || a == n.gateway {
		return false
	}
	return u32(a) != u32(n.prefix.Addr())|uint32(uint64(1)<<(32-n.prefix.Bits())-1)
}

// Gateway is the bridge's address: the instances' default route and
// resolver.
func (n *Network) Gateway() netip.Addr { return n.gateway }

// Prefix is the instances' IPv4 range.
func (n *Network) Prefix() netip.Prefix { return n.prefix }

// Close releases the Network and leaves the kernel state (bridge, veths,
// tables) and the leases for the next Open to adopt.
func (n *Network) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	return nil
}

// Remove tears everything down: instances' veths on the bridge, the
// bridge, both tables and the leases. IPv4 forwarding is left on (other
// software may rely on it). For tests and uninstall.
func (n *Network) Remove() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	var errs []error
	links, err := dump(netlink.LinkList)
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		if l.Type() == "veth" && l.Attrs().MasterIndex == n.brIdx && n.brIdx != 0 {
			if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("removing %s: %w", l.Attrs().Name, err))
			}
		}
	}
	for _, l := range n.st.Leases {
		if err := n.delVeth(l.Veth); err != nil {
			errs = append(errs, err)
		}
	}
	if br, err := netlink.LinkByName(n.bridge); err == nil {
		if err := netlink.LinkDel(br); err != nil {
			errs = append(errs, fmt.Errorf("removing bridge %s: %w", n.bridge, err))
		}
	}
	c, err := nftables.New()
	if err == nil {
		for _, t := range []*nftables.Table{n.inet, n.bridgeT} {
			c.AddTable(t) // so that deleting it cannot fail for its absence
			c.DelTable(t)
		}
		err = c.Flush()
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("removing nftables tables %s: %w", n.cfg.Table, err))
	}
	if err := os.Remove(n.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

package netns

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Lease is an instance's place on the network.
type Lease struct {
	ID, Group string
	Addr      netip.Addr   // the instance's address (eth0)
	Gateway   netip.Addr   // its default route
	DNS       []netip.Addr // the resolvers its resolv.conf should name: the gateway
}

// vethPrefix starts the name of every host-side veth this package makes.
const vethPrefix = "sw"

var plainID = regexp.MustCompile(`^[a-z0-9-]{1,13}$`)

// vethName names the host side of id's veth: "sw" + id when id is a short
// plain id (Slipway's are 12 characters), else "sw" + 12 hex digits of
// its hash, so that it fits the kernel's 15 bytes and stays unique.
func vethName(id string) string {
	if plainID.MatchString(id) {
		return vethPrefix + id
	}
	sum := sha256.Sum256([]byte(id))
	return vethPrefix + hex.EncodeToString(sum[:6])
}

func (n *Network) leaseOf(id string, l lease) Lease {
	return Lease{ID: id, Group: l.Group, Addr: l.Addr, Gateway: n.gateway, DNS: []netip.Addr{n.gateway}}
}

// Attach wires the namespace at nsPath for instance id of group (a
// project id; may be empty, then only the default policy applies): a veth
// pair whose host side (see vethName) is a port of the bridge with
// isolation on, the peer moved into the namespace as eth0 with a leased
// address, lo and eth0 up, a default route via the gateway; the address
// is added to the group's map entry and the port's source set in
// nftables. The lease is written before the kernel is changed. Attach is
// idempotent for an id: a retry (after a failure or a crash) returns the
// same lease and repairs what is missing.
func (n *Network) Attach(ctx context.Context, id, group, nsPath string) (Lease, error) {
	if id == "" || nsPath == "" {
		return Lease{}, errors.New("netns: attach: empty id or namespace path")
	}
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return Lease{}, ErrClosed
	}
	l, had := n.st.Leases[id]
	prev := l
	if !had || l.Group != group {
		if !had {
			addr, err := n.allocate()
			if err != nil {
				return Lease{}, fmt.Errorf("netns: attaching %s: %w", id, err)
			}
			l = lease{Addr: addr, Veth: vethName(id)}
			for other, o := range n.st.Leases {
				if o.Veth == l.Veth {
					return Lease{}, fmt.Errorf("netns: attaching %s: its interface name %s is taken by %s", id, l.Veth, other)
				}
			}
			n.st.Last = addr
		}
		l.Group = group
		n.st.Leases[id] = l
		if err := n.st.save(n.path); err != nil {
			return Lease{}, fmt.Errorf("netns: attaching %s: %w", id, err)
		}
	}
	if err := n.wire(l, nsPath); err != nil {
		return Lease{}, fmt.Errorf("netns: attaching %s: %w", id, err)
	}
	if err := n.addElems(l, had && prev.Group != "" && prev.Group != l.Group); err != nil {
		return Lease{}, fmt.Errorf("netns: attaching %s: %w", id, err)
	}
	return n.leaseOf(id, l), nil
}

// Claim hands the lease of a namespace attached ahead (as id from) to
// instance id of group: the namespace keeps its veth, address and route;
// the lease is renamed and its address joins the group's map entry. It
// is the whole network setup of a start that finds a namespace wired
// ahead: one state write and one nftables transaction. The lease is
// renamed on disk before the kernel is changed; a retry after a failure
// (the lease already under id) only repairs the elements.
func (n *Network) Claim(ctx context.Context, from, id, group string) (Lease, error) {
	if from == "" || id == "" {
		return Lease{}, errors.New("netns: claim: empty id")
	}
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return Lease{}, ErrClosed
	}
	l, ok := n.st.Leases[from]
	if !ok {
		l, ok = n.st.Leases[id]
		if !ok || l.Group != group {
			return Lease{}, fmt.Errorf("netns: claiming %s for %s: no such lease", from, id)
		}
		// A retry: renamed already.
		if err := n.addElems(l, false); err != nil {
			return Lease{}, fmt.Errorf("netns: claiming %s for %s: %w", from, id, err)
		}
		return n.leaseOf(id, l), nil
	}
	if _, taken := n.st.Leases[id]; taken {
		return Lease{}, fmt.Errorf("netns: claiming %s for %s: %s has a lease already", from, id, id)
	}
	prev := l.Group
	l.Group = group
	delete(n.st.Leases, from)
	n.st.Leases[id] = l
	if err := n.st.save(n.path); err != nil {
		return Lease{}, fmt.Errorf("netns: claiming %s for %s: %w", from, id, err)
	}
	if err := n.addElems(l, prev != "" && prev != group); err != nil {
		return Lease{}, fmt.Errorf("netns: claiming %s for %s: %w", from, id, err)
	}
	return n.leaseOf(id, l), nil
}

// allocate returns the next free address after the last one leased,
// wrapping around the prefix.
func (n *Network) allocate() (netip.Addr, error) {
	used := make(map[netip.Addr]bool, len(n.st.Leases))
	for _, l := range n.st.Leases {
		used[l.Addr] = true
	}
	first := u32(n.gateway) + 1
	last := u32(n.prefix.Addr()) | uint32(uint64(1)<<(32-n.prefix.Bits())-1) - 1
	if last < first {
		return netip.Addr{}, errors.New("the instances' network has no room")
	}
	size := last - first + 1
	start := first
	if n.st.Last.IsValid() && n.usable(n.st.Last) {
		start = u32(n.st.Last) + 1
	}
	for i := uint32(0); i < size; i++ {
		a := start + i
		if a > last {
			a = first + (a - last - 1)
		}
		if addr := addr4(a); !used[addr] {
			return addr, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("the instances' network %s is full (%d leases)", n.prefix, len(n.st.Leases))
}

// wire makes the kernel match lease l for the namespace at nsPath.
func (n *Network) wire(l lease, nsPath string) error {
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("opening namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	in, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("entering namespace %s: %w", nsPath, err)
	}
	defer in.Close()

	host, err := netlink.LinkByName(l.Veth)
	if err != nil && !isNotFound(err) {
		return err
	}
	var peer netlink.Link
	if host != nil {
		// A retry: keep the pair if it is the one in this namespace.
		peer, err = in.LinkByName("eth0")
		if err != nil || host.Type() != "veth" || peer.Type() != "veth" ||
			host.Attrs().ParentIndex != peer.Attrs().Index || peer.Attrs().ParentIndex != host.Attrs().Index {
			if err := netlink.LinkDel(host); err != nil && !isNotFound(err) {
				return fmt.Errorf("removing stale %s: %w", l.Veth, err)
			}
			host, peer = nil, nil
		}
	}
	if host == nil {
		la := netlink.NewLinkAttrs()
		la.Name = l.Veth
		v := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("creating veth %s: %w", l.Veth, err)
		}
		if host, err = netlink.LinkByName(l.Veth); err != nil {
			return fmt.Errorf("creating veth %s: %w", l.Veth, err)
		}
		if peer, err = in.LinkByName("eth0"); err != nil {
			return fmt.Errorf("creating veth %s: its peer: %w", l.Veth, err)
		}
	}
	if host.Attrs().MasterIndex != n.brIdx {
		if err := netlink.LinkSetMasterByIndex(host, n.brIdx); err != nil {
			return fmt.Errorf("putting %s on %s: %w", l.Veth, n.bridge, err)
		}
	}
	if err := netlink.LinkSetIsolated(host, true); err != nil {
		return fmt.Errorf("isolating %s: %w", l.Veth, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("setting %s up: %w", l.Veth, err)
	}

	if lo, err := in.LinkByName("lo"); err != nil {
		return fmt.Errorf("namespace's lo: %w", err)
	} else if err := in.LinkSetUp(lo); err != nil {
		return fmt.Errorf("setting lo up: %w", err)
	}
	addr := &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(l.Addr, n.prefix.Bits()))}
	if err := in.AddrReplace(peer, addr); err != nil {
		return fmt.Errorf("addressing eth0: %w", err)
	}
	if err := in.LinkSetUp(peer); err != nil {
		return fmt.Errorf("setting eth0 up: %w", err)
	}
	route := &netlink.Route{LinkIndex: peer.Attrs().Index, Gw: n.gateway.AsSlice(), Scope: netlink.SCOPE_UNIVERSE}
	if err := in.RouteReplace(route); err != nil {
		return fmt.Errorf("default route via %s: %w", n.gateway, err)
	}
	return nil
}

// addElems adds l's elements (the groups map and the sources set) in one
// transaction, with its group's chain if the group has none yet. When
// replace is set (the lease changed group), the map's old element is
// deleted in the same transaction.
func (n *Network) addElems(l lease, replace bool) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	if replace {
		if err := c.SetDeleteElements(n.groupsMap(), []nftables.SetElement{{Key: l.Addr.AsSlice()}}); err != nil {
			return err
		}
	}
	if l.Group != "" {
		c.AddChain(n.groupChainOf(l.Group)) // no-op if it exists
		if err := c.SetAddElements(n.groupsMap(), []nftables.SetElement{groupElem(l)}); err != nil {
			return err
		}
	}
	if err := c.SetAddElements(n.sourcesSet(), []nftables.SetElement{sourceElem(l)}); err != nil {
		return err
	}
	if err := c.SetAddElements(n.portsSet(), []nftables.SetElement{portElem(l)}); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		if !replace && errors.Is(err, unix.EEXIST) {
			// The address is in the map with another verdict (the lease
			// changed group before a crash): replace it.
			return n.addElems(l, true)
		}
		return fmt.Errorf("adding to nftables: %w", err)
	}
	return nil
}

// delElems removes l's elements in one transaction: each is added first
// (a no-op when present) so that deleting it cannot fail for its absence.
func (n *Network) delElems(l lease) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	if l.Group != "" {
		c.AddChain(n.groupChainOf(l.Group))
		gm := n.groupsMap()
		if err := c.SetAddElements(gm, []nftables.SetElement{groupElem(l)}); err != nil {
			return err
		}
		if err := c.SetDeleteElements(gm, []nftables.SetElement{{Key: l.Addr.AsSlice()}}); err != nil {
			return err
		}
	}
	for _, x := range []struct {
		set *nftables.Set
		el  nftables.SetElement
	}{{n.sourcesSet(), sourceElem(l)}, {n.portsSet(), portElem(l)}} {
		if err := c.SetAddElements(x.set, []nftables.SetElement{x.el}); err != nil {
			return err
		}
		if err := c.SetDeleteElements(x.set, []nftables.SetElement{x.el}); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("removing from nftables: %w", err)
	}
	return nil
}

// Detach removes id's veth (if the namespace is gone, the kernel already
// did), its nftables elements and then its lease. Idempotent.
func (n *Network) Detach(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	return n.release(id)
}

// release is Detach under n.mu.
func (n *Network) release(id string) error {
	l, ok := n.st.Leases[id]
	veth := vethName(id)
	if ok {
		veth = l.Veth
	}
	if err := n.delVeth(veth); err != nil {
		return fmt.Errorf("netns: detaching %s: %w", id, err)
	}
	if !ok {
		return nil
	}
	if err := n.delElems(l); err != nil {
		return fmt.Errorf("netns: detaching %s: %w", id, err)
	}
	delete(n.st.Leases, id)
	if err := n.st.save(n.path); err != nil {
		return fmt.Errorf("netns: detaching %s: %w", id, err)
	}
	return nil
}

// delVeth deletes the host-side veth named name, if it exists (deleting
// one side of a pair deletes both).
func (n *Network) delVeth(name string) error {
	link, err := netlink.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if link.Type() != "veth" {
		return fmt.Errorf("%s is a %s, not a veth of ours", name, link.Type())
	}
	if err := netlink.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("removing %s: %w", name, err)
	}
	return nil
}

// Reconcile keeps the leases (and veths, nftables elements) of the ids in
// live and removes every other one Slipway left behind: leases and their
// veths, veths named with its prefix on the bridge, and map and set
// elements (rewritten from the leases in one transaction).
func (n *Network) Reconcile(ctx context.Context, live []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	keep := make(map[string]bool, len(live))
	for _, id := range live {
		keep[id] = true
	}
	var errs []error
	removed := 0
	for id, l := range n.st.Leases {
		if keep[id] {
			continue
		}
		if err := n.delVeth(l.Veth); err != nil {
			errs = append(errs, fmt.Errorf("lease of %s: %w", id, err))
			continue
		}
		delete(n.st.Leases, id)
		removed++
	}
	if err := n.st.save(n.path); err != nil {
		return fmt.Errorf("netns: reconciling: %w", err)
	}
	ours := make(map[string]bool, len(n.st.Leases))
	for _, l := range n.st.Leases {
		ours[l.Veth] = true
	}
	links, err := dump(netlink.LinkList)
	if err != nil {
		errs = append(errs, err)
	}
	for _, link := range links {
		a := link.Attrs()
		if link.Type() != "veth" || a.MasterIndex != n.brIdx || ours[a.Name] || len(a.Name) < len(vethPrefix) || a.Name[:len(vethPrefix)] != vethPrefix {
			continue
		}
		if err := netlink.LinkDel(link); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("removing %s: %w", a.Name, err))
			continue
		}
		removed++
	}
	if err := n.rewriteElems(); err != nil {
		errs = append(errs, err)
	}
	if removed > 0 {
		n.log.Info("removed the network of instances that are gone", "count", removed, "kept", len(n.st.Leases))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netns: reconciling: %w", err)
	}
	return nil
}

// rewriteElems replaces the groups map and the sources set with the
// leases' elements, in one transaction.
func (n *Network) rewriteElems() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	gm, ss, ps := n.groupsMap(), n.sourcesSet(), n.portsSet()
	c.FlushSet(gm)
	c.FlushSet(ss)
	c.FlushSet(ps)
	var gel, sel, pel []nftables.SetElement
	for _, l := range n.st.Leases {
		if l.Group != "" {
			c.AddChain(n.groupChainOf(l.Group))
			gel = append(gel, groupElem(l))
		}
		sel = append(sel, sourceElem(l))
		pel = append(pel, portElem(l))
	}
	for _, x := range []struct {
		set *nftables.Set
		els []nftables.SetElement
	}{{gm, gel}, {ss, sel}, {ps, pel}} {
		if len(x.els) == 0 {
			continue
		}
		if err := c.SetAddElements(x.set, x.els); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("rewriting nftables elements: %w", err)
	}
	return nil
}

// SetEgress replaces a group's egress policy and applies it at once (one
// transaction) to its running instances: new connections follow it;
// connections already established carry on. The policy is persisted in
// StateDir first, so Open restores it; a zero Egress is the default.
func (n *Network) SetEgress(group string, p Egress) error {
	if group == "" {
		return errors.New("netns: set egress: empty group")
	}
	p, err := p.validate()
	if err != nil {
		return fmt.Errorf("netns: set egress of %s: %w", group, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if p.equal(n.st.Egress[group]) {
		// The kernel holds it already: Open wrote the tables from this
		// state, and every change since went through here. (The server
		// sets every project's policy at start.)
		return nil
	}
	if p.isDefault() {
		delete(n.st.Egress, group)
	} else {
		n.st.Egress[group] = p
	}
	if err := n.st.save(n.path); err != nil {
		return fmt.Errorf("netns: set egress of %s: %w", group, err)
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("netns: set egress of %s: %w", group, err)
	}
	if p.isDefault() && !n.hasLeases(group) {
		// Nothing refers to the group's chain: remove it, if it exists.
		ch := c.AddChain(n.groupChainOf(group))
		c.DelChain(ch)
	} else {
		n.queueGroup(c, group, p)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("netns: set egress of %s: %w", group, err)
	}
	return nil
}

func (n *Network) hasLeases(group string) bool {
	for _, l := range n.st.Leases {
		if l.Group == group {
			return true
		}
	}
	return false
}

package netns

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// Census counts what the network holds for instances, as the kernel and
// the state file see it: after every instance is detached, all of it is
// zero. Tests use it to find leaks; it is cheap enough for a metric.
type Census struct {
	Leases      int // leases in the state file
	Veths       int // Slipway's veths on the bridge
	GroupElems  int // elements of the address → group map
	SourceElems int // elements of the (port, address) anti-spoofing set
	PortElems   int // elements of the isolated-ports set
}

// Census reads the counts.
func (n *Network) Census() (Census, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return Census{}, ErrClosed
	}
	c := Census{Leases: len(n.st.Leases)}
	links, err := dump(netlink.LinkList)
	if err != nil {
		return Census{}, fmt.Errorf("netns: census: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		if l.Type() == "veth" && strings.HasPrefix(a.Name, vethPrefix) && a.MasterIndex == n.brIdx {
			c.Veths++
		}
	}
	conn, err := nftables.New()
	if err != nil {
		return Census{}, fmt.Errorf("netns: census: %w", err)
	}
	for _, s := range []struct {
		set *nftables.Set
		n   *int
	}{{n.groupsMap(), &c.GroupElems}, {n.sourcesSet(), &c.SourceElems}, {n.portsSet(), &c.PortElems}} {
		set, err := conn.GetSetByName(s.set.Table, s.set.Name)
		if err != nil {
			return Census{}, fmt.Errorf("netns: census: set %s: %w", s.set.Name, err)
		}
		els, err := conn.GetSetElements(set)
		if err != nil {
			return Census{}, fmt.Errorf("netns: census: elements of %s: %w", s.set.Name, err)
		}
		*s.n = len(els)
	}
	return c, nil
}

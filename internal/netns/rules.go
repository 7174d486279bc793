package netns

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"regexp"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The nftables layout. Two tables of Slipway's own, both named
// Config.Table, written whole by Open in one transaction and changed
// afterwards only by element and group-chain updates, each one
// transaction:
//
//	table inet <T>
//	  set deny           ipv4_addr, interval: host addresses and LAN, the
//	                     instance prefix, reserved and private ranges
//	  set gateway_ports  inet_service: Config.GatewayPorts
//	  map groups         ipv4_addr : verdict: instance address → jump grp_<group>
//	  chain refuse       tcp → reset; else icmpx admin-prohibited
//	  chain grp_<group>  the group's allows (accept), or refuse for None
//	  chain forward      hook forward, policy accept; only packets to or
//	                     from the bridge are matched (see forwardRules)
//	  chain input        hook input, policy accept; from the bridge only
//	                     established, DNS and gateway ports to the gateway
//	  chain postrouting  hook postrouting (nat): masquerade the prefix
//	                     leaving by any link but the bridge
//	table bridge <T>
//	  set sources        ifname . ipv4_addr: each instance's veth and address
//	  set ports          ifname: each instance's veth
//	  chain ports        hook prerouting: IPv4 and ARP from an instance's
//	                     port must carry its own address; all else from
//	                     such a port is dropped (no spoofing another
//	                     instance's address, so another group's policy).
//	                     (A set of ports, not meta ibrname: bridge meta
//	                     keys are a module some kernels lack.)
const (
	chainForward = "forward"
	chainInput   = "input"
	chainPost    = "postrouting"
	chainPre     = "prerouting"
	chainRefuse  = "refuse"
	chainPorts   = "ports"

	setDeny    = "deny"
	setGwPorts = "gateway_ports"
	mapGroups  = "groups"
	setSources = "sources"
	setPorts   = "ports"
)

func (n *Network) denySet() *nftables.Set {
	return &nftables.Set{Table: n.inet, Name: setDeny, KeyType: nftables.TypeIPAddr, Interval: true}
}

func (n *Network) gwPortsSet() *nftables.Set {
	return &nftables.Set{Table: n.inet, Name: setGwPorts, KeyType: nftables.TypeInetService}
}

func (n *Network) groupsMap() *nftables.Set {
	return &nftables.Set{Table: n.inet, Name: mapGroups, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeVerdict, IsMap: true}
}

func (n *Network) sourcesSet() *nftables.Set {
	return &nftables.Set{Table: n.bridgeT, Name: setSources, Concatenation: true,
		KeyType: nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)}
}

func (n *Network) portsSet() *nftables.Set {
	return &nftables.Set{Table: n.bridgeT, Name: setPorts, KeyType: nftables.TypeIFName}
}

var safeGroup = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// groupChain names a group's chain: grp_<group> for plain ids (project
// ids are), grp_<hash> otherwise.
func groupChain(group string) string {
	if safeGroup.MatchString(group) {
		return "grp_" + group
	}
	sum := sha256.Sum256([]byte(group))
	return "grp_" + hex.EncodeToString(sum[:8])
}

func (n *Network) groupChainOf(group string) *nftables.Chain {
	return &nftables.Chain{Table: n.inet, Name: groupChain(group)}
}

// writeAll queues the whole ruleset: both tables are created if missing,
// deleted and written again, so that the transaction replaces whatever a
// previous run left, atomically. Conntrack entries survive it, so
// established connections of running instances carry on.
func (n *Network) writeAll(c *nftables.Conn, deny []span) error {
	for _, t := range []*nftables.Table{n.inet, n.bridgeT} {
		c.AddTable(t)
		c.DelTable(t)
		c.AddTable(t)
	}

	ds := n.denySet()
	if err := c.AddSet(ds, intervalElems(deny)); err != nil {
		return err
	}
	gp := n.gwPortsSet()
	var ports []nftables.SetElement
	seen := map[uint16]bool{}
	for _, p := range n.cfg.GatewayPorts {
		if !seen[p] {
			seen[p] = true
			ports = append(ports, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
		}
	}
	for _, p := range n.cfg.Redirects { // a redirect's target is reachable
		if !seen[p] {
			seen[p] = true
			ports = append(ports, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
		}
	}
	if err := c.AddSet(gp, ports); err != nil {
		return err
	}

	refuse := c.AddChain(&nftables.Chain{Table: n.inet, Name: chainRefuse})
	c.AddRule(&nftables.Rule{Table: n.inet, Chain: refuse, Exprs: cat(l4proto(unix.IPPROTO_TCP), &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})})
	c.AddRule(&nftables.Rule{Table: n.inet, Chain: refuse, Exprs: cat(&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED})})

	// Group chains must exist before the map's elements name them.
	groups := map[string]bool{}
	for g := range n.st.Egress {
		groups[g] = true
	}
	for _, l := range n.st.Leases {
		if l.Group != "" {
			groups[l.Group] = true
		}
	}
	for g := range groups {
		e, err := n.st.Egress[g].validate()
		if err != nil {
			n.log.Warn("a group's stored egress is unreadable; it gets the default", "group", g, "err", err)
			e = Egress{}
		}
		n.queueGroup(c, g, e)
	}
	gm := n.groupsMap()
	var gel []nftables.SetElement
	for _, l := range n.st.Leases {
		if l.Group != "" {
			gel = append(gel, groupElem(l))
		}
	}
	if err := c.AddSet(gm, gel); err != nil {
		return err
	}

	fwd := c.AddChain(&nftables.Chain{Table: n.inet, Name: chainForward, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyAccept)})
	for _, r := range n.forwardRules(ds, gm) {
		c.AddRule(&nftables.Rule{Table: n.inet, Chain: fwd, Exprs: r})
	}
	in := c.AddChain(&nftables.Chain{Table: n.inet, Name: chainInput, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyAccept)})
	for _, r := range n.inputRules(gp) {
		c.AddRule(&nftables.Rule{Table: n.inet, Chain: in, Exprs: r})
	}
	post := c.AddChain(&nftables.Chain{Table: n.inet, Name: chainPost, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: policy(nftables.ChainPolicyAccept)})
	c.AddRule(&nftables.Rule{Table: n.inet, Chain: post, Exprs: cat(
		ipv4(), saddrIn(n.prefix), oifname(n.bridge, expr.CmpOpNeq), &expr.Masq{})})
	if len(n.cfg.Redirects) > 0 {
		pre := c.AddChain(&nftables.Chain{Table: n.inet, Name: chainPre, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: policy(nftables.ChainPolicyAccept)})
		for _, r := range n.redirectRules() {
			c.AddRule(&nftables.Rule{Table: n.inet, Chain: pre, Exprs: r})
		}
	}

	// The bridge table: each port speaks only for its own address.
	ss, ps := n.sourcesSet(), n.portsSet()
	var sel, pel []nftables.SetElement
	for _, l := range n.st.Leases {
		sel = append(sel, sourceElem(l))
		pel = append(pel, portElem(l))
	}
	if err := c.AddSet(ss, sel); err != nil {
		return err
	}
	if err := c.AddSet(ps, pel); err != nil {
		return err
	}
	portsChain := c.AddChain(&nftables.Chain{Table: n.bridgeT, Name: chainPorts, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-200), Policy: policy(nftables.ChainPolicyAccept)})
	for _, r := range n.portRules(ss, ps) {
		c.AddRule(&nftables.Rule{Table: n.bridgeT, Chain: portsChain, Exprs: r})
	}
	return nil
}

// forwardRules: what is routed to or from the instances.
func (n *Network) forwardRules(deny, groups *nftables.Set) [][]expr.Any {
	b := n.bridge
	return [][]expr.Any{
		// To an instance: replies only. Another instance opening a
		// connection is refused; the world is dropped.
		cat(oifname(b, expr.CmpOpEq), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept)),
		cat(oifname(b, expr.CmpOpEq), iifname(b, expr.CmpOpEq), jumpTo(expr.VerdictGoto, chainRefuse)),
		cat(oifname(b, expr.CmpOpEq), verdict(expr.VerdictDrop)),
		// From an instance: replies, then its group's policy, then the
		// default: deny the host, its LAN and reserved ranges, accept
		// the rest (IPv4 only).
		cat(iifname(b, expr.CmpOpEq), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept)),
		cat(iifname(b, expr.CmpOpEq), ctState(expr.CtStateBitINVALID), verdict(expr.VerdictDrop)),
		cat(iifname(b, expr.CmpOpEq), ipv4(), loadSaddr(), &expr.Lookup{SourceRegister: 1, SetName: groups.Name, SetID: groups.ID, IsDestRegSet: true, DestRegister: 0}),
		cat(iifname(b, expr.CmpOpEq), ipv4(), loadDaddr(), &expr.Lookup{SourceRegister: 1, SetName: deny.Name, SetID: deny.ID}, jumpTo(expr.VerdictGoto, chainRefuse)),
		cat(iifname(b, expr.CmpOpEq), ipv4(), verdict(expr.VerdictAccept)),
		cat(iifname(b, expr.CmpOpEq), jumpTo(expr.VerdictGoto, chainRefuse)),
	}
}

// redirectRules: TCP from the bridge to the gateway on a redirected port
// goes to its target port on the gateway (the bridge's address).
func (n *Network) redirectRules() [][]expr.Any {
	gw := netip.PrefixFrom(n.gateway, 32)
	var out [][]expr.Any
	for from, to := range n.cfg.Redirects {
		out = append(out, cat(iifname(n.bridge, expr.CmpOpEq), ipv4(), daddrIn(gw), l4proto(unix.IPPROTO_TCP), dport(from),
			&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(to)},
			&expr.Redir{RegisterProtoMin: 1}))
	}
	return out
}

// inputRules: what instances may send to the host itself.
func (n *Network) inputRules(gwPorts *nftables.Set) [][]expr.Any {
	b, gw := n.bridge, netip.PrefixFrom(n.gateway, 32)
	return [][]expr.Any{
		cat(iifname(b, expr.CmpOpEq), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept)),
		cat(iifname(b, expr.CmpOpEq), ipv4(), daddrIn(gw), l4proto(unix.IPPROTO_UDP), dport(53), verdict(expr.VerdictAccept)),
		cat(iifname(b, expr.CmpOpEq), ipv4(), daddrIn(gw), l4proto(unix.IPPROTO_TCP), dport(53), verdict(expr.VerdictAccept)),
		cat(iifname(b, expr.CmpOpEq), ipv4(), daddrIn(gw), l4proto(unix.IPPROTO_TCP), loadDport(),
			&expr.Lookup{SourceRegister: 1, SetName: gwPorts.Name, SetID: gwPorts.ID}, verdict(expr.VerdictAccept)),
		cat(iifname(b, expr.CmpOpEq), jumpTo(expr.VerdictGoto, chainRefuse)),
	}
}

// portRules: the bridge family's check of source addresses per port.
func (n *Network) portRules(sources, ports *nftables.Set) [][]expr.Any {
	proto := func(p uint16) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p)}}
	}
	// iifname (16 bytes) into register 1, the address into register 2:
	// together the 20-byte key of sources.
	key := func(off uint32) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Payload{DestRegister: 2, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
			&expr.Lookup{SourceRegister: 1, SetName: sources.Name, SetID: sources.ID},
		}
	}
	return [][]expr.Any{
		cat(proto(unix.ETH_P_IP), key(12), verdict(expr.VerdictAccept)),  // ip saddr
		cat(proto(unix.ETH_P_ARP), key(14), verdict(expr.VerdictAccept)), // arp saddr ip
		cat(&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Lookup{SourceRegister: 1, SetName: ports.Name, SetID: ports.ID}, verdict(expr.VerdictDrop)),
	}
}

// queueGroup queues the group's chain: created if missing, flushed and
// filled with its policy, in the caller's transaction.
func (n *Network) queueGroup(c *nftables.Conn, group string, e Egress) {
	ch := c.AddChain(n.groupChainOf(group))
	c.FlushChain(ch)
	for _, r := range groupRules(e) {
		c.AddRule(&nftables.Rule{Table: n.inet, Chain: ch, Exprs: r})
	}
}

// groupRules: None refuses everything; otherwise each allow accepts its
// destination (and port, TCP and UDP), and what none matches returns to
// the forward chain and its default.
func groupRules(e Egress) [][]expr.Any {
	if e.None {
		return [][]expr.Any{cat(jumpTo(expr.VerdictGoto, chainRefuse))}
	}
	var out [][]expr.Any
	for _, a := range e.Allow {
		if a.Port == 0 {
			out = append(out, cat(daddrIn(a.Prefix), verdict(expr.VerdictAccept)))
			continue
		}
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			out = append(out, cat(daddrIn(a.Prefix), l4proto(proto), dport(a.Port), verdict(expr.VerdictAccept)))
		}
	}
	return out
}

func groupElem(l lease) nftables.SetElement {
	return nftables.SetElement{Key: l.Addr.AsSlice(), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: groupChain(l.Group)}}
}

func portElem(l lease) nftables.SetElement { return nftables.SetElement{Key: ifname(l.Veth)} }

func sourceElem(l lease) nftables.SetElement {
	return nftables.SetElement{Key: append(ifname(l.Veth), l.Addr.AsSlice()...)}
}

// intervalElems encodes spans for an interval set: each start, then the
// address after its end flagged as an interval end (none when the span
// reaches 255.255.255.255, as nft(8) does).
func intervalElems(ss []span) []nftables.SetElement {
	var out []nftables.SetElement
	for _, s := range ss {
		out = append(out, nftables.SetElement{Key: addr4(s.lo).AsSlice()})
		if s.hi != ^uint32(0) {
			out = append(out, nftables.SetElement{Key: addr4(s.hi + 1).AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

// Expression helpers, in nft's words.

func cat(parts ...any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		switch p := p.(type) {
		case []expr.Any:
			out = append(out, p...)
		case expr.Any:
			out = append(out, p)
		}
	}
	return out
}

func policy(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }

func ifname(s string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, s)
	return b
}

// iifname / oifname: meta iifname "<name>" (op: == or !=).
func iifname(name string, op expr.CmpOp) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: ifname(name)}}
}

func oifname(name string, op expr.CmpOp) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: ifname(name)}}
}

// ipv4: meta nfproto ipv4, the dependency nft adds before any ip match in
// an inet table.
func ipv4() []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}}}
}

// ctState: ct state & bits != 0.
func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

func loadSaddr() *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}

func loadDaddr() *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

func loadDport() *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

// saddrIn / daddrIn: ip saddr|daddr <prefix>.
func saddrIn(p netip.Prefix) []expr.Any { return addrIn(loadSaddr(), p) }
func daddrIn(p netip.Prefix) []expr.Any { return addrIn(loadDaddr(), p) }

func addrIn(load *expr.Payload, p netip.Prefix) []expr.Any {
	if p.Bits() == 0 {
		return nil // 0.0.0.0/0: any address
	}
	out := []expr.Any{load}
	if p.Bits() < 32 {
		mask := make([]byte, 4)
		m := ^uint32(0) << (32 - p.Bits())
		mask[0], mask[1], mask[2], mask[3] = byte(m>>24), byte(m>>16), byte(m>>8), byte(m)
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}})
	}
	return append(out, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()})
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

func dport(port uint16) []expr.Any {
	return []expr.Any{loadDport(), &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)}}
}

func verdict(k expr.VerdictKind) *expr.Verdict { return &expr.Verdict{Kind: k} }

func jumpTo(k expr.VerdictKind, chain string) *expr.Verdict {
	return &expr.Verdict{Kind: k, Chain: chain}
}

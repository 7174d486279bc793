package netns

import (
	"fmt"
	"log/slog"

	"github.com/google/nftables"
)

// forwardDroppers lists the base chains of other tables that drop
// forwarded packets by default ("table family name"), such as the FORWARD
// chain Docker sets to DROP (iptables-nft shows it as "ip filter
// FORWARD"). A packet must get through every base chain on its hook, so
// such a chain blocks the instances' egress whatever Slipway's own tables
// say; Slipway does not edit other programs' tables, so Open names the
// chain and the rule that lets its bridge through. Chains of legacy
// iptables (not nftables) are not seen.
func forwardDroppers(c *nftables.Conn, ours string) ([]string, error) {
	chains, err := c.ListChains()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name == ours || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward {
			continue
		}
		if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			out = append(out, fmt.Sprintf("%s %s %s", family(ch.Table.Family), ch.Table.Name, ch.Name))
		}
	}
	return out, nil
}

func family(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprint(int(f))
}

// warnForwardDrop logs, once per chain, a forward chain of another table
// that drops by default, with the fix for the common case (Docker).
func (n *Network) warnForwardDrop(c *nftables.Conn) {
	chains, err := forwardDroppers(c, n.cfg.Table)
	if err != nil {
		n.log.Debug("listing nftables chains", "err", err)
		return
	}
	for _, ch := range chains {
		n.log.Warn("another program's forward chain drops by default, which blocks egress through "+n.bridge+
			" whatever Slipway's tables allow; let the bridge through there, e.g. for Docker: iptables -I DOCKER-USER -i "+n.bridge+" -j ACCEPT; iptables -I DOCKER-USER -o "+n.bridge+" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
			slog.String("chain", ch))
	}
}

package nettest

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
)

// TestWorld builds a world for a bridge of its own and talks to it from
// the host, through RouteFromHost: its DNS answers and its HTTP servers,
// and nothing but the routed /32s reach it from the host.
func TestWorld(t *testing.T) {
	Require(t)
	suf := Suffix(t)
	bridge := "swtnbr" + suf
	IP(t, "link", "add", bridge, "type", "bridge")
	IPCleanup(t, "link", "del", bridge)
	IP(t, "addr", "add", "10.123.9.1/24", "dev", bridge)
	IP(t, "link", "set", bridge, "up")

	w := NewWorld(t, bridge)
	w.RouteFromHost(t, DNS.Addr())
	w.RouteFromHost(t, TestNet2)

	c := &dns.Client{Timeout: 2 * time.Second}
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  string // the A record, if any
	}{
		{WorldName, dns.TypeA, dns.RcodeSuccess, "198.51.100.1"},
		{"WORLD.test", dns.TypeA, dns.RcodeSuccess, "198.51.100.1"},
		{LANName, dns.TypeA, dns.RcodeSuccess, "10.77.0.5"},
		{WorldName, dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"nowhere.test", dns.TypeA, dns.RcodeNameError, ""},
	} {
		for _, network := range []string{"udp", "tcp"} {
			c.Net = network
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(tc.name), tc.qtype)
			resp, _, err := c.Exchange(m, DNS.String())
			if err != nil {
				t.Fatalf("%s %s over %s: %v", tc.name, dns.TypeToString[tc.qtype], network, err)
			}
			got := ""
			if len(resp.Answer) == 1 {
				if a, ok := resp.Answer[0].(*dns.A); ok {
					got = a.A.String()
				}
			}
			if resp.Rcode != tc.rcode || got != tc.want || len(resp.Answer) > 1 {
				t.Errorf("%s %s over %s: %s %v, want %s %q", tc.name, dns.TypeToString[tc.qtype], network,
					dns.RcodeToString[resp.Rcode], resp.Answer, dns.RcodeToString[tc.rcode], tc.want)
			}
		}
	}
	if !w.Asked("world.test") || !w.Asked("nowhere.test.") || w.Asked("else.test") {
		t.Errorf("Asked: %v %v %v", w.Asked("world.test"), w.Asked("nowhere.test."), w.Asked("else.test"))
	}

	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + TestNet2.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !w.SeesHost(string(body)) {
		t.Errorf("the world answered %q, want it to see %s", body, w.HostIP)
	}

	// Only the /32s: the rest of the world's addresses do not route
	// from the host into it.
	for _, a := range []netip.Addr{TestNet3, LAN, Metadata, TestNet2.Next()} {
		if rs, err := netlink.RouteGet(a.AsSlice()); err == nil && len(rs) > 0 && rs[0].Gw.Equal(w.Peer.AsSlice()) {
			t.Errorf("from the host, %s routes to the world", a)
		}
	}
}

// TestUnreachable: the rule makes the prefix unroutable from the host,
// a world's RouteFromHost comes before it, and undo removes it.
func TestUnreachable(t *testing.T) {
	Require(t)
	suf := Suffix(t)
	bridge := "swtnbr" + suf
	IP(t, "link", "add", bridge, "type", "bridge")
	IPCleanup(t, "link", "del", bridge)
	IP(t, "addr", "add", "10.123.10.1/24", "dev", bridge)
	IP(t, "link", "set", bridge, "up")

	undo, err := Unreachable(netip.PrefixFrom(DNS.Addr(), 32))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if undo != nil {
			undo()
		}
	}()
	if rs, err := netlink.RouteGet(DNS.Addr().AsSlice()); err == nil {
		t.Fatalf("with the unreachable rule, %s routes: %v", DNS.Addr(), rs)
	}
	t.Run("with a world", func(t *testing.T) {
		w := NewWorld(t, bridge)
		w.RouteFromHost(t, DNS.Addr())
		m := new(dns.Msg)
		m.SetQuestion("lan.test.", dns.TypeA)
		resp, err := dns.Exchange(m, DNS.String())
		if err != nil || len(resp.Answer) != 1 {
			t.Fatalf("through the world: %v %v", resp, err)
		}
	})
	// The world is gone: unroutable again, at once.
	if rs, err := netlink.RouteGet(DNS.Addr().AsSlice()); err == nil {
		t.Fatalf("after the world, %s routes: %v", DNS.Addr(), rs)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	undo = nil
	rules, err := netlink.RuleList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.Priority == unreachablePref && r.Dst != nil && r.Dst.IP.Equal(DNS.Addr().AsSlice()) {
			t.Fatalf("undo left the rule: %v", r)
		}
	}
}

// TestInNS: code run in a namespace sees that namespace's links only, and
// DialFrom reaches a listener there over its loopback.
func TestInNS(t *testing.T) {
	Require(t)
	name := "swt-nettest-" + Suffix(t)
	path := NewNS(t, name)
	IP(t, "-n", name, "link", "set", "lo", "up")
	ln := ListenIn(t, path, "tcp4", "127.0.0.1:0")
	go func() {
		c, err := ln.Accept()
		if err == nil {
			fmt.Fprint(c, "hello from the namespace\n")
			c.Close()
		}
	}()
	var links []string
	InNS(t, path, func() {
		ls, _ := netlink.LinkList()
		for _, l := range ls {
			links = append(links, l.Attrs().Name)
		}
	})
	if strings.Join(links, " ") != "lo" {
		t.Errorf("links in a new namespace: %v", links)
	}
	c, err := DialFrom(t, path, netip.MustParseAddrPort(ln.Addr().String()), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "hello from the namespace\n" {
		t.Fatalf("read %q %v", line, err)
	}
}

package netns

import (
	"net/netip"
	"testing"
)

func TestMergeAndIntervals(t *testing.T) {
	p := netip.MustParsePrefix
	got := merge([]netip.Prefix{p("10.0.0.0/8"), p("10.1.0.0/16"), p("224.0.0.0/4"), p("240.0.0.0/4"),
		p("192.0.2.0/24"), p("192.0.3.0/24"), p("0.0.0.0/8"), p("1.0.0.0/8"), p("192.0.2.7/32")})
	want := []span{
		{u32(netip.MustParseAddr("0.0.0.0")), u32(netip.MustParseAddr("1.255.255.255"))},
		{u32(netip.MustParseAddr("10.0.0.0")), u32(netip.MustParseAddr("10.255.255.255"))},
		{u32(netip.MustParseAddr("192.0.2.0")), u32(netip.MustParseAddr("192.0.3.255"))},
		{u32(netip.MustParseAddr("224.0.0.0")), ^uint32(0)},
	}
	if len(got) != len(want) {
		t.Fatalf("merge: %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("merge[%d]: %v, want %v", i, got[i], want[i])
		}
	}
	els := intervalElems(got)
	if len(els) != 7 { // the last span has no end: it reaches 255.255.255.255
		t.Fatalf("%d elements, want 7", len(els))
	}
	if !els[1].IntervalEnd || netip.AddrFrom4([4]byte(els[1].Key)) != netip.MustParseAddr("2.0.0.0") || els[6].IntervalEnd {
		t.Fatalf("elements %+v", els)
	}
}

func TestAllocate(t *testing.T) {
	n := &Network{prefix: netip.MustParsePrefix("10.9.0.0/29"), gateway: netip.MustParseAddr("10.9.0.1"),
		st: &state{Leases: map[string]lease{}}}
	var got []string
	for i := range 5 {
		a, err := n.allocate()
		if err != nil {
			t.Fatal(err)
		}
		n.st.Leases[string(rune('a'+i))] = lease{Addr: a}
		n.st.Last = a
		got = append(got, a.String())
	}
	if want := "[10.9.0.2 10.9.0.3 10.9.0.4 10.9.0.5 10.9.0.6]"; fmtList(got) != want {
		t.Fatalf("allocated %s, want %s", fmtList(got), want)
	}
	if _, err := n.allocate(); err == nil {
		t.Fatal("a full /29 leased a sixth address")
	}
	delete(n.st.Leases, "b") // 10.9.0.3 is freed: the next lease wraps around to it
	if a, err := n.allocate(); err != nil || a.String() != "10.9.0.3" {
		t.Fatalf("after a release: %s, %v", a, err)
	}
}

func fmtList(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}

func TestNames(t *testing.T) {
	if got := vethName("abcdefghijkl"); got != "swabcdefghijkl" {
		t.Errorf("vethName of a Slipway id: %s", got)
	}
	long := vethName("a-very-long-instance-id")
	if len(long) > 15 || long[:2] != "sw" || long == vethName("a-very-long-instance-id2") {
		t.Errorf("vethName of a long id: %s", long)
	}
	if groupChain("p1") != "grp_p1" || len(groupChain("a group/with spaces")) != len("grp_")+16 {
		t.Errorf("groupChain: %s %s", groupChain("p1"), groupChain("a group/with spaces"))
	}
	if _, err := (Config{StateDir: "x", Bridge: "sixteen-bytes-xx"}).validate(); err == nil {
		t.Error("a 16-byte bridge name was accepted")
	}
	if _, err := (Config{}).validate(); err == nil {
		t.Error("an empty StateDir was accepted")
	}
	if c, err := (Config{StateDir: "x"}).validate(); err != nil || c.Bridge != "slipway0" || c.Table != "slipway" || c.Log == nil {
		t.Errorf("defaults: %+v %v", c, err)
	}
}

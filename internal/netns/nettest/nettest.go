// Package nettest holds helpers for tests that change the real kernel's
// networking: a check that they may (Require), network namespaces to run
// code in, and World, a stand-in internet that packets from a test's
// bridge reach instead of the real one, so that no packet of a test ever
// leaves the machine.
//
// It is imported by tests only (internal/netns, the fault suite). It
// knows the kernel, not Slipway: a World is told the name of the bridge
// whose packets it takes.
package nettest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// Require skips t unless it runs as root with ip(8) from iproute2 at
// hand; with CI=true in the environment it fails instead of skipping.
func Require(t testing.TB) {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	if os.Geteuid() != 0 {
		if ci {
			t.Fatal("these tests need root (CI=true: not skipping)")
		}
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		if ci {
			t.Fatal("these tests need ip(8) from iproute2 (CI=true: not skipping)")
		}
		t.Skip("needs ip(8) from iproute2")
	}
}

// Suffix returns six random hex digits, to name a test's kernel objects.
func Suffix(t testing.TB) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// randInt returns a random number in [0, n).
func randInt(n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		panic(err)
	}
	return v.Int64()
}

// IP runs ip(8) with args and fails t if it fails.
func IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// IPCleanup runs ip(8) with args at t's cleanup, logging (not failing)
// if it fails.
func IPCleanup(t testing.TB, args ...string) {
	t.Cleanup(func() {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Logf("cleanup: ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	})
}

// InNS runs fn on an OS thread inside the network namespace at path.
// Sockets fn creates stay in that namespace when used from other threads.
func InNS(t testing.TB, path string, fn func()) {
	t.Helper()
	if err := inNS(path, fn); err != nil {
		t.Fatalf("in namespace %s: %v", path, err)
	}
}

func inNS(path string, fn func()) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		ns, err := vnetns.GetFromPath(path)
		if err != nil {
			done <- err
			return
		}
		defer ns.Close()
		if err := vnetns.Set(ns); err != nil {
			done <- err
			return
		}
		fn()
		if err := vnetns.Set(orig); err != nil {
			done <- err // the thread stays locked and dies with the goroutine
			return
		}
		runtime.UnlockOSThread()
		done <- nil
	}()
	return <-done
}

// ListenIn listens on addr inside the namespace at path; the listener is
// closed at cleanup.
func ListenIn(t testing.TB, path, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	InNS(t, path, func() { ln, err = net.Listen(network, addr) })
	if err != nil {
		t.Fatalf("listening on %s in %s: %v", addr, path, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// DialFrom dials TCP addr from the namespace at path.
func DialFrom(t testing.TB, path string, addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var err error
	InNS(t, path, func() { c, err = net.DialTimeout("tcp4", addr.String(), timeout) })
	return c, err
}

// NewNS creates a named network namespace (in /run/netns) and returns its
// path; it is deleted at cleanup.
func NewNS(t testing.TB, name string) string {
	t.Helper()
	path, err := MakeNS(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vnetns.DeleteNamed(name) })
	return path
}

// MakeNS creates a named network namespace (in /run/netns) and returns
// its path. The caller deletes it (vishvananda/netns.DeleteNamed).
func MakeNS(name string) (string, error) {
	errc := make(chan error)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := vnetns.NewNamed(name)
		if err != nil {
			errc <- err
			return
		}
		ns.Close()
		if err := vnetns.Set(orig); err != nil {
			errc <- err
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		return "", fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return "/run/netns/" + name, nil
}

// HostAddr is the IPv4 address of the link of the host's default route,
// and that route's gateway (invalid if it has none): the host on its LAN,
// and a neighbour there.
func HostAddr(t testing.TB) (addr, gateway netip.Addr, ok bool) {
	t.Helper()
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.IP.To4() != nil && !r.Dst.IP.Equal(net.IPv4zero) {
			continue
		}
		link, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			continue
		}
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
				gw, _ := netip.AddrFromSlice(r.Gw.To4())
				return ip, gw, true
			}
		}
	}
	return netip.Addr{}, netip.Addr{}, false
}

// Answer accepts connections on ln, until it is closed, and writes reply
// to each before closing it: a listener that says who was reached.
func Answer(ln net.Listener, reply string) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(reply))
			c.Close()
		}
	}()
}

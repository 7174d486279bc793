package microvm

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/linuxns"
)

// The namespace's own link to its guest: a /30 on the namespace's bridge,
// never routed beyond it (169.254/16 is denied on Slipway's bridge).
const (
	nsLinkAddr    = "169.254.77.1"
	guestLinkAddr = "169.254.77.2"
	nsBridge      = "br0"
	nsTap         = "tap0"
)

// netLease is the instance's place on Slipway's network, as the guest
// takes it over from the namespace's eth0.
type netLease struct {
	runtime.Lease
	bits int // the prefix length of eth0's address
}

// wireNetns creates the instance's network namespace at path, attaches it
// to the Network (if any), and then rewires it for a guest: a bridge
// (br0) joining eth0 with a tap device for QEMU, eth0's address and route
// removed (the guest takes them), and the namespace's link-local address
// on the bridge with a permanent neighbour entry for the guest's, so that
// a dial before the guest is up waits for it instead of failing on ARP.
// It returns the lease (nil without a Network) and the open tap.
func (d *Driver) wireNetns(ctx context.Context, id, group, path string) (*netLease, *os.File, error) {
	if err := linuxns.Create(path); err != nil {
		return nil, nil, err
	}
	var lease *netLease
	if d.cfg.Network != nil {
		l, err := d.cfg.Network.Attach(ctx, id, group, path)
		if err != nil {
			return nil, nil, fmt.Errorf("attaching the instance's network: %w", err)
		}
		lease = &netLease{Lease: l}
	}
	ns, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("opening network namespace: %w", err)
	}
	defer ns.Close()
	rc, err := ns.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var (
		tap  *os.File
		bits = 32
	)
	err = linuxns.Do(rc, func() error {
		var err error
		tap, bits, err = rewire(guestMAC(id))
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("wiring the namespace for the guest: %w", err)
	}
	if lease != nil {
		lease.bits = bits
	}
	return lease, tap, nil
}

// rewire runs in the namespace (see wireNetns) and returns the tap and
// the prefix length eth0's address had.
func rewire(mac string) (*os.File, int, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: nsBridge}}
	if err := netlink.LinkAdd(br); err != nil {
		return nil, 0, fmt.Errorf("creating %s: %w", nsBridge, err)
	}
	bits := 32
	if eth, err := netlink.LinkByName("eth0"); err == nil {
		addrs, err := netlink.AddrList(eth, unix.AF_INET)
		if err != nil {
			return nil, 0, err
		}
		for _, a := range addrs {
			bits, _ = a.Mask.Size()
			if err := netlink.AddrDel(eth, &a); err != nil {
				return nil, 0, fmt.Errorf("removing eth0's address: %w", err)
			}
		}
		if err := netlink.LinkSetMaster(eth, br); err != nil {
			return nil, 0, fmt.Errorf("bridging eth0: %w", err)
		}
	}
	tap, err := openTap(nsTap)
	if err != nil {
		return nil, 0, err
	}
	t, err := netlink.LinkByName(nsTap)
	if err == nil {
		err = netlink.LinkSetMaster(t, br)
	}
	if err == nil {
		err = netlink.LinkSetUp(t)
	}
	if err != nil {
		tap.Close()
		return nil, 0, fmt.Errorf("bridging %s: %w", nsTap, err)
	}
	addr, _ := netlink.ParseAddr(nsLinkAddr + "/30")
	if err := netlink.AddrAdd(br, addr); err != nil {
		tap.Close()
		return nil, 0, fmt.Errorf("addressing %s: %w", nsBridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		tap.Close()
		return nil, 0, err
	}
	hw, _ := net.ParseMAC(mac)
	brLink, _ := netlink.LinkByName(nsBridge)
	if brLink != nil {
		netlink.NeighSet(&netlink.Neigh{LinkIndex: brLink.Attrs().Index, Family: unix.AF_INET,
			State: netlink.NUD_PERMANENT, IP: net.ParseIP(guestLinkAddr), HardwareAddr: hw})
	}
	return tap, bits, nil
}

// openTap creates a tap device (no packet information, with virtio-net
// headers) in the calling thread's namespace; it lives while the file is
// open: in QEMU, which inherits it.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}

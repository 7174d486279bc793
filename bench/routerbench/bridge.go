package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/slipwayhq/slipway/internal/netns"
	"github.com/slipwayhq/slipway/internal/runtime/linuxns"
)

// appOnBridge is the backend as an app on Slipway's instance network: a
// network namespace wired by internal/netns (veth on a bridge of its own,
// a leased address, the nftables policy) with the backend listening
// inside it on port 3000, as an instance does.
type appOnBridge struct {
	nw     *netns.Network
	nsName string // under /run/netns
	addr   string // the lease's address:3000, as the host reaches it
}

// NsPath is the namespace's path, for dialling into it.
func (a *appOnBridge) NsPath() string { return filepath.Join("/run/netns", a.nsName) }

// newAppOnBridge opens a network of its own (names derived from this
// process's id, state under work) and wires one namespace into it.
func newAppOnBridge(ctx context.Context, work string) (*appOnBridge, error) {
	suf := fmt.Sprintf("%x", os.Getpid())
	nw, err := netns.Open(netns.Config{Bridge: "swrb" + suf, Table: "swrb_" + suf,
		StateDir: filepath.Join(work, "network"), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("opening a bridge for the app: %w", err)
	}
	a := &appOnBridge{nw: nw, nsName: "swrbns" + suf}
	if out, err := exec.Command("ip", "netns", "add", a.nsName).CombinedOutput(); err != nil {
		nw.Remove()
		return nil, fmt.Errorf("ip netns add %s: %v: %s", a.nsName, err, out)
	}
	l, err := nw.Attach(ctx, "rbench"+suf, "bench", a.NsPath())
	if err != nil {
		a.Close()
		return nil, err
	}
	a.addr = net.JoinHostPort(l.Addr.String(), "3000")
	return a, nil
}

// Command runs name with args inside the app's namespace.
func (a *appOnBridge) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", a.nsName, name}, args...)...)
}

// Close removes the namespace, the bridge and the nftables tables.
func (a *appOnBridge) Close() error {
	exec.Command("ip", "netns", "delete", a.nsName).Run()
	return a.nw.Remove()
}

// nsDialer dials addr from inside the network namespace at path, as the
// runc driver dials instances (linuxns.Dial): the connection stays in the
// namespace.
func nsDialer(path, addr string) (func(context.Context) (net.Conn, error), error) {
	target, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	ns, err := target.SyscallConn() // target stays open for the life of the process
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) (net.Conn, error) {
		return linuxns.Dial(ctx, ns, addr)
	}, nil
}

package runc

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/runtime/linuxns"
)

// The instances' network namespaces are made, entered and removed with
// package linuxns; this file holds what only a runc instance needs.

// prepareUserNetns readies the network namespace at nsPath for an
// instance in a user namespace of its own, which owns no capability over
// it: it mounts a sysfs of the namespace on sysfs, read-only (its
// class/net lists that namespace's interfaces, as a sysfs mounted inside
// the instance would; the mount holds the namespace, so it is unmounted
// before the namespace is deleted), and lets every user bind ports below
// 1024 there (net.ipv4.ip_unprivileged_port_start=0), as the instance's
// root could in the host's user namespace.
func prepareUserNetns(nsPath, sysfs string) error {
	f, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("preparing the network namespace: %w", err)
	}
	defer f.Close()
	ns, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("preparing the network namespace: %w", err)
	}
	return linuxns.Do(ns, func() error {
		if err := unix.Mount("sysfs", sysfs, "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mounting sysfs on %s: %w", sysfs, err)
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte("0\n"), 0); err != nil {
			return fmt.Errorf("opening the ports below 1024: %w", err)
		}
		return nil
	})
}

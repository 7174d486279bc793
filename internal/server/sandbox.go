package server

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/runtime/microvm"
	"github.com/slipwayhq/slipway/internal/runtime/oci"
	"github.com/slipwayhq/slipway/internal/runtime/runc"
)

// sandboxes makes the driver of each sandbox kind (the project setting
// "sandbox", DESIGN.md "Sandboxes"), by kind. This is where a driver is
// registered: one line per kind. startRuntime makes each; a kind whose
// driver fails to be made (its runtime is not installed here) is left
// out, its deployments then fail saying why, and a server whose default
// kind (--sandbox) cannot be made does not start.
var sandboxes = map[string]func(sandboxEnv) (runtime.Driver, error){
	project.SandboxRunc:    newRunc,
	project.SandboxGVisor:  newGVisor,
	project.SandboxMicroVM: newMicroVM,
}

// sandboxEnv is what a sandbox's driver is made from.
type sandboxEnv struct {
	// Root is a directory of the kind's own for its images, instances and
	// state: <data>/runtime for runc (where it always was),
	// <data>/runtime-<kind> for the others.
	Root string
	// RemoteOptions authenticate image pulls from the embedded registry.
	RemoteOptions []remote.Option
	// Network attaches instances' network namespaces to Slipway's bridge;
	// nil when instance networking is off (loopback only).
	Network runtime.Network
	// NetworkPool is how many namespaces to keep wired ahead (0 without a
	// Network).
	NetworkPool int
	// IDs is the range of host IDs that instances' IDs map to in their
	// user namespaces (--userns-range); zero: the driver's default.
	IDs oci.IDMap
	// NoUserNS runs instances in the host's user namespace
	// (--userns-range off).
	NoUserNS bool
}

func newRunc(env sandboxEnv) (runtime.Driver, error) {
	d, err := runc.New(runc.Config{Root: env.Root, RemoteOptions: env.RemoteOptions,
		Network: env.Network, NetworkPool: env.NetworkPool, IDs: env.IDs, NoUserNS: env.NoUserNS})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// newMicroVM runs each instance in a QEMU microVM; it fails where QEMU,
// the guest kernel or slipway-init is missing (scripts/install-microvm.sh).
func newMicroVM(env sandboxEnv) (runtime.Driver, error) {
	return microvm.New(microvm.Config{Root: env.Root, RemoteOptions: env.RemoteOptions, Network: env.Network})
}

// newGVisor is the same driver with gVisor's runsc as the runtime; it
// fails where runsc is not installed (scripts/install-gvisor.sh).
func newGVisor(env sandboxEnv) (runtime.Driver, error) {
	return runc.New(runc.Config{Runtime: runc.GVisor, Root: env.Root, RemoteOptions: env.RemoteOptions,
		Network: env.Network, NetworkPool: env.NetworkPool})
}

// startRuntime makes the driver of every registered sandbox kind.
func (s *server) startRuntime(context.Context) error {
	base := sandboxEnv{
		RemoteOptions: []remote.Option{remote.WithAuth(&authn.Basic{Username: "slipway", Password: s.internal})},
	}
	if s.network != nil {
		base.Network = attacher{s.network}
		base.NetworkPool = networkPool
	}
	switch r := s.cfg.UserNSRange; r {
	case "off":
		base.NoUserNS = true
		s.log.Warn("instances run in the host's user namespace (--userns-range off): an image without USER runs as the host's root")
	case "":
	default:
		ids, err := runc.ParseIDs(r)
		if err != nil {
			return fmt.Errorf("--userns-range: %w", err)
		}
		base.IDs = ids
	}
	s.drivers = map[string]runtime.Driver{}
	s.unavailable = map[string]error{}
	kinds := make([]string, 0, len(sandboxes))
	for kind := range sandboxes {
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		env := base
		env.Root = filepath.Join(s.cfg.DataDir, "runtime")
		if kind != project.SandboxRunc {
			env.Root += "-" + kind
		}
		newDriver := sandboxes[kind]
		if s.cfg.Runtime == RuntimeKubernetes {
			newDriver = s.kubeSandbox(kind)
		}
		d, err := newDriver(env)
		if err != nil {
			if kind == s.cfg.Sandbox {
				return fmt.Errorf("the default sandbox (--sandbox %s): %w", kind, err)
			}
			s.log.Warn("sandbox not available: deployments that choose it fail", "sandbox", kind, "err", err)
			s.unavailable[kind] = err
			continue
		}
		s.drivers[kind] = d
		if u, ok := d.(interface{ UserNS() (oci.IDMap, bool) }); ok {
			if ids, on := u.UserNS(); on {
				s.log.Info("instances run in user namespaces", "sandbox", kind, "host_uid", ids.HostUID, "host_gid", ids.HostGID, "ids", ids.Size)
			}
		}
		if c, ok := d.(io.Closer); ok {
			s.onStop(func(context.Context) { c.Close() }) // instances keep running
		}
	}
	if _, ok := s.drivers[s.cfg.Sandbox]; !ok {
		return fmt.Errorf("the default sandbox (--sandbox %s) is not available in this build of Slipway (it has %v)", s.cfg.Sandbox, kinds)
	}
	for _, kind := range project.Sandboxes {
		if _, ok := sandboxes[kind]; !ok {
			s.unavailable[kind] = fmt.Errorf("this version of Slipway has no %s driver yet", kind)
		}
	}
	var available []string
	for _, kind := range kinds {
		if s.drivers[kind] != nil {
			available = append(available, kind)
		}
	}
	s.log.Info("sandboxes", "default", s.cfg.Sandbox, "available", strings.Join(available, ","))
	return nil
}

// usageReaders reads an instance's usage through the driver that started
// it (the one its handle names), for the drivers that can tell.
type usageReaders map[string]runtime.Driver

func (u usageReaders) Usage(ctx context.Context, h *runtime.Handle) (runtime.Usage, error) {
	for _, d := range u {
		if d.Name() != h.Driver {
			continue
		}
		if r, ok := d.(runtime.UsageReader); ok {
			return r.Usage(ctx, h)
		}
	}
	return runtime.Usage{}, fmt.Errorf("instance %s: its driver %q does not report usage: %w", h.ID, h.Driver, runtime.ErrNotFound)
}

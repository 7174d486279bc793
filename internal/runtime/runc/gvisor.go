package runc

// gVisor: the same driver with runsc as the OCI runtime (Config.Runtime =
// GVisor). runsc takes runc's command line (run --detach, state, kill
// --all, delete --force) and the same bundle, so everything else is
// shared: the image cache, the overlay root with its tmpfs writable layer,
// the pooled network namespaces, the cgroup, the pidfd that watches the
// instance (runsc's sandbox process, which exits with the app's status),
// the logs. What differs is who serves the app's system calls: gVisor's
// Sentry, a kernel in user space, instead of the host's kernel.

// GVisor is the name of the driver (and the sandbox kind) that runs
// instances with gVisor's runsc.
const GVisor = "gvisor"

// gvisorArgs are runsc's global flags:
//
//   - --network=host: the app's sockets are the host kernel's, in the
//     instance's own network namespace (passthrough), rather than
//     gVisor's netstack on the namespace's veth. The router then dials the
//     app on the namespace's loopback exactly as with runc (Driver.Dial),
//     a namespace without a Network (loopback only) works, and the egress
//     policy is the host's nftables on the veth either way. The cost is
//     that network system calls reach the host kernel (through the
//     Sentry's seccomp filter) instead of staying in gVisor.
//   - --overlay2=none: the root filesystem is the bundle's, whose writes
//     land in the instance's tmpfs layer with its quota (DiskBytes), as
//     with runc, not in a second overlay of runsc's own in memory.
//   - --oci-seccomp: the spec's seccomp filter (see seccompProfile)
//     applies to the app inside the Sentry too, as with runc.
//   - --gofer-network-namespace=new: each gofer gets an empty network
//     namespace of its own rather than one shared through a mount in the
//     runtime's root, which would outlive the instances.
//   - --allow-suid=false and --character-device-policy=emulated-only (the
//     defaults, made explicit): setuid and setgid bits grant nothing and
//     device nodes open no host device, as the nosuid,nodev root does
//     under runc.
var gvisorArgs = []string{"--network=host", "--overlay2=none", "--oci-seccomp", "--gofer-network-namespace=new",
	"--allow-suid=false", "--character-device-policy=emulated-only"}

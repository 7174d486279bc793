package project

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// Limits of the settings, as ValidateSettings enforces them.
const (
	MaxStartCommand  = 4096  // bytes
	MaxHealthFailure = 100   // consecutive failed checks
	MaxPort          = 65535 //
	MaxPath          = 2048  // bytes, health path and directories
	// MaxBuildTimeout is the longest build timeout a project may set.
	MaxBuildTimeout = 24 * time.Hour
)

// Sandbox kinds, the values of the project setting "sandbox" (DESIGN.md,
// "Sandboxes"): which isolation a deployment's instances run in.
const (
	// SandboxRunc runs an instance as a container of the host's kernel:
	// namespaces, cgroups, seccomp, dropped capabilities.
	SandboxRunc = "runc"
	// SandboxGVisor runs it under gVisor's runsc: its system calls are
	// served by a kernel in user space, not the host's.
	SandboxGVisor = "gvisor"
	// SandboxMicroVM runs it in a virtual machine of its own (QEMU's
	// microvm machine, a Linux guest).
	SandboxMicroVM = "microvm"
)

// Sandboxes lists the sandbox kinds, the default first. Whether a server
// can run each depends on what its host has (runsc, QEMU).
var Sandboxes = []string{SandboxRunc, SandboxGVisor, SandboxMicroVM}

// ValidSandbox reports whether kind is one of Sandboxes.
func ValidSandbox(kind string) bool { return slices.Contains(Sandboxes, kind) }

// SandboxOf is the sandbox a deployment with settings st runs in: its
// sandbox setting, else def (the server's default).
func SandboxOf(st store.ProjectSettings, def string) string {
	if st.Sandbox != "" {
		return st.Sandbox
	}
	return def
}

// ValidateSettings checks a project's settings. A zero field means the
// server's default and is always valid. The API, the CLI (through the API)
// and the dashboard all refuse exactly what it refuses.
func ValidateSettings(st store.ProjectSettings) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf(format+": %w", append(args, ErrInvalid)...)
	}
	if len(st.StartCommand) > MaxStartCommand {
		return bad("the start command is longer than %d characters", MaxStartCommand)
	}
	if strings.ContainsAny(st.StartCommand, "\x00\r\n") {
		return bad("the start command must be one line")
	}
	if st.HealthPath != "" && (!strings.HasPrefix(st.HealthPath, "/") || strings.ContainsAny(st.HealthPath, " \t\r\n") || len(st.HealthPath) > MaxPath) {
		return bad("the health check path (healthPath) must start with / and hold no spaces")
	}
	if st.HealthPort < 0 || st.HealthPort > MaxPort {
		return bad("the health check port (healthPort) must be a number from 1 to %d", MaxPort)
	}
	if st.HealthFailures < 0 || st.HealthFailures > MaxHealthFailure {
		return bad("the failure threshold (healthFailures) must be a number from 1 to %d", MaxHealthFailure)
	}
	if st.MemoryBytes < 0 || st.CPUMillis < 0 || st.Pids < 0 || st.DiskBytes < 0 {
		return bad("resource limits (memoryBytes, cpuMillis, pids, diskBytes) must not be negative")
	}
	for _, d := range []struct {
		label, value string
		zeroOK       bool
	}{
		{"the health check interval (healthInterval)", st.HealthInterval, false},
		{"the health check timeout (healthTimeout)", st.HealthTimeout, false},
		{"the deployment window (deployWindow)", st.DeployWindow, false},
		{"the idle timeout (idleTimeout)", st.IdleTimeout, true},
		{"the build timeout (buildTimeout)", st.BuildTimeout, false},
	} {
		if d.value == "" || (d.zeroOK && d.value == "0") {
			continue
		}
		if v, err := time.ParseDuration(d.value); err != nil || v <= 0 {
			if d.zeroOK {
				return bad("%s must be a duration such as 30s, 5m or 1h, or 0 for never, not %q", d.label, d.value)
			}
			return bad("%s must be a duration such as 30s, 5m or 1h, not %q", d.label, d.value)
		}
	}
	if v, err := time.ParseDuration(st.BuildTimeout); err == nil && v > MaxBuildTimeout {
		return bad("the build timeout (buildTimeout) must be at most %s, not %q", "24h", st.BuildTimeout)
	}
	if v, err := time.ParseDuration(st.LogMaxAge); st.LogMaxAge != "" && (err != nil || v <= 0) {
		return bad("the runtime log retention (logMaxAge) must be a duration such as 24h or 720h, not %q", st.LogMaxAge)
	}
	if st.Sandbox != "" && !ValidSandbox(st.Sandbox) {
		return bad("the sandbox (sandbox) must be one of %s, not %q", strings.Join(Sandboxes, ", "), st.Sandbox)
	}
	if st.LogMaxBytes < 0 {
		return bad("the runtime log size (logMaxBytes) must not be negative")
	}
	for _, p := range []struct{ label, value string }{
		{"the root directory (rootDirectory)", st.RootDirectory},
		{"the Dockerfile path (dockerfilePath)", st.Dockerfile},
	} {
		if len(p.value) > MaxPath || strings.ContainsAny(p.value, "\x00\r\n") {
			return bad("%s must be one line of at most %d characters", p.label, MaxPath)
		}
	}
	return nil
}

// BuildTimeout is how long a build of a project with settings st may run:
// its buildTimeout, else def (the server's default).
func BuildTimeout(st store.ProjectSettings, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(st.BuildTimeout); err == nil && v > 0 {
		return v
	}
	return def
}

// Health is a project's health-check and idle settings with the defaults
// applied.
type Health struct {
	Path     string
	Port     int
	Interval time.Duration
	Timeout  time.Duration
	Failures int
	Window   time.Duration // how long a deployment may take to become healthy
	Idle     time.Duration // 0: never scale to zero
}

// HealthOf applies the defaults to st: GET / on port 3000 every 15 s with a
// 5 s timeout, three failures in a row; window and idle are the server's
// defaults (idle < 0: never).
func HealthOf(st store.ProjectSettings, window, idle time.Duration) Health {
	h := Health{Path: "/", Port: 3000, Interval: 15 * time.Second, Timeout: 5 * time.Second, Failures: 3, Window: window, Idle: idle}
	if st.HealthPath != "" {
		h.Path = st.HealthPath
	}
	if st.HealthPort > 0 {
		h.Port = st.HealthPort
	}
	if v, err := time.ParseDuration(st.HealthInterval); err == nil && v > 0 {
		h.Interval = v
	}
	if v, err := time.ParseDuration(st.HealthTimeout); err == nil && v > 0 {
		h.Timeout = v
	}
	if st.HealthFailures > 0 {
		h.Failures = st.HealthFailures
	}
	if v, err := time.ParseDuration(st.DeployWindow); err == nil && v > 0 {
		h.Window = v
	}
	if st.IdleTimeout == "0" {
		h.Idle = 0
	} else if v, err := time.ParseDuration(st.IdleTimeout); err == nil {
		h.Idle = v
	}
	if h.Idle < 0 {
		h.Idle = 0
	}
	return h
}

// Defaults of a project's runtime log retention.
const (
	DefaultLogMaxAge   = 7 * 24 * time.Hour
	DefaultLogMaxBytes = 100 << 20
)

// LogRetentionOf applies the defaults to st's runtime log retention: how
// long lines are kept and how many bytes of them, across the project's
// deployments, newest first.
func LogRetentionOf(st store.ProjectSettings) (maxAge time.Duration, maxBytes int64) {
	maxAge, maxBytes = DefaultLogMaxAge, DefaultLogMaxBytes
	if v, err := time.ParseDuration(st.LogMaxAge); err == nil && v > 0 {
		maxAge = v
	}
	if st.LogMaxBytes > 0 {
		maxBytes = st.LogMaxBytes
	}
	return maxAge, maxBytes
}

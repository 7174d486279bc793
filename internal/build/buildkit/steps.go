package buildkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// StepPolicy is what Slipway enforces on every container BuildKit starts
// for a build step (a Dockerfile RUN), beyond BuildKit's own defaults.
//
// BuildKit has no setting for a step's capabilities or resources, but it
// runs steps through an OCI runtime binary it is told the name of. Slipway
// names itself: StartDaemon links the running executable under the name
// StepRuntimeName, and this package's init turns such an invocation into
// a filter that rewrites the step's OCI spec (config.json, or the process
// file of an exec) and then execs runc with the same arguments — the way
// other OCI runtime shims that adjust a spec before runc work. The filter
// adds one exec of this binary per step, and no process stays behind.
type StepPolicy struct {
	// DropCapabilities are removed from every set of the step's process.
	// If nil, DefaultDropCapabilities.
	DropCapabilities []string
	// MemoryBytes caps a step's memory (and its memory+swap, so that
	// swap doesn't stretch it). Zero: no limit.
	MemoryBytes int64
	// Pids caps the number of processes and threads of a step. Zero: no
	// limit.
	Pids int64
	// CPUs caps a step's CPU time, in cores (1.5 = one and a half).
	// Zero: no limit.
	CPUs float64
}

// DefaultDropCapabilities: CAP_NET_RAW would let a step open raw sockets
// (craft packets with another source, answer ARP for the gateway on the
// build bridge); no package manager needs it.
var DefaultDropCapabilities = []string{"CAP_NET_RAW"}

// StepRuntimeName is the name under which this binary acts as the step
// runtime filter.
const StepRuntimeName = "slipway-step-runc"

// stepConfig is the filter's configuration, written beside its link.
type stepConfig struct {
	Runc   string     `json:"runc"`
	Policy StepPolicy `json:"policy"`
}

const stepConfigName = "step-runtime.json"

func init() {
	if filepath.Base(os.Args[0]) == StepRuntimeName {
		os.Exit(stepRuntimeMain(os.Args[0], os.Args[1:]))
	}
}

// installStepRuntime links the running executable as dir/StepRuntimeName
// and writes the policy beside it; it returns the link's path, the OCI
// runtime binary to give buildkitd.
func installStepRuntime(dir, runc string, p StepPolicy) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("step runtime: finding this executable: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("step runtime: %w", err)
	}
	if p.DropCapabilities == nil {
		p.DropCapabilities = DefaultDropCapabilities
	}
	data, err := json.Marshal(stepConfig{Runc: runc, Policy: p})
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(filepath.Join(dir, stepConfigName), data); err != nil {
		return "", fmt.Errorf("step runtime: %w", err)
	}
	link := filepath.Join(dir, StepRuntimeName)
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(exe, tmp); err != nil {
		return "", fmt.Errorf("step runtime: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return "", fmt.Errorf("step runtime: %w", err)
	}
	return link, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// stepRuntimeMain is the filter: it applies the policy found beside argv0
// to the container runc is asked to run or create (or the process it is
// asked to exec), then execs runc. Without its policy it refuses to run
// anything: a step never runs unfiltered.
func stepRuntimeMain(argv0 string, args []string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s: %v\n", StepRuntimeName, err)
		return 1
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(argv0), stepConfigName))
	if err != nil {
		return fail(err)
	}
	var cfg stepConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fail(fmt.Errorf("reading policy: %w", err))
	}
	if cfg.Runc == "" {
		return fail(errors.New("policy names no runc binary"))
	}
	if err := filterRuncArgs(args, cfg.Policy, cgroupSwapControl()); err != nil {
		return fail(err)
	}
	argv := append([]string{cfg.Runc}, args...)
	return fail(syscall.Exec(cfg.Runc, argv, os.Environ()))
}

// runcValueFlags are runc's global flags that take a separate value.
var runcValueFlags = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true}

// filterRuncArgs finds the runc subcommand in args and applies p to the
// spec it will read: the bundle's config.json for run and create, the
// process file for exec. Other subcommands pass through.
func filterRuncArgs(args []string, p StepPolicy, swap bool) error {
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		if runcValueFlags[args[i]] {
			i++
		}
		i++
	}
	if i >= len(args) {
		return nil
	}
	sub, rest := args[i], args[i+1:]
	switch sub {
	case "run", "create":
		bundle, ok := flagValue(rest, "--bundle", "-b")
		if !ok {
			bundle = "." // runc's default: the working directory
		}
		return editJSON(filepath.Join(bundle, "config.json"), func(s *specs.Spec) {
			applyStepPolicy(s, p, swap)
		})
	case "exec":
		file, ok := flagValue(rest, "--process", "-p")
		if !ok {
			// A process given on the command line gets runc's
			// capabilities from the container's spec, already filtered.
			return nil
		}
		return editJSON(file, func(pr *specs.Process) { dropCaps(pr.Capabilities, p.DropCapabilities) })
	}
	return nil
}

// flagValue returns the value of a flag given as "--name V", "-n V" or
// "--name=V".
func flagValue(args []string, long, short string) (string, bool) {
	for i, a := range args {
		if (a == long || a == short) && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, long+"="); ok {
			return v, true
		}
	}
	return "", false
}

func editJSON[T any](path string, edit func(*T)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	edit(v)
	out, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, fi.Mode().Perm())
}

// applyStepPolicy drops the policy's capabilities and sets its limits.
// swap says whether the memory controller accounts swap (cgroup v2, or v1
// with memsw): only then is memory+swap capped too.
func applyStepPolicy(s *specs.Spec, p StepPolicy, swap bool) {
	if s.Process != nil {
		dropCaps(s.Process.Capabilities, p.DropCapabilities)
	}
	if p.MemoryBytes == 0 && p.Pids == 0 && p.CPUs == 0 {
		return
	}
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	r := s.Linux.Resources
	if r == nil {
		r = &specs.LinuxResources{}
		s.Linux.Resources = r
	}
	if p.MemoryBytes > 0 {
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		limit := p.MemoryBytes
		r.Memory.Limit = &limit
		if swap {
			total := p.MemoryBytes
			r.Memory.Swap = &total
		}
	}
	if p.Pids > 0 {
		r.Pids = &specs.LinuxPids{Limit: p.Pids}
	}
	if p.CPUs > 0 {
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		period := uint64(100_000)
		quota := int64(p.CPUs * float64(period))
		r.CPU.Period, r.CPU.Quota = &period, &quota
	}
}

func dropCaps(c *specs.LinuxCapabilities, drop []string) {
	if c == nil {
		return
	}
	for _, set := range []*[]string{&c.Bounding, &c.Effective, &c.Permitted, &c.Inheritable, &c.Ambient} {
		*set = slices.DeleteFunc(*set, func(name string) bool { return slices.Contains(drop, name) })
	}
}

// cgroupSwapControl reports whether runc can cap memory+swap here: always
// on the unified hierarchy, on v1 only when swap accounting is on.
func cgroupSwapControl() bool {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return true
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

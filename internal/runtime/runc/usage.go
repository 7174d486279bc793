package runc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/runtime"
)

// Usage implements runtime.UsageReader: it reads the instance's cgroup
// (CgroupParent/<id>), on cgroups v2 from the unified hierarchy, else
// (v1, or hybrid as here: controllers on v1, an empty v2 beside them) from
// the cpuacct, memory and pids hierarchies. It reads a few small files and
// runs nothing.
func (d *Driver) Usage(_ context.Context, h *runtime.Handle) (runtime.Usage, error) {
	if h == nil || !idRE.MatchString(h.ID) {
		return runtime.Usage{}, fmt.Errorf("reading usage: bad handle")
	}
	u, err := readUsage(cgroupRoot, unifiedOnly(cgroupRoot), d.cgroupsPath(h.ID))
	if err != nil {
		return u, fmt.Errorf("reading usage of instance %s: %w", h.ID, err)
	}
	return u, nil
}

// unifiedOnly reports whether root is a cgroup v2 mount (no v1
// hierarchies): it then has cgroup.controllers at its top.
func unifiedOnly(root string) bool {
	_, err := os.Stat(filepath.Join(root, "cgroup.controllers"))
	return err == nil
}

// readUsage reads the usage of the cgroup at path (absolute within each
// hierarchy) under root. A cgroup that does not exist is runtime.ErrNotFound.
func readUsage(root string, v2 bool, path string) (runtime.Usage, error) {
	var u runtime.Usage
	if v2 {
		dir := filepath.Join(root, path)
		stat, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
		if err != nil {
			return u, notFound(err)
		}
		usec, err := statField(string(stat), "usage_usec")
		if err != nil {
			return u, err
		}
		u.CPU = time.Duration(usec) * time.Microsecond
		if u.MemoryBytes, err = readInt(filepath.Join(dir, "memory.current")); err != nil {
			return u, err
		}
		if u.MemoryLimitBytes, err = readInt(filepath.Join(dir, "memory.max")); err != nil {
			return u, err
		}
		u.Pids, err = readInt(filepath.Join(dir, "pids.current"))
		return u, err
	}
	// cpuacct is mounted on its own (as here) or with cpu.
	ns, err := readInt(filepath.Join(root, "cpuacct", path, "cpuacct.usage"))
	if errors.Is(err, runtime.ErrNotFound) {
		ns, err = readInt(filepath.Join(root, "cpu,cpuacct", path, "cpuacct.usage"))
	}
	if err != nil {
		return u, err
	}
	u.CPU = time.Duration(ns)
	mem := filepath.Join(root, "memory", path)
	if u.MemoryBytes, err = readInt(filepath.Join(mem, "memory.usage_in_bytes")); err != nil {
		return u, err
	}
	if u.MemoryLimitBytes, err = readInt(filepath.Join(mem, "memory.limit_in_bytes")); err != nil {
		return u, err
	}
	if u.MemoryLimitBytes >= 1<<62 { // v1 writes "unlimited" as a page-rounded max int64
		u.MemoryLimitBytes = 0
	}
	u.Pids, err = readInt(filepath.Join(root, "pids", path, "pids.current"))
	return u, err
}

// readInt reads a cgroup file holding one number; "max" reads as 0 (no
// limit).
func readInt(name string) (int64, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, notFound(err)
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

// statField returns the value of key in a flat-keyed cgroup file
// ("key value" lines).
func statField(stat, key string) (int64, error) {
	for line := range strings.Lines(stat) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && k == key {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in cpu.stat", key)
}

// notFound maps a missing cgroup file (the instance is gone) to
// runtime.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %v", runtime.ErrNotFound, err)
	}
	return err
}

var _ runtime.UsageReader = (*Driver)(nil)

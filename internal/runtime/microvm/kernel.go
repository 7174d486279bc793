package microvm

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// guestModules are the modules the init loads, with what they depend on:
// the virtio transport and devices, the filesystems of the root, and the
// entropy source. Debian's cloud kernel builds them as modules.
var guestModules = []string{"virtio_mmio", "virtio_blk", "virtio_net", "virtio_console", "virtio_rng", "ext4", "overlay"}

// kernelDirs are searched, in order, for a cloud kernel when
// Config.Kernel is empty: where scripts/install-microvm.sh unpacks one,
// then the host's /boot.
var kernelDirs = []string{"/usr/local/lib/slipway/microvm", "/boot"}

// findKernel returns the newest Debian cloud kernel in dirs, and its
// modules directory: lib/modules/<version> beside it, else the host's
// /lib/modules/<version>.
func findKernel(dirs []string) (kernel, modules string, err error) {
	for _, dir := range dirs {
		m, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*-cloud-amd64"))
		if len(m) == 0 {
			continue
		}
		slices.SortFunc(m, compareVersions)
		kernel = m[len(m)-1]
		return kernel, modulesFor(kernel), nil
	}
	return "", "", fmt.Errorf("no Debian cloud kernel (vmlinuz-*-cloud-amd64) in %s: run scripts/install-microvm.sh", strings.Join(dirs, " or "))
}

// modulesFor returns the modules directory of a kernel file vmlinuz-V.
func modulesFor(kernel string) string {
	v := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	beside := filepath.Join(filepath.Dir(kernel), "lib", "modules", v)
	if _, err := os.Stat(filepath.Join(beside, "modules.builtin")); err == nil {
		return beside
	}
	return filepath.Join("/lib/modules", v)
}

// compareVersions orders kernel file names by their dotted, dashed
// numbers (6.1.0-9 before 6.1.0-10).
func compareVersions(a, b string) int {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' })
	}
	x, y := split(a), split(b)
	for i := 0; i < len(x) && i < len(y); i++ {
		var n, m int
		_, e1 := fmt.Sscan(x[i], &n)
		_, e2 := fmt.Sscan(y[i], &m)
		switch {
		case e1 == nil && e2 == nil && n != m:
			return n - m
		case (e1 != nil || e2 != nil) && x[i] != y[i]:
			return strings.Compare(x[i], y[i])
		}
	}
	return len(x) - len(y)
}

// moduleFiles resolves names against the modules of the kernel in dir:
// the files (relative to dir) to load, dependencies first; built-in
// modules (modules.builtin) need none. Dependencies come from
// modules.dep where depmod made one, else from each module's own
// .modinfo section ("depends="), as a kernel package unpacked without
// its scripts has no modules.dep.
func moduleFiles(dir string, names []string) ([]string, error) {
	deps, err := readModulesDep(dir)
	if errors.Is(err, os.ErrNotExist) {
		deps, err = scanModules(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the guest kernel's modules: %w", err)
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for line := range strings.Lines(string(b)) {
			builtin[moduleName(strings.TrimSpace(line))] = true
		}
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		if state[name] == 2 || builtin[name] {
			return nil
		}
		if state[name] == 1 {
			return fmt.Errorf("module %s: dependency loop", name)
		}
		m, ok := deps[name]
		if !ok {
			return fmt.Errorf("the guest kernel has no module %s", name)
		}
		state[name] = 1
		for _, dep := range m.deps {
			if err := visit(dep); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, m.file)
		return nil
	}
	for _, n := range names {
		if err := visit(strings.ReplaceAll(n, "-", "_")); err != nil {
			return nil, err
		}
	}
	return order, nil
}

type module struct {
	file string   // relative to the modules directory
	deps []string // names
}

// readModulesDep reads depmod's modules.dep.
func readModulesDep(dir string) (map[string]module, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]module{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		file, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		m := module{file: file}
		for _, d := range strings.Fields(rest) {
			m.deps = append(m.deps, moduleName(d))
		}
		out[moduleName(file)] = m
	}
	return out, sc.Err()
}

// scanModules reads every module file under dir/kernel for its
// dependencies. Only uncompressed modules can be read so.
func scanModules(dir string) (map[string]module, error) {
	out := map[string]module{}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.Contains(e.Name(), ".ko") {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m := module{file: rel}
		if strings.HasSuffix(p, ".ko") {
			if m.deps, err = modinfoDepends(p); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
		}
		out[moduleName(p)] = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// modinfoDepends reads "depends=" of a module's .modinfo section.
func modinfoDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	b, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, moduleName(d))
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// moduleName is the name of a module file: kernel/fs/ext4/ext4.ko.xz →
// ext4, with dashes as underscores (as the kernel names modules).
func moduleName(file string) string {
	base := filepath.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

package microvm

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
)

// baseInitrd is the part of every guest's initramfs that does not change
// between instances: the init (Config.InitPath) as /init, the modules it
// loads under /lib/modules, and /dev/console for the kernel to open.
type baseInitrd struct {
	archive []byte
	modules []string // paths in the initramfs, in load order
}

// buildBaseInitrd reads the init and the modules and archives them.
func buildBaseInitrd(initPath, modulesDir string) (*baseInitrd, error) {
	if err := checkStatic(initPath); err != nil {
		return nil, err
	}
	initBin, err := os.ReadFile(initPath)
	if err != nil {
		return nil, fmt.Errorf("reading the guest init: %w", err)
	}
	files, err := moduleFiles(modulesDir, guestModules)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	c := newCpio(&buf)
	for _, d := range []string{"dev", "proc", "sys", "slipway", "lib", "lib/modules"} {
		if err := c.dir(d); err != nil {
			return nil, err
		}
	}
	if err := c.entry("dev/console", cpioChar|0o600, nil, 5, 1); err != nil {
		return nil, err
	}
	b := &baseInitrd{}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(modulesDir, f))
		if err != nil {
			return nil, fmt.Errorf("reading the guest kernel's modules: %w", err)
		}
		p := path.Join("lib/modules", path.Base(f))
		if err := c.file(p, 0o644, data); err != nil {
			return nil, err
		}
		b.modules = append(b.modules, "/"+p)
	}
	if err := c.file("init", 0o755, initBin); err != nil {
		return nil, err
	}
	// No trailer: the instance's archive follows and ends the whole.
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	b.archive = buf.Bytes()
	return b, nil
}

// checkStatic fails unless path is a statically linked ELF executable: the
// initramfs holds no dynamic loader or libraries.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("the guest init %s: %w (build it with scripts/install-microvm.sh)", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("the guest init %s is dynamically linked: build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}

// writeInitrd writes an instance's initramfs to path: the base archive,
// then one holding the instance's config.
func (b *baseInitrd) writeInitrd(path string, config []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b.archive); err != nil {
		f.Close()
		return err
	}
	c := newCpio(f)
	c.n = int64(len(b.archive)) // keep the 4-byte alignment of the whole
	if err := c.file("slipway/config.json", 0o600, config); err != nil {
		f.Close()
		return err
	}
	if err := c.close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

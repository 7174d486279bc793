package baseimage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// caBundle is the set of extra CA certificates images trust: the files
// ending in .crt below a directory, by relative path, as
// update-ca-certificates reads /usr/local/share/ca-certificates.
type caBundle struct {
	dir   string
	files map[string][]byte
}

// readCABundle reads the certificates below dir; a missing dir has none.
func readCABundle(dir string) (caBundle, error) {
	b := caBundle{dir: dir, files: map[string][]byte{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if !strings.HasSuffix(d.Name(), ".crt") {
			return nil
		}
		// Follow symbolic links, as update-ca-certificates does.
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b.files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		return caBundle{}, fmt.Errorf("reading CA certificates in %s: %w", dir, err)
	}
	return b, nil
}

// digest identifies the bundle's contents; "" when it is empty.
func (b caBundle) digest() string {
	if len(b.files) == 0 {
		return ""
	}
	h := sha256.New()
	for _, name := range b.names() {
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b.files[name]))
		h.Write(b.files[name])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (b caBundle) names() []string {
	var names []string
	for n := range b.files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// install writes the certificates into rootfs's
// /usr/local/share/ca-certificates, where update-ca-certificates (run by
// the ca-certificates package, and again by caScript) adds them to
// /etc/ssl/certs.
func (b caBundle) install(rootfs string) error {
	for _, name := range b.names() {
		dst := filepath.Join(rootfs, "usr/local/share/ca-certificates", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("installing CA certificates: %w", err)
		}
		if err := os.WriteFile(dst, b.files[name], 0o644); err != nil {
			return fmt.Errorf("installing CA certificates: %w", err)
		}
	}
	return nil
}

// caScript refreshes the trust store after the certificates are installed.
const caScript = "update-ca-certificates"

// trustsExtraCAs reports whether s gets the extra CA certificates: the
// images that carry Debian's ca-certificates, whose bundle they extend.
func (s spec) trustsExtraCAs() bool { return slices.Contains(s.packages, "ca-certificates") }

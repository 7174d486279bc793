package baseimage

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCABundle(t *testing.T) {
	if b, err := readCABundle(filepath.Join(t.TempDir(), "missing")); err != nil || len(b.files) != 0 || b.digest() != "" {
		t.Fatalf("missing dir: %+v, %v; want an empty bundle", b, err)
	}
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{
		"proxy.crt":      "PROXY",
		"corp/root.crt":  "ROOT",
		"README":         "not a certificate",
		"old.pem":        "not read: update-ca-certificates wants .crt",
		"link.crt":       "->proxy.crt",
		"dangling.crt":   "->nowhere.crt",
		"corp/notes.txt": "x",
	})
	b, err := readCABundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.names(); !slices.Equal(got, []string{"corp/root.crt", "link.crt", "proxy.crt"}) {
		t.Errorf("names = %v", got)
	}
	root := t.TempDir()
	if err := b.install(root); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "usr/local/share/ca-certificates/corp/root.crt")); err != nil || string(got) != "ROOT" {
		t.Errorf("installed corp/root.crt = %q, %v", got, err)
	}

	// The key of an image carrying ca-certificates follows the bundle; the
	// others' keys do not.
	o := Options{Mirrors: Mirrors{Debian: "http://mirror.invalid/debian"}}.withDefaults()
	changed := caBundle{dir: dir, files: map[string][]byte{"proxy.crt": []byte("OTHER")}}
	for _, s := range specs {
		none, with, other := s.key(o, caBundle{}, nil), s.key(o, b, nil), s.key(o, changed, nil)
		if s.trustsExtraCAs() != (none != with) || (with == other) == s.trustsExtraCAs() {
			t.Errorf("%s (trusts extra CAs: %v): keys without, with and with other CAs: %s %s %s",
				s.name, s.trustsExtraCAs(), none, with, other)
		}
	}
	for _, name := range []string{"golang", "python", "node"} {
		if s, _ := findSpec(name); !s.trustsExtraCAs() {
			t.Errorf("%s does not get the extra CA certificates", name)
		}
	}
}

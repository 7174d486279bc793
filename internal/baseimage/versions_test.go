package baseimage

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestUpstreamVersion(t *testing.T) {
	for in, want := range map[string]string{
		"18.20.4+dfsg-1~deb12u3": "18.20.4",
		"3.11.2-1+b1":            "3.11.2",
		"1:9.2.0~ds1-1":          "9.2.0",
		"3.11.2":                 "3.11.2",
		"2.2.2-3+deb12u1":        "2.2.2",
	} {
		if got := upstreamVersion(in); got != want {
			t.Errorf("upstreamVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

const fakeStatus = `Package: python3
Status: deinstall ok config-files
Version: 3.9.2-3

Package: python3
Status: install ok installed
Priority: optional
Depends: python3.11 (>= 3.11.2-1~)
Description: interactive high-level object-oriented language
 a long description: with a colon
Version: 3.11.2-1+b1

Package: nodejs
Status: install ok installed
Version: 18.20.4+dfsg-1~deb12u3
`

func TestTagsFromDpkgStatus(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte(fakeStatus), 0o644); err != nil {
		t.Fatal(err)
	}
	tags, env, err := pythonTags(root, "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	wantTags := []string{"3.11-slim-bookworm", "3.11-slim", "3.11-bookworm", "3.11",
		"3.11.2-slim-bookworm", "3.11.2-slim", "3.11.2-bookworm", "3.11.2"}
	if !slices.Equal(tags, wantTags) || !slices.Equal(env, []string{"PYTHON_VERSION=3.11.2"}) {
		t.Errorf("pythonTags = %v %v, want %v [PYTHON_VERSION=3.11.2]", tags, env, wantTags)
	}
	tags, env, err = nodeTags(root, "bookworm")
	if err != nil {
		t.Fatal(err)
	}
	wantTags = []string{"18-bookworm-slim", "18-slim", "18-bookworm", "18",
		"18.20.4-bookworm-slim", "18.20.4-slim", "18.20.4-bookworm", "18.20.4"}
	if !slices.Equal(tags, wantTags) || !slices.Equal(env, []string{"NODE_VERSION=18.20.4"}) {
		t.Errorf("nodeTags = %v %v, want %v [NODE_VERSION=18.20.4]", tags, env, wantTags)
	}
	if _, err := dpkgVersion(root, "golang-1.23-go"); err == nil {
		t.Error("dpkgVersion of a package that is not installed: no error")
	}
}

// TestRecipeKeys checks that every image has a key of its own, and the
// order of Names (parents first).
func TestRecipeKeys(t *testing.T) {
	o := Options{Mirrors: Mirrors{Debian: "http://mirror.invalid/debian"}}.withDefaults()
	keys := map[string]string{}
	for _, s := range specs {
		k := s.key(o, caBundle{}, nil)
		if len(k) != 16 {
			t.Errorf("%s: key %q", s.name, k)
		}
		for other, ok := range keys {
			if ok == k {
				t.Errorf("%s and %s share the key %s", s.name, other, k)
			}
		}
		keys[s.name] = k
	}
	if got := Names(); !slices.Equal(got, []string{"debian", "golang", "python", "node", "node22", "node24"}) {
		t.Errorf("Names() = %v", got)
	}
}

package baseimage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadMirrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  Mirrors
		err   bool
	}{
		{
			name: "deb822",
			files: map[string]string{
				"etc/apt/sources.list.d/debian.sources": `Types: deb
# http://archive.invalid/debian/20250520T000000Z
URIs: http://mirror.invalid/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
`,
				"etc/apt/sources.list.d/other.sources.disabled": "Types: deb\nURIs: http://wrong.invalid\nSuites: bookworm\n",
			},
			want: Mirrors{Debian: "http://mirror.invalid/debian", Security: "http://mirror.invalid/debian-security"},
		},
		{
			name: "disabled and deb-src stanzas are skipped",
			files: map[string]string{
				"etc/apt/sources.list.d/a.sources": "Types: deb\nURIs: http://off.invalid\nSuites: bookworm\nEnabled: no\n\n" +
					"Types: deb-src\nURIs: http://src.invalid\nSuites: bookworm\n\n" +
					"Types: deb deb-src\nURIs: http://on.invalid/debian\nSuites:\n bookworm\n",
			},
			want: Mirrors{Debian: "http://on.invalid/debian"},
		},
		{
			name: "one-line sources.list",
			files: map[string]string{
				"etc/apt/sources.list": "# comment\ndeb-src http://src.invalid/debian bookworm main\n" +
					"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg arch=amd64] http://one.invalid/debian bookworm main\n" +
					"deb http://one.invalid/security bookworm-security main # trailing\n",
			},
			want: Mirrors{Debian: "http://one.invalid/debian", Security: "http://one.invalid/security"},
		},
		{
			name:  "no source for the suite",
			files: map[string]string{"etc/apt/sources.list": "deb http://one.invalid/debian trixie main\n"},
			err:   true,
		},
		{name: "no sources at all", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tc.files {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadMirrors(root, "bookworm")
			if tc.err {
				if err == nil {
					t.Fatalf("ReadMirrors = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ReadMirrors = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSourcesFile(t *testing.T) {
	m := Mirrors{Debian: "http://mirror.invalid/debian", Security: "http://mirror.invalid/debian-security"}
	got := m.sourcesFile("bookworm")
	for _, want := range []string{
		"URIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n",
		"URIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("sources file lacks %q:\n%s", want, got)
		}
	}
	// Reading it back yields the same mirrors.
	root := t.TempDir()
	p := filepath.Join(root, "etc/apt/sources.list.d/debian.sources")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
		t.Fatal(err)
	}
	if back, err := ReadMirrors(root, "bookworm"); err != nil || back != m {
		t.Errorf("ReadMirrors(sourcesFile) = %+v, %v; want %+v", back, err, m)
	}
}

package source

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sampleTree exercises root and nested .gitignore files, negations,
// anchoring, directory-only rules, .slipwayignore precedence, .git,
// symbolic links and executable files.
func sampleTree(t *testing.T) string {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		".gitignore":              "# build output\n*.log\n!important.log\nnode_modules/\n/build\ntmp-*\n",
		IgnoreFile:                "secrets/\n*.bak\n!docs/notes.bak\n!trace.log\n",
		"app.py":                  "print('hi')\n",
		"+x run.sh":               "#!/bin/sh\nexec python3 app.py\n",
		"debug.log":               "ignored by *.log",
		"important.log":           "re-included by !important.log",
		"trace.log":               "re-included by .slipwayignore",
		"tmp-1":                   "ignored",
		"build/out.bin":           "ignored: /build is anchored",
		"src/build/out.txt":       "kept: /build is anchored to the root",
		"node_modules/x.js":       "ignored",
		"src/node_modules/y.js":   "ignored at depth",
		"src/.gitignore":          "*.gen\n!keep.gen\n/local.txt\n",
		"src/a.gen":               "ignored by src/.gitignore",
		"src/keep.gen":            "kept",
		"src/local.txt":           "ignored: anchored in src",
		"src/sub/local.txt":       "kept",
		"src/sub/.git":            "gitdir: ../../.git/modules/sub",
		"secrets/key":             "ignored by .slipwayignore",
		"x.bak":                   "ignored by .slipwayignore",
		"docs/notes.bak":          "kept",
		".git/config":             "[core]",
		".git/HEAD":               "ref: refs/heads/main",
		"empty/":                  "",
		"link-to-app":             "-> app.py",
		"src/docs":                "-> ../docs",
		"dangling":                "-> not-there",
		"+x src/sub/tool":         "binary",
		"node_modules.txt":        "kept: not a directory",
		"src/build/nested/a.txt":  "kept",
		"docs/guide/index.md":     "# Guide",
		"docs/guide/.gitignore":   "!*.log\n",
		"docs/guide/example.log":  "re-included by a deeper .gitignore",
		"docs/guide/tmp-2":        "ignored by the root's tmp-*",
		"docs/guide/node_modules": "kept: a file, and node_modules/ matches directories only",
	})
	return dir
}

var sampleWant = []string{
	`.gitignore 644 "# build output\n*.log\n!important.log\nnode_modules/\n/build\ntmp-*\n"`,
	`.slipwayignore 644 "secrets/\n*.bak\n!docs/notes.bak\n!trace.log\n"`,
	`app.py 644 "print('hi')\n"`,
	`dangling -> not-there`,
	`docs/ 755`,
	`docs/guide/ 755`,
	`docs/guide/.gitignore 644 "!*.log\n"`,
	`docs/guide/example.log 644 "re-included by a deeper .gitignore"`,
	`docs/guide/index.md 644 "# Guide"`,
	`docs/guide/node_modules 644 "kept: a file, and node_modules/ matches directories only"`,
	`docs/notes.bak 644 "kept"`,
	`empty/ 755`,
	`important.log 644 "re-included by !important.log"`,
	`link-to-app -> app.py`,
	`node_modules.txt 644 "kept: not a directory"`,
	`run.sh 755 "#!/bin/sh\nexec python3 app.py\n"`,
	`src/ 755`,
	`src/.gitignore 644 "*.gen\n!keep.gen\n/local.txt\n"`,
	`src/build/ 755`,
	`src/build/nested/ 755`,
	`src/build/nested/a.txt 644 "kept"`,
	`src/build/out.txt 644 "kept: /build is anchored to the root"`,
	`src/docs -> ../docs`,
	`src/keep.gen 644 "kept"`,
	`src/sub/ 755`,
	`src/sub/local.txt 644 "kept"`,
	`src/sub/tool 755 "binary"`,
	`trace.log 644 "re-included by .slipwayignore"`,
}

func TestPackExtractRoundTrip(t *testing.T) {
	src := sampleTree(t)
	var buf bytes.Buffer
	if err := Pack(src, &buf); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	st, err := Extract(bytes.NewReader(buf.Bytes()), dst, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := listTree(t, dst)
	if !slices.Equal(got, sampleWant) {
		t.Errorf("extracted tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(sampleWant, "\n"))
	}
	want := Stats{Files: 18, Dirs: 7, Symlinks: 3}
	for _, line := range sampleWant {
		if name, _, _ := strings.Cut(line, " "); strings.HasSuffix(name, "/") {
			continue
		}
		if i := strings.Index(line, ` "`); i > 0 {
			want.Bytes += int64(len(unquote(t, line[i+1:])))
		}
	}
	if st != want {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
}

func unquote(t *testing.T, s string) string {
	t.Helper()
	out, err := strconv.Unquote(s)
	if err != nil {
		t.Fatalf("unquote %s: %v", s, err)
	}
	return out
}

func TestPackDeterministic(t *testing.T) {
	src := sampleTree(t)
	var a, b bytes.Buffer
	if err := Pack(src, &a); err != nil {
		t.Fatal(err)
	}
	// Touch everything: times must not reach the archive.
	later := time.Now().Add(time.Hour)
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.Mode()&os.ModeSymlink != 0 {
			return err
		}
		return os.Chtimes(p, later, later)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := Pack(src, &b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("the same tree packed to different bytes")
	}
}

func TestPackRejectsEscapingSymlink(t *testing.T) {
	for _, target := range []string{"/etc/passwd", "../outside", "sub/../../x"} {
		t.Run(target, func(t *testing.T) {
			src := t.TempDir()
			write(t, src, map[string]string{"a.txt": "a", "link": "-> " + target})
			err := Pack(src, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), `symbolic link "link"`) || !strings.Contains(err.Error(), IgnoreFile) {
				t.Fatalf("Pack = %v, want an error naming the link and %s", err, IgnoreFile)
			}
			// Ignoring the link lets the tree pack.
			write(t, src, map[string]string{IgnoreFile: "link\n"})
			if err := Pack(src, &bytes.Buffer{}); err != nil {
				t.Fatalf("Pack with the link ignored: %v", err)
			}
		})
	}
}

func TestPackNotADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	write(t, filepath.Dir(f), map[string]string{"f": "x"})
	if err := Pack(f, &bytes.Buffer{}); err == nil {
		t.Fatal("Pack of a file succeeded")
	}
	if err := Pack(filepath.Join(f, "missing"), &bytes.Buffer{}); err == nil {
		t.Fatal("Pack of a missing path succeeded")
	}
}

// TestExtractGNUTar extracts what GNU tar writes for `tar -czf - .`
// ("./" prefixes, its own headers), as a user might upload by hand.
func TestExtractGNUTar(t *testing.T) {
	bin, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("tar not installed")
	}
	src := t.TempDir()
	write(t, src, map[string]string{
		"a.txt": "a", "+x bin/run": "#!/bin/sh\n", "l": "-> a.txt",
		"deep/" + strings.Repeat("long-name/", 12) + "f.txt": "deep",
	})
	if err := os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "hard.txt")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-C", src, "--sort=name", "-czf", "-", ".")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	dst := t.TempDir()
	st, err := Extract(bytes.NewReader(out), dst, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 3 || st.Links != 1 || st.Symlinks != 1 {
		t.Errorf("stats = %+v, want 3 files, 1 hard link, 1 symlink", st)
	}
	if got, want := listTree(t, dst), listTree(t, src); !slices.Equal(got, want) {
		t.Errorf("extracted:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

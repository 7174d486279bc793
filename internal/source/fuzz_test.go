package source

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract feeds arbitrary bytes to Extract: it must never panic, never
// create anything beside its target, leave nothing behind on error, and on
// success leave only files, directories and links that stay inside. Each
// input is tried as is and gzip-compressed, so that mutations also reach
// the tar layer instead of dying at the gzip checksum.
func FuzzExtract(f *testing.F) {
	f.Add(tgz(f, dir("d/"), file("d/a.txt", "a"), symlink("d/l", "../d/a.txt"), hardlink("h", "d/a.txt")))
	f.Add(tarball(f, dir("d1/"), dir("d1/d2/"), symlink("d1/d2/up", "../.."), symlink("t", "d1/d2/up/../x")))
	f.Add(tarball(f, symlink("l", "."), file("l/x", "x"), file("a/b/c", "c"), hardlink("a/h", "a/b/c")))
	f.Fuzz(func(t *testing.T, data []byte) {
		extractInside(t, data)
		extractInside(t, gz(t, data))
	})
}

func extractInside(t *testing.T, data []byte) {
	parent := t.TempDir()
	dst := filepath.Join(parent, "out")
	_, err := Extract(bytes.NewReader(data), dst, Limits{MaxBytes: 1 << 20, MaxFiles: 64, MaxFileBytes: 256 << 10})
	entries, rerr := os.ReadDir(parent)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		if len(entries) != 0 {
			t.Fatalf("Extract failed (%v) and left %v behind", err, entries)
		}
		return
	}
	if len(entries) != 1 || entries[0].Name() != "out" {
		t.Fatalf("Extract created %v beside its target", entries)
	}
	checkInside(t, dst)
}

// checkInside fails if anything below dir is not a file, directory or
// symbolic link, or if a link resolves (or, dangling, points) outside dir.
func checkInside(t *testing.T, dir string) {
	t.Helper()
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	inside := func(p string) bool { return p == realDir || strings.HasPrefix(p, realDir+"/") }
	err = filepath.WalkDir(realDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch typ := d.Type(); {
		case typ.IsDir(), typ.IsRegular():
		case typ&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) {
				t.Errorf("%s: absolute link to %s", p, target)
			}
			if resolved, err := filepath.EvalSymlinks(p); err == nil {
				if !inside(resolved) {
					t.Errorf("%s -> %s resolves to %s, outside", p, target, resolved)
				}
			} else if j := filepath.Join(filepath.Dir(p), target); !inside(j) {
				t.Errorf("%s -> %s points outside (%s)", p, target, j)
			}
		default:
			t.Errorf("%s has type %v", p, typ)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// FuzzIgnoreMatch parses arbitrary ignore files and matches arbitrary
// paths: it must never panic, and a plain name always ignores itself.
func FuzzIgnoreMatch(f *testing.F) {
	f.Add("*.log\n!keep.log\nbuild/\n", "src/keep.log", false)
	f.Add("a/**/b\n[!a-c]x\n", "a/x/y/b", true)
	f.Add("\\#x \n[[:alpha:]]", "#x", false)
	f.Fuzz(func(t *testing.T, content, p string, isDir bool) {
		for _, base := range []string{"", "sub"} {
			l := &ignoreList{rules: parseIgnore(base, content)}
			l.excluded(p, isDir)
			l.excluded(base+"/"+p, isDir)
		}
		if content != "" && !strings.ContainsAny(content, "*?[\\!#/ \r\n\ufeff") {
			l := &ignoreList{rules: parseIgnore("", content)}
			if !l.excluded(content, isDir) || !l.excluded("a/"+content, isDir) {
				t.Errorf("pattern %q does not ignore itself", content)
			}
		}
	})
}

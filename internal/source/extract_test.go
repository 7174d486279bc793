package source

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestExtractRejects(t *testing.T) {
	valid := tgz(t, dir("src/"), file("src/main.go", strings.Repeat("package main\n", 100)), file("README", "hi"))
	zeros := make([]byte, 2<<20)
	small := Limits{MaxBytes: 1 << 20, MaxFiles: 10, MaxFileBytes: 512 << 10}

	cases := []struct {
		name string
		data []byte
		lim  Limits
		kind Kind
		msg  string // the exact message, or a substring when it starts with "…"
	}{
		{"traversal", tgz(t, file("../../etc/passwd", "root::0:0")), Limits{}, KindUnsafe,
			`upload rejected: "../../etc/passwd" escapes the source directory`},
		{"traversal after clean", tgz(t, file("a/../../x", "x")), Limits{}, KindUnsafe,
			`upload rejected: "a/../../x" escapes the source directory`},
		{"absolute path", tgz(t, file("/etc/cron.d/x", "x")), Limits{}, KindUnsafe,
			`upload rejected: "/etc/cron.d/x" is an absolute path; only paths inside the source directory are allowed`},
		{"absolute symlink", tgz(t, symlink("etc", "/etc")), Limits{}, KindUnsafe,
			`upload rejected: "etc" is a symbolic link to the absolute path "/etc"; only relative links inside the source directory are allowed`},
		{"symlink escape", tgz(t, symlink("up", "../..")), Limits{}, KindUnsafe,
			`upload rejected: "up" is a symbolic link to "../..", which is outside the source directory`},
		{"nested symlink escape", tgz(t, dir("a/"), symlink("a/l", "../../x")), Limits{}, KindUnsafe,
			`…"a/l" is a symbolic link to "../../x", which is outside`},
		{"symlink chain escape", tgz(t, dir("d1/"), dir("d1/d2/"), symlink("d1/d2/up", "../.."), symlink("t", "d1/d2/up/../x")), Limits{}, KindUnsafe,
			`upload rejected: "t" is a symbolic link to "d1/d2/up/../x", which leads outside the source directory through other links`},
		{"symlink chain escape, link made later", tgz(t, symlink("t", "d1/d2/up/../x"), dir("d1/d2/"), symlink("d1/d2/up", "../..")), Limits{}, KindUnsafe,
			`…"t" is a symbolic link to "d1/d2/up/../x", which leads outside`},
		{"symlink loop", tgz(t, symlink("a", "b/x"), symlink("b", "a/y")), Limits{}, KindInvalid,
			`…leads through too many other links`},
		{"symlink with 41 hops", tgz(t, file("f", "f"), symlink("self", "."), symlink("l", strings.Repeat("self/", 41)+"f")), Limits{}, KindInvalid,
			`upload rejected: "l" is a symbolic link that leads through too many other links`},
		{"symlinks beyond the check budget", tgz(t, manyLinks(40)...), Limits{MaxFiles: 100}, KindTooLarge,
			`…leads through more symbolic links than can be checked`},
		{"write through symlink", tgz(t, dir("real/"), symlink("l", "real"), file("l/x", "x")), Limits{}, KindUnsafe,
			`upload rejected: "l/x" is inside "l", which is a symbolic link; writing through links is not allowed`},
		{"write through escaping-looking symlink", tgz(t, symlink("l", "."), file("l/l/x", "x")), Limits{}, KindUnsafe,
			`…"l/l/x" is inside "l", which is a symbolic link`},
		{"overwrite symlink", tgz(t, file("f", "f"), symlink("l", "f"), file("l", "x")), Limits{}, KindInvalid,
			`upload rejected: "l" appears more than once in the archive`},
		{"duplicate file", tgz(t, file("f", "1"), file("f", "2")), Limits{}, KindInvalid,
			`…"f" appears more than once`},
		{"file under file", tgz(t, file("f", "1"), file("f/x", "2")), Limits{}, KindInvalid,
			`upload rejected: "f/x" is inside "f", which is a file`},
		{"hard link outside", tgz(t, hardlink("h", "../../etc/shadow")), Limits{}, KindUnsafe,
			`upload rejected: "h" is a hard link to "../../etc/shadow", which is outside the source directory`},
		{"hard link absolute", tgz(t, hardlink("h", "/etc/shadow")), Limits{}, KindUnsafe,
			`…"h" is a hard link to "/etc/shadow", which is outside`},
		{"hard link to missing", tgz(t, hardlink("h", "later"), file("later", "x")), Limits{}, KindUnsafe,
			`upload rejected: "h" is a hard link to "later", which is not a regular file earlier in the archive`},
		{"hard link to symlink", tgz(t, symlink("s", "x"), hardlink("h", "s")), Limits{}, KindUnsafe,
			`…which is not a regular file`},
		{"char device", tgz(t, ent{name: "dev/null", typ: tar.TypeChar}), Limits{}, KindUnsafe,
			`upload rejected: "dev/null" is a device or fifo; only regular files, directories and symbolic links are allowed`},
		{"block device", tgz(t, ent{name: "sda", typ: tar.TypeBlock}), Limits{}, KindUnsafe, `…"sda" is a device or fifo`},
		{"fifo", tgz(t, ent{name: "pipe", typ: tar.TypeFifo}), Limits{}, KindUnsafe, `…"pipe" is a device or fifo`},
		{"unknown type", tgz(t, ent{name: "odd", typ: 'Z'}), Limits{}, KindUnsafe, `…"odd" has unsupported type 'Z'`},
		{"bomb by count", tgz(t, manyFiles(11)...), small, KindTooLarge,
			`upload rejected: "f10" exceeds the limit of 10 files and directories`},
		{"bomb by count via implied dirs", tgz(t, file("a/b/c/d/e/f/g/h/i/j/k", "")), small, KindTooLarge,
			`…exceeds the limit of 10 files and directories`},
		{"bomb by file size", tgz(t, file("big", string(zeros))), small, KindTooLarge,
			`upload rejected: "big" is 2 MiB, over the limit of 512 KiB for a single file`},
		{"bomb by total size", tgz(t, file("a", string(zeros[:400<<10])), file("b", string(zeros[:400<<10])), file("c", string(zeros[:400<<10]))), small, KindTooLarge,
			`upload rejected: "c" takes the upload over its limit of 1 MiB for all files together`},
		{"huge size in header", tgz(t, ent{name: "huge", typ: tar.TypeReg, size: 1 << 40}), Limits{}, KindTooLarge,
			`upload rejected: "huge" is 1 TiB, over the limit of 512 MiB for a single file`},
		{"bomb after end of archive", gz(t, append(tarball(t, file("a", "a")), zeros...)), Limits{MaxBytes: 1, MaxFiles: 1}, KindTooLarge,
			`upload rejected: the archive expands to more than`},
		{"truncated gzip", valid[:len(valid)/2], Limits{}, KindInvalid, `upload rejected: the archive is truncated`},
		{"truncated gzip trailer", valid[:len(valid)-4], Limits{}, KindInvalid, `upload rejected: the archive is truncated`},
		{"truncated file data", gz(t, tarball(t, ent{name: "short", typ: tar.TypeReg, body: "abc", size: 100})), Limits{}, KindInvalid,
			`upload rejected: "short" is cut short: the archive is truncated`},
		{"bad gzip checksum", corruptTrailer(valid), Limits{}, KindInvalid, `…gzip checksum mismatch`},
		{"garbage", []byte("this is not an archive, just some text that someone uploaded"), Limits{}, KindInvalid,
			`upload rejected: the upload is not a gzip-compressed tar archive`},
		{"plain tar, not gzip", tarball(t, file("a", "a")), Limits{}, KindInvalid, `…not a gzip-compressed tar archive`},
		{"gzip of text", gz(t, []byte(strings.Repeat("hello world\n", 100))), Limits{}, KindInvalid,
			`upload rejected: the archive is not a valid tar archive`},
		{"trailing garbage", append(slices.Clone(valid), "garbage after the gzip stream"...), Limits{}, KindInvalid,
			`upload rejected: the upload has unexpected data after the end of the archive`},
		{"empty upload", nil, Limits{}, KindInvalid, `upload rejected: the upload is empty`},
		{"long component", tgz(t, file(strings.Repeat("n", 300), "")), Limits{}, KindInvalid, `…has a file name longer than 255 bytes`},
		{"long path", tgz(t, file(strings.Repeat("d/", 2100)+"f", "")), Limits{}, KindInvalid, `…is longer than 4096 bytes`},
		{"file named root", tgz(t, file(".", "x")), Limits{}, KindInvalid, `upload rejected: "." is not a valid file name`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "out")
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			st, err := Extract(bytes.NewReader(c.data), dst, c.lim)
			var rej *Error
			if !errors.As(err, &rej) {
				t.Fatalf("Extract = %+v, %v; want an *Error", st, err)
			}
			t.Log(err)
			if rej.Kind != c.kind {
				t.Errorf("kind = %v, want %v", rej.Kind, c.kind)
			}
			if sub, ok := strings.CutPrefix(c.msg, "…"); ok {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error = %q, want it to contain %q", err, sub)
				}
			} else if err.Error() != c.msg && !strings.HasPrefix(err.Error(), c.msg) {
				t.Errorf("error = %q\nwant      %q", err, c.msg)
			}
			if st != (Stats{}) {
				t.Errorf("stats = %+v after an error, want zero", st)
			}
			// Nothing left behind, nothing written beside the target.
			if left := listTree(t, parent); !slices.Equal(left, []string{"out/ 755"}) {
				t.Errorf("after rejection the parent holds %q", left)
			}
		})
	}
}

func manyFiles(n int) []ent {
	var ents []ent
	for i := range n {
		ents = append(ents, file("f"+strconv.Itoa(i), ""))
	}
	return ents
}

// manyLinks returns n links, each with a target of 2,000 components.
func manyLinks(n int) []ent {
	target := strings.Repeat("./", 2000) + "x"
	var ents []ent
	for i := range n {
		ents = append(ents, symlink("l"+strconv.Itoa(i), target))
	}
	return ents
}

// corruptTrailer flips a bit in the gzip CRC.
func corruptTrailer(b []byte) []byte {
	b = slices.Clone(b)
	b[len(b)-8] ^= 1
	return b
}

func TestExtractCleansUpDirItCreated(t *testing.T) {
	parent := t.TempDir()
	dst := filepath.Join(parent, "new", "out")
	data := tgz(t, file("ok.txt", "fine"), dir("d/"), file("d/x", "x"), file("../evil", "x"))
	if _, err := Extract(bytes.NewReader(data), dst, Limits{}); err == nil {
		t.Fatal("Extract succeeded")
	}
	if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("target left behind: %v", err)
	}
}

func TestExtractNonEmptyDir(t *testing.T) {
	dst := t.TempDir()
	write(t, dst, map[string]string{"existing": "keep me"})
	_, err := Extract(bytes.NewReader(tgz(t, file("a", "a"))), dst, Limits{})
	var rej *Error
	if err == nil || errors.As(err, &rej) {
		t.Fatalf("Extract = %v, want a plain error", err)
	}
	if got := listTree(t, dst); !slices.Equal(got, []string{`existing 644 "keep me"`}) {
		t.Fatalf("existing content changed: %q", got)
	}
}

type failingReader struct{ r io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestExtractReaderErrorIsNotRejection(t *testing.T) {
	data := tgz(t, file("a", "a"))
	_, err := Extract(&failingReader{bytes.NewReader(data[:len(data)/2])}, t.TempDir(), Limits{})
	var rej *Error
	if err == nil || errors.As(err, &rej) || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("Extract = %v, want the reader's error, not an *Error", err)
	}
}

func TestExtractAccepts(t *testing.T) {
	cases := []struct {
		name string
		ents []ent
		want []string
	}{
		{"implied dirs and modes", []ent{
			{name: "bin/run", typ: tar.TypeReg, body: "#!", mode: 0o4755},
			{name: "ro.txt", typ: tar.TypeReg, body: "r", mode: 0o444},
			{name: "secret/", typ: tar.TypeDir, mode: 0o050},
		}, []string{`bin/ 755`, `bin/run 755 "#!"`, `ro.txt 644 "r"`, `secret/ 750`}},
		{"dot slash prefixes and root entry", []ent{dir("./"), dir("./a/"), file("./a/b", "b")},
			[]string{`a/ 755`, `a/b 644 "b"`}},
		{"repeated directory", []ent{dir("a/"), file("a/x", "x"), {name: "a/", typ: tar.TypeDir, mode: 0o750}},
			[]string{`a/ 750`, `a/x 644 "x"`}},
		{"inner dotdot that stays inside", []ent{file("a/../b", "b")}, []string{`b 644 "b"`}},
		{"links inside", []ent{
			dir("a/"), dir("a/b/"), file("a/b/f", "f"),
			symlink("a/b/up", "../.."), symlink("top", "a/b/up/a/b/f"), symlink("dangling", "nope/../x/.."),
			symlink("dir-link", "a/b/"), hardlink("h", "a/b/f"),
		}, []string{`a/ 755`, `a/b/ 755`, `a/b/f 644 "f"`, `a/b/up -> ../..`, `dangling -> nope/../x/..`,
			`dir-link -> a/b/`, `h 644 "f"`, `top -> a/b/up/a/b/f`}},
		{"limits are inclusive", manyFiles(10), nil},
		{"symlink with 40 hops", []ent{file("f", "f"), symlink("self", "."), symlink("l", strings.Repeat("self/", 40)+"f")},
			[]string{`f 644 "f"`, `l -> ` + strings.Repeat("self/", 40) + "f", `self -> .`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := t.TempDir()
			if _, err := Extract(bytes.NewReader(tgz(t, c.ents...)), dst, Limits{MaxFiles: 10}); err != nil {
				t.Fatal(err)
			}
			if c.want == nil {
				return
			}
			if got := listTree(t, dst); !slices.Equal(got, c.want) {
				t.Errorf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

package source

import (
	"errors"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type ignoreCase struct {
	name  string
	files map[string]string // directory ("" = root) → .gitignore content
	path  string
	dir   bool
	want  bool
}

func root(content string) map[string]string { return map[string]string{"": content} }

var ignoreCases = []ignoreCase{
	{"no rules", root(""), "a.txt", false, false},
	{"blank lines and comments", root("\n# a.txt\n\n"), "a.txt", false, false},
	{"comment is not a pattern", root("#a.txt"), "#a.txt", false, false},
	{"escaped hash", root(`\#a.txt`), "#a.txt", false, true},
	{"star", root("*.log"), "debug.log", false, true},
	{"star at depth", root("*.log"), "a/b/debug.log", false, true},
	{"star matches dirs too", root("*.log"), "x.log", true, true},
	{"star not across slash", root("a/*.c"), "a/b/x.c", false, false},
	{"star within dir", root("a/*.c"), "a/x.c", false, true},
	{"star alone", root("*"), "anything/at/all", false, true},
	{"question mark", root("?.txt"), "a.txt", false, true},
	{"question mark one byte", root("?.txt"), "ab.txt", false, false},
	{"question mark not slash", root("a?b"), "a/b", false, false},
	{"class", root("[abc].txt"), "b.txt", false, true},
	{"class miss", root("[abc].txt"), "d.txt", false, false},
	{"class negated bang", root("[!abc].txt"), "d.txt", false, true},
	{"class negated caret", root("[^abc].txt"), "a.txt", false, false},
	{"class range", root("file[0-9]"), "file7", false, true},
	{"class posix", root("[[:upper:]]*"), "Makefile", false, true},
	{"class posix miss", root("[[:upper:]]*"), "makefile", false, false},
	{"class bracket first", root("a[]]b"), "a]b", false, true},
	{"class unterminated never matches", root("a[b"), "a[b", false, false},
	{"dir only matches dir", root("build/"), "build", true, true},
	{"dir only skips file", root("build/"), "build", false, false},
	{"dir only at depth", root("build/"), "src/build", true, true},
	{"inside excluded dir", root("build/"), "build/out/x.o", false, true},
	{"leading slash anchors", root("/build"), "build", false, true},
	{"leading slash not deeper", root("/build"), "src/build", false, false},
	{"inner slash anchors", root("doc/frotz"), "doc/frotz", false, true},
	{"inner slash not deeper", root("doc/frotz"), "a/doc/frotz", false, false},
	{"negation", root("*.log\n!keep.log"), "keep.log", false, false},
	{"negation others stay", root("*.log\n!keep.log"), "x.log", false, true},
	{"last rule wins", root("*.c\n!*.c\n*.c"), "x.c", false, true},
	{"no re-include under excluded dir", root("logs/\n!logs/keep.log"), "logs/keep.log", false, true},
	{"re-include under star", root("logs/*\n!logs/keep.log"), "logs/keep.log", false, false},
	{"re-include under star others", root("logs/*\n!logs/keep.log"), "logs/x.log", false, true},
	{"escaped bang", root(`\!important`), "!important", false, true},
	{"leading doublestar", root("**/foo"), "foo", false, true},
	{"leading doublestar deep", root("**/foo"), "a/b/foo", false, true},
	{"leading doublestar with dir", root("**/foo/bar"), "x/y/foo/bar", false, true},
	{"leading doublestar with dir top", root("**/foo/bar"), "foo/bar", false, true},
	{"trailing doublestar", root("abc/**"), "abc/x/y", false, true},
	{"trailing doublestar not the dir", root("abc/**"), "abc", true, false},
	{"inner doublestar zero dirs", root("a/**/b"), "a/b", false, true},
	{"inner doublestar many dirs", root("a/**/b"), "a/x/y/b", false, true},
	{"inner doublestar needs slash", root("a/**/b"), "ab", false, false},
	{"other doublestar is star", root("foo**bar"), "fooxbar", false, true},
	{"other doublestar not across slash", root("foo**bar"), "foo/bar", false, false},
	{"doublestar alone", root("**"), "a/b/c", false, true},
	{"trailing spaces trimmed", root("foo   "), "foo", false, true},
	{"escaped trailing space kept", root(`foo\ `), "foo ", false, true},
	{"crlf line", root("*.o\r\n"), "x.o", false, true},
	{"bare slash ignored", root("/\n!\n"), "x", false, false},
	{"nested negation", map[string]string{"": "*.tmp", "sub": "!keep.tmp"}, "sub/keep.tmp", false, false},
	{"nested negation only below", map[string]string{"": "*.tmp", "sub": "!keep.tmp"}, "keep.tmp", false, true},
	{"nested anchored", map[string]string{"sub": "/x"}, "sub/x", false, true},
	{"nested anchored not deeper", map[string]string{"sub": "/x"}, "sub/y/x", false, false},
	{"nested anchored not above", map[string]string{"sub": "/x"}, "x", false, false},
	{"nested dir only", map[string]string{"sub": "y/"}, "sub/a/y", true, true},
	{"nested doublestar", map[string]string{"sub": "**/z"}, "sub/a/z", false, true},
}

func (c ignoreCase) list() *ignoreList {
	// Rules in the order the walk adds them: shallower files first.
	l := &ignoreList{}
	for _, d := range []string{"", "sub"} {
		if content, ok := c.files[d]; ok {
			l.rules = append(l.rules, parseIgnore(d, content)...)
		}
	}
	return l
}

func TestIgnore(t *testing.T) {
	for _, c := range ignoreCases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.list().excluded(c.path, c.dir); got != c.want {
				t.Errorf("excluded(%q, dir=%v) with %q = %v, want %v", c.path, c.dir, c.files, got, c.want)
			}
		})
	}
}

// TestIgnoreAgreesWithGit runs the same table through `git check-ignore`,
// so the table itself is checked against git's behaviour. Each case lives in
// its own directory of one repository (a .gitignore anchors patterns to its
// own directory, so the cases do not interfere).
func TestIgnoreAgreesWithGit(t *testing.T) {
	git := requireGit(t)
	repo := t.TempDir()
	runGit(t, git, repo, "init", "-q")
	var stdin strings.Builder
	for i, c := range ignoreCases {
		caseDir := filepath.Join(repo, strconv.Itoa(i))
		for d, content := range c.files {
			write(t, caseDir, map[string]string{path.Join(d, ".gitignore"): content})
		}
		name := path.Join(strconv.Itoa(i), c.path)
		if c.dir {
			name += "/"
		}
		write(t, repo, map[string]string{name: ""})
		stdin.WriteString(path.Join(strconv.Itoa(i), c.path) + "\x00")
	}
	cmd := exec.Command(git, "-C", repo, "check-ignore", "--stdin", "-z", "--no-index")
	cmd.Env = gitEnv()
	cmd.Stdin = strings.NewReader(stdin.String())
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 1) {
		t.Fatalf("git check-ignore: %v", err)
	}
	ignored := map[string]bool{}
	for _, p := range strings.Split(string(out), "\x00") {
		ignored[p] = true
	}
	for i, c := range ignoreCases {
		if got := ignored[path.Join(strconv.Itoa(i), c.path)]; got != c.want {
			t.Errorf("%s: git says excluded(%q) = %v, table says %v", c.name, c.path, got, c.want)
		}
	}
}

func TestMatchTokensLinear(t *testing.T) {
	// A pattern that makes naive backtracking matchers exponential.
	pat := "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"
	toks, bad := compilePattern(pat)
	if bad {
		t.Fatal("pattern rejected")
	}
	text := strings.Repeat("a", 70)
	if matchTokens(toks, text) {
		t.Fatal("matched without b")
	}
	if !matchTokens(toks, text+"b") {
		t.Fatal("did not match with b")
	}
}

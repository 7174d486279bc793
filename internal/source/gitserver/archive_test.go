package gitserver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipwayhq/slipway/internal/source"
)

// Archive of a pushed commit is byte for byte what source.Pack makes of a
// clean checkout of it, and unpacks to the committed tree.
func TestArchiveRoundTrip(t *testing.T) {
	ts := newTestServer(t, nil)
	c := newClient(t)
	first := c.commit("old", map[string]string{"main.go": "package old\n"})
	sha := c.commit("app", map[string]string{
		"main.go":        "package main\n",
		"sub/data.txt":   "data\n",
		".gitignore":     "dist/\n",
		"dist/built.js":  "committed despite .gitignore\n",
		".slipwayignore": "secret.txt\n",
		"secret.txt":     "not for the build\n",
	})
	if err := os.Symlink("sub/data.txt", filepath.Join(c.dir, "link")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(c.dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	c.git("add", "-A")
	c.git("commit", "-q", "-m", "link and script")
	sha = c.git("rev-parse", "HEAD")
	c.git("push", "-q", ts.remote("app", testToken), "main")

	var got bytes.Buffer
	if err := Archive(context.Background(), ts.RepoDir("app"), sha, &got); err != nil {
		t.Fatal(err)
	}
	checkout := filepath.Join(t.TempDir(), "checkout")
	c.git("clone", "-q", c.dir, checkout)
	var want bytes.Buffer
	if err := source.Pack(checkout, &want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Error("Archive differs from source.Pack of a clean checkout")
	}

	tree := filepath.Join(t.TempDir(), "tree")
	if _, err := source.Extract(bytes.NewReader(got.Bytes()), tree, source.Limits{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(tree, "main.go")); string(b) != "package main\n" {
		t.Errorf("main.go = %q", b)
	}
	if l, err := os.Readlink(filepath.Join(tree, "link")); err != nil || l != "sub/data.txt" {
		t.Errorf("link: %q %v", l, err)
	}
	if fi, err := os.Stat(filepath.Join(tree, "run.sh")); err != nil || fi.Mode()&0o100 == 0 {
		t.Errorf("run.sh not executable: %v", err)
	}
	for _, gone := range []string{"secret.txt", "dist", ".git"} {
		if _, err := os.Lstat(filepath.Join(tree, gone)); !os.IsNotExist(err) {
			t.Errorf("%s should not be in the archive: %v", gone, err)
		}
	}

	// An older commit is archived as it was.
	got.Reset()
	if err := Archive(context.Background(), ts.RepoDir("app"), first, &got); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(t.TempDir(), "old")
	source.Extract(&got, old, source.Limits{})
	if b, _ := os.ReadFile(filepath.Join(old, "main.go")); string(b) != "package old\n" {
		t.Errorf("old main.go = %q", b)
	}
	left, _ := filepath.Glob(filepath.Join(ts.cfg.Root, ".archive-*"))
	if len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

func TestArchiveErrors(t *testing.T) {
	ts := newTestServer(t, nil)
	c := newClient(t)
	c.commit("a", map[string]string{"f": "a"})
	if err := os.Symlink("/etc/passwd", filepath.Join(c.dir, "escape")); err != nil {
		t.Fatal(err)
	}
	c.git("add", "-A")
	c.git("commit", "-q", "-m", "hostile")
	hostile := c.git("rev-parse", "HEAD")
	c.git("push", "-q", ts.remote("app", testToken), "main")
	dir := ts.RepoDir("app")

	var rej *source.Error
	err := Archive(context.Background(), dir, hostile, &bytes.Buffer{})
	if !errors.As(err, &rej) || rej.Kind != source.KindUnsafe {
		t.Errorf("archive of a tree with an absolute link: %v", err)
	}
	err = Archive(context.Background(), dir, strings.Repeat("1", 40), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "git archive") {
		t.Errorf("archive of an unknown commit: %v", err)
	}
	for _, bad := range []string{"HEAD", "--output=/tmp/x", "abc"} {
		if err := Archive(context.Background(), dir, bad, &bytes.Buffer{}); err == nil {
			t.Errorf("Archive(%q) accepted it", bad)
		}
	}
}

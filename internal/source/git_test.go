package source

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestGitInfo(t *testing.T) {
	git := requireGit(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	repo := t.TempDir()
	runGit(t, git, repo, "init", "-q", "-b", "main")
	if _, ok := GitInfo(ctx, repo); ok {
		t.Error("GitInfo ok in a repository without commits")
	}
	write(t, repo, map[string]string{"app.py": "print('hi')\n", "sub/x": "x", ".gitignore": "*.log\n"})
	runGit(t, git, repo, "add", ".")
	runGit(t, git, repo, "commit", "-q", "-m", "Add the app\n\nIt says hi.\nTwice, maybe.")
	sha := strings.TrimSpace(runGit(t, git, repo, "rev-parse", "HEAD"))

	info, ok := GitInfo(ctx, filepath.Join(repo, "sub")) // from a subdirectory
	if !ok {
		t.Fatal("GitInfo not ok in a checkout")
	}
	want := Info{
		Branch:  "main",
		Commit:  sha,
		Message: "Add the app\n\nIt says hi.\nTwice, maybe.",
		Author:  "Ada Lovelace <ada@example.com>",
	}
	if info != want {
		t.Errorf("GitInfo = %+v\nwant      %+v", info, want)
	}
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(info.Commit) {
		t.Errorf("commit %q is not a full SHA", info.Commit)
	}

	// Ignored files keep it clean; an untracked one makes it dirty.
	write(t, repo, map[string]string{"debug.log": "x"})
	if info, _ := GitInfo(ctx, repo); info.Dirty {
		t.Error("dirty because of an ignored file")
	}
	write(t, repo, map[string]string{"new.txt": "x"})
	if info, _ := GitInfo(ctx, repo); !info.Dirty {
		t.Error("not dirty with an untracked file")
	}

	// Detached HEAD: no branch, same commit.
	runGit(t, git, repo, "checkout", "-q", "--detach")
	info, ok = GitInfo(ctx, repo)
	if !ok || info.Branch != "" || info.Commit != sha {
		t.Errorf("detached: GitInfo = %+v, %v; want no branch and commit %s", info, ok, sha)
	}
}

func TestGitInfoOutsideRepo(t *testing.T) {
	requireGit(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	if info, ok := GitInfo(ctx, dir); ok {
		t.Errorf("GitInfo outside a repository = %+v, true", info)
	}
	if _, ok := GitInfo(ctx, filepath.Join(dir, "missing")); ok {
		t.Error("GitInfo of a missing directory is ok")
	}
}

func TestGitInfoIgnoresGitEnv(t *testing.T) {
	git := requireGit(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other := t.TempDir()
	runGit(t, git, other, "init", "-q")
	write(t, other, map[string]string{"f": "f"})
	runGit(t, git, other, "add", ".")
	runGit(t, git, other, "commit", "-q", "-m", "other")
	// As inside a git hook of another repository.
	t.Setenv("GIT_DIR", filepath.Join(other, ".git"))
	if info, ok := GitInfo(ctx, t.TempDir()); ok {
		t.Errorf("GitInfo followed GIT_DIR: %+v", info)
	}
}

func TestGitInfoWithoutGit(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, ok := GitInfo(context.Background(), "."); ok {
		t.Error("GitInfo ok without a git binary")
	}
}

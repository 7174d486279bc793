package source

import (
	"context"
	"os"
	"os/exec"
	"strings"
)

// Info describes the commit a source tree was taken from.
type Info struct {
	// Branch is the checked-out branch ("main"), empty when HEAD is detached.
	Branch string
	// Commit is the full SHA of HEAD.
	Commit string
	// Message is the commit's subject and body, without trailing newlines.
	Message string
	// Author is "Name <email>".
	Author string
	// Dirty reports uncommitted changes or untracked (not ignored) files.
	Dirty bool
}

// GitInfo describes the git checkout that contains dir, using the git
// binary. ok is false when git is not installed, dir is not inside a work
// tree, HEAD has no commit yet, or ctx ends first. GIT_* variables of the
// environment (GIT_DIR, GIT_WORK_TREE, …) are ignored, so a server running
// inside a git hook still looks at dir.
func GitInfo(ctx context.Context, dir string) (Info, bool) {
	bin, err := exec.LookPath("git")
	if err != nil {
		return Info{}, false
	}
	env := gitEnv()
	git := func(args ...string) (string, error) {
		args = append([]string{"-C", dir, "-c", "color.ui=false", "-c", "core.quotepath=off"}, args...)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		out, err := cmd.Output()
		return string(out), err
	}

	out, err := git("log", "-1", "--no-show-signature", "--format=%H%x00%an <%ae>%x00%B", "HEAD", "--")
	if err != nil {
		return Info{}, false
	}
	parts := strings.SplitN(out, "\x00", 3)
	if len(parts) != 3 || len(parts[0]) < 40 {
		return Info{}, false
	}
	info := Info{
		Commit:  parts[0],
		Author:  parts[1],
		Message: strings.TrimRight(parts[2], "\n"),
	}
	// Exits 1 when HEAD is detached: Branch stays empty.
	if out, err := git("symbolic-ref", "--quiet", "--short", "HEAD"); err == nil {
		info.Branch = strings.TrimSpace(out)
	}
	if out, err := git("status", "--porcelain", "--untracked-files=normal"); err == nil {
		info.Dirty = strings.TrimSpace(out) != ""
	}
	return info, true
}

// gitEnv is the process environment without GIT_* variables, with prompts
// and optional locks (status refreshing the index) turned off.
func gitEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	return append(env, "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0")
}

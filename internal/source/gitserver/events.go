package gitserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"

	"github.com/slipwayhq/slipway/internal/source"
)

// events turns the commands of a finished push into events, keeping only
// those whose ref now holds the pushed value (receive-pack may have refused
// some, or failed altogether).
func (s *Server) events(ctx context.Context, project, dir string, cmds []command) []PushEvent {
	if len(cmds) == 0 {
		return nil
	}
	refs, err := s.refs(ctx, dir)
	if err != nil {
		s.log.Error("git: reading refs after a push", "project", project, "err", err)
		return nil
	}
	var events []PushEvent
	for _, c := range cmds {
		ev := PushEvent{Push: source.NewPush(project, c.ref, c.old, c.new), RepoDir: dir}
		now, exists := refs[c.ref]
		switch {
		case ev.Deleted && exists, !ev.Deleted && now != c.new:
			continue // not applied
		}
		if !ev.Deleted {
			if !ev.Created {
				ev.Forced = s.forced(ctx, dir, c.old, c.new)
			}
			ev.Author, ev.Message = s.commitInfo(ctx, dir, c.new)
		}
		events = append(events, ev)
	}
	return events
}

// refs maps every ref of the repository to the object it names.
func (s *Server) refs(ctx context.Context, dir string) (map[string]string, error) {
	out, err := s.command(ctx, dir, "for-each-ref", "--format=%(objectname) %(refname)").Output()
	if err != nil {
		return nil, err
	}
	refs := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if sha, ref, ok := strings.Cut(sc.Text(), " "); ok {
			refs[ref] = sha
		}
	}
	return refs, sc.Err()
}

// forced reports whether old is not an ancestor of new. When that cannot
// be told (old is gone), the update counts as forced.
func (s *Server) forced(ctx context.Context, dir, old, new string) bool {
	err := s.command(ctx, dir, "merge-base", "--is-ancestor", old, new).Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return false
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return true
	default:
		s.log.Warn("git: telling a forced push", "dir", dir, "old", old, "new", new, "err", err)
		return true
	}
}

// commitInfo returns the author ("Name <email>") and message of the commit
// sha names (peeling tags); both empty when it is not a commit.
func (s *Server) commitInfo(ctx context.Context, dir, sha string) (author, message string) {
	out, err := s.command(ctx, dir, "-c", "core.quotepath=off", "log", "-1", "--no-show-signature",
		"--format=%an <%ae>%x00%B", sha+"^{commit}", "--").Output()
	if err != nil {
		return "", ""
	}
	author, message, _ = strings.Cut(string(out), "\x00")
	return author, strings.TrimRight(message, "\n")
}

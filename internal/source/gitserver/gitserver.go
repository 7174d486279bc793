// Package gitserver receives `git push` over smart HTTP into one bare
// repository per project, and tells a Pusher about every ref the push
// updated while the pushing client is still listening.
//
// A Server is an http.Handler for these paths (relative to where it is
// mounted; the server mounts it at /git/):
//
//	GET  /<project>.git/info/refs?service=git-receive-pack   (and git-upload-pack)
//	POST /<project>.git/git-receive-pack
//	POST /<project>.git/git-upload-pack
//
// The ".git" suffix is optional. Every request must pass Config.Authorize
// (HTTP basic auth with an API token as the password); otherwise it is
// answered 401 with `WWW-Authenticate: Basic realm="slipway"`, which makes
// git ask for credentials or print "Authentication failed".
//
// # How the build log reaches the pushing client
//
// Git's own hooks run inside receive-pack, and their output travels to the
// client on side band 2 of the response, where git prints it as "remote: "
// lines. The Server produces the same stream without a hook: it runs `git
// receive-pack --stateless-rpc` itself and relays its output packet by
// packet (pkt-line framing, gitprotocol-common(5)). When the client asked
// for side-band-64k (every git since 1.6.5 does), everything receive-pack
// sends is wrapped in side-band packets and ends with one flush packet
// ("0000"). The Server forwards everything but that final flush — so the
// client already has receive-pack's status report — then calls the Pusher
// for each updated ref with a writer that frames each Write as side-band 2
// packets (flushed to the network at once), and only then sends the flush
// that ends the response. The git client prints those packets as they
// arrive and exits when the flush comes. While the Pusher is silent, an
// empty band-1 packet ("0005\x01", what receive-pack's receive.keepAlive
// sends) is written every Config.KeepAlive so proxies do not drop the idle
// connection.
//
// This gives the semantics of a post-receive hook (the refs are updated
// before the Pusher runs, and the Pusher cannot reject the push) without a
// hook program, a callback socket or an internal token.
//
// # Pushes, force pushes, deleted branches
//
// The repository accepts every push: fast-forward or not, creations and
// deletions (receive.denyNonFastForwards and receive.denyDeletes are off).
// After receive-pack exits the Server reads the refs back and calls the
// Pusher once per command whose ref now has the pushed value, in the order
// the client sent them: a force push (the old commit is not an ancestor of
// the new one) has Forced set and is otherwise an ordinary push; a deleted
// ref has Deleted set and no commit. Refs outside refs/heads/ (tags) are
// reported with an empty Branch.
package gitserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/internal/source"
)

// Pusher is told about each ref a push updated.
//
// Push runs while the git client waits: whatever it writes to out is shown
// by the client as "remote: " lines as soon as it is written (out is safe
// for concurrent use and fails once Push has returned). ctx ends when the
// client goes away, so work that must outlive the push (a deployment) must
// not be bound to it. An error is shown to the client as
// "remote: error: <err>" and logged; it does not undo the push.
type Pusher interface {
	Push(ctx context.Context, ev PushEvent, out io.Writer) error
}

// PushFunc adapts a function to a Pusher.
type PushFunc func(ctx context.Context, ev PushEvent, out io.Writer) error

// Push calls f.
func (f PushFunc) Push(ctx context.Context, ev PushEvent, out io.Writer) error {
	return f(ctx, ev, out)
}

// ZeroSHA is the object name git uses for "no object" in a ref update.
const ZeroSHA = "0000000000000000000000000000000000000000"

// PushEvent is one ref updated by a push. OldSHA is ZeroSHA when the push
// created Ref, NewSHA ZeroSHA when it deleted it.
type PushEvent struct {
	source.Push
	// RepoDir is the bare repository, for Archive.
	RepoDir string
}

// Config configures a Server. Root and Authorize are required.
type Config struct {
	// Root holds one bare repository per project, <Root>/<project>.git. It
	// is created if missing.
	Root string
	// Authorize reports whether a request may read and push. Every request
	// is checked first; the server's token check fits (basic auth with the
	// token as the password).
	Authorize func(*http.Request) bool
	// Exists reports whether project exists; a request for one that does
	// not is answered 404 (git: "repository ... not found"). If nil, every
	// project name that is a valid DNS label is served, its repository
	// created on first use.
	Exists func(ctx context.Context, project string) (bool, error)
	// Pusher is called for every ref a push updated. If nil, pushes are
	// only stored.
	Pusher Pusher
	// MaxPushBytes bounds the body of one push request (the pack). If zero,
	// 1 GiB.
	MaxPushBytes int64
	// KeepAlive is how long the connection to a pushing client may stay
	// silent while the Pusher runs before an empty keep-alive packet is
	// sent. If zero, 5 seconds (git's receive.keepAlive default).
	KeepAlive time.Duration
	// Log receives operational messages. If nil, slog.Default().
	Log *slog.Logger
}

// Server serves the projects' repositories over git's smart HTTP protocol.
type Server struct {
	cfg Config
	git string // path of the git binary
	log *slog.Logger
}

// New validates cfg and returns a Server. It fails when git is not
// installed.
func New(cfg Config) (*Server, error) {
	if cfg.Root == "" || cfg.Authorize == nil {
		return nil, errors.New("gitserver: Root and Authorize are required")
	}
	if cfg.MaxPushBytes <= 0 {
		cfg.MaxPushBytes = 1 << 30
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	bin, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("gitserver: %w", err)
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("gitserver: %w", err)
	}
	cfg.Root = abs
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return nil, fmt.Errorf("creating git root: %w", err)
	}
	return &Server{cfg: cfg, git: bin, log: cfg.Log}, nil
}

// ErrInvalidProject reports a project name that is not a DNS label.
var ErrInvalidProject = errors.New("invalid project name")

var projectName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func validProject(project string) error {
	if !projectName.MatchString(project) {
		return fmt.Errorf("%w: %q", ErrInvalidProject, project)
	}
	return nil
}

// RepoDir returns where project's bare repository is (or will be).
func (s *Server) RepoDir(project string) string {
	return filepath.Join(s.cfg.Root, project+".git")
}

// Ensure creates project's bare repository unless it exists, and returns
// its directory. Concurrent calls are safe: the repository is initialised
// under a temporary name and renamed into place.
func (s *Server) Ensure(ctx context.Context, project string) (string, error) {
	if err := validProject(project); err != nil {
		return "", err
	}
	dir := s.RepoDir(project)
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err == nil {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(s.cfg.Root, "."+project+".init-")
	if err != nil {
		return "", fmt.Errorf("creating repository for %s: %w", project, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	// No template: no sample hooks, no description file. Pushes may rewrite
	// and delete branches; the Server reports those as Forced and Deleted.
	if out, err := s.command(ctx, "", "init", "--quiet", "--bare", "--template=", "--initial-branch=main", tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("creating repository for %s: %w: %s", project, err, strings.TrimSpace(string(out)))
	}
	for _, kv := range [][2]string{
		{"receive.denyNonFastForwards", "false"},
		{"receive.denyDeletes", "false"},
		{"receive.denyDeleteCurrent", "false"},
		// The Server runs gc itself once it has read what the push
		// replaced (see receive).
		{"receive.autogc", "false"},
	} {
		if out, err := s.command(ctx, tmp, "config", kv[0], kv[1]).CombinedOutput(); err != nil {
			return "", fmt.Errorf("configuring repository for %s: %w: %s", project, err, strings.TrimSpace(string(out)))
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "HEAD")); serr == nil {
			return dir, nil // created meanwhile by someone else
		}
		return "", fmt.Errorf("creating repository for %s: %w", project, err)
	}
	return dir, nil
}

// Remove deletes project's repository, if any.
func (s *Server) Remove(project string) error {
	if err := validProject(project); err != nil {
		return err
	}
	if err := os.RemoveAll(s.RepoDir(project)); err != nil {
		return fmt.Errorf("removing repository of %s: %w", project, err)
	}
	return nil
}

// command prepares git with the environment every git run of this package
// gets (see gitEnv), in repository dir unless dir is empty.
func (s *Server) command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	return gitCommand(ctx, s.git, dir, args...)
}

func gitCommand(ctx context.Context, bin, dir string, args ...string) *exec.Cmd {
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = gitEnv()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// gitEnv is the process environment without GIT_* variables and without
// the system's and the user's git configuration, so that what the server
// does depends only on the repositories' own config (a global
// core.hooksPath, say, must not run hooks on pushes).
func gitEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	return append(env, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0")
}

var (
	_ http.Handler = (*Server)(nil)
	_ Pusher       = PushFunc(nil)
)

package gitserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/source"
)

const testToken = "sw_test_token"

func requireGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("git is not installed")
		}
		t.Skip("skipping: git is not installed (set CI to make this fatal)")
	}
}

// recorder is a Pusher that records events and runs an optional function.
type recorder struct {
	mu     sync.Mutex
	events []PushEvent
	fn     func(ctx context.Context, ev PushEvent, out io.Writer) error
}

func (r *recorder) Push(ctx context.Context, ev PushEvent, out io.Writer) error {
	r.mu.Lock()
	r.events = append(r.events, ev)
	fn := r.fn
	r.mu.Unlock()
	if fn != nil {
		return fn(ctx, ev, out)
	}
	fmt.Fprintf(out, "received %s %s\n", ev.Ref, source.ShortSHA(ev.NewSHA))
	return nil
}

func (r *recorder) take() []PushEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

// testServer is a Server mounted at /git/ of an httptest server, as the
// slipway server mounts it.
type testServer struct {
	*Server
	url    string // http://127.0.0.1:port
	pusher *recorder

	mu       sync.Mutex
	requests []string // "METHOD path content-length"
}

func newTestServer(t *testing.T, mod func(*Config)) *testServer {
	t.Helper()
	requireGit(t)
	rec := &recorder{}
	cfg := Config{
		Root: filepath.Join(t.TempDir(), "git"),
		Authorize: func(r *http.Request) bool {
			_, pw, ok := r.BasicAuth()
			return ok && pw == testToken
		},
		Pusher: rec,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, pusher: rec}
	mux := http.NewServeMux()
	mux.Handle("/git/", http.StripPrefix("/git", s))
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		ts.requests = append(ts.requests, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, r.ContentLength))
		ts.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	ts.url = hs.URL
	return ts
}

// remote is the URL of project's repository with the given password.
func (ts *testServer) remote(project, password string) string {
	return strings.Replace(ts.url, "http://", "http://slipway:"+password+"@", 1) + "/git/" + project + ".git"
}

// client is a git work tree driven by the git binary with an isolated
// configuration.
type client struct {
	t   *testing.T
	dir string
	env []string
}

func newClient(t *testing.T) *client {
	t.Helper()
	home := t.TempDir()
	c := &client{t: t, dir: filepath.Join(home, "work"), env: []string{
		"HOME=" + home, "PATH=" + os.Getenv("PATH"), "LANG=C", "LC_ALL=C",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Ada Lovelace", "GIT_AUTHOR_EMAIL=ada@example.com",
		"GIT_COMMITTER_NAME=Ada Lovelace", "GIT_COMMITTER_EMAIL=ada@example.com",
	}}
	c.git("init", "-q", "-b", "main", c.dir)
	return c
}

func (c *client) cmd(args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c.t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = c.dir
	if _, err := os.Stat(c.dir); err != nil {
		cmd.Dir = ""
	}
	cmd.Env = c.env
	return cmd
}

// git runs git and fails the test when it fails.
func (c *client) git(args ...string) string {
	c.t.Helper()
	out, err := c.cmd(args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// try runs git and returns its combined output and error.
func (c *client) try(args ...string) (string, error) {
	out, err := c.cmd(args...).CombinedOutput()
	return string(out), err
}

// commit writes files (name → content) and commits them.
func (c *client) commit(msg string, files map[string]string) string {
	c.t.Helper()
	for name, content := range files {
		p := filepath.Join(c.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			c.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
	c.git("add", "-A", "-f")
	c.git("commit", "-q", "-m", msg)
	return c.git("rev-parse", "HEAD")
}

// remoteLines returns the "remote: " lines of git's output, trimmed of the
// padding git adds.
func remoteLines(out string) []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l, ok := strings.CutPrefix(sc.Text(), "remote: "); ok {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return lines
}

func contains(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// Package serverproc runs the slipway binary as a child process on its own
// data directory, and talks to it the way users do: over its REST API and
// through its router. The fault suite (test/fault) and the benchmarks
// (bench/) share it.
//
// A Server can be killed with SIGKILL at any moment and started again on
// the same data directory and addresses, which is what crash tests need and
// what an in-process server cannot do.
//
// App instances outlive the server by design. Callers stop what they
// deployed (Client.StopAll) before stopping the server, and call Sweep on
// the data directory afterwards to remove whatever is left (runc
// containers, overlay mounts, network namespaces) even after a failure.
package serverproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultToken is the admin token a Server bootstraps when Config.Token is
// empty.
const DefaultToken = "sw_serverproc_admin_token"

// Config describes a server to run. DataDir and Binary are required.
type Config struct {
	// Binary is the slipway executable.
	Binary string
	// DataDir is the server's --data directory.
	DataDir string
	// Listen and Router are the API and router addresses. If empty, free
	// loopback ports are picked once, at the first Start, and kept across
	// restarts (image references stored by the server name the registry's
	// address).
	Listen, Router string
	// Token is the admin token created at the first start. If empty,
	// DefaultToken.
	Token string
	// BaseImages is SLIPWAY_BASE_IMAGES. If empty, the environment's
	// SLIPWAY_BASE_IMAGES, else /var/lib/slipway/base-images.
	BaseImages string
	// IdleTimeout is passed as --idle-timeout when non-zero; a negative
	// value passes 0 (never scale to zero).
	IdleTimeout time.Duration
	// DeployWindow is passed as --deploy-window when non-zero.
	DeployWindow time.Duration
	// DNSUpstream is passed as --dns-upstream (IP:PORT, comma-separated:
	// where the instances' resolver forwards) when not empty. If empty,
	// the server forwards to the host's resolvers.
	DNSUpstream string
	// Args are extra arguments after "server".
	Args []string
	// Env are extra KEY=VALUE environment variables.
	Env []string
	// LogPath receives the server's stdout and stderr, appended across
	// restarts. If empty, <DataDir>/../server-<base of DataDir>.log.
	LogPath string
	// StartTimeout bounds the wait for the API to answer. If zero, 3
	// minutes.
	StartTimeout time.Duration
}

// Server is a slipway server running as a child process.
type Server struct {
	cfg Config

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// New checks cfg and fills in its defaults; nothing is started.
func New(cfg Config) (*Server, error) {
	if cfg.Binary == "" || cfg.DataDir == "" {
		return nil, errors.New("serverproc: Binary and DataDir are required")
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = abs
	if cfg.Token == "" {
		cfg.Token = DefaultToken
	}
	if cfg.BaseImages == "" {
		cfg.BaseImages = BaseImagesDir()
	}
	if cfg.LogPath == "" {
		cfg.LogPath = filepath.Join(filepath.Dir(abs), "server-"+filepath.Base(abs)+".log")
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 3 * time.Minute
	}
	for _, a := range []*string{&cfg.Listen, &cfg.Router} {
		if *a == "" {
			p, err := FreePort()
			if err != nil {
				return nil, err
			}
			*a = "127.0.0.1:" + strconv.Itoa(p)
		}
	}
	return &Server{cfg: cfg}, nil
}

// Start starts a server and waits until it answers.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return s, s.Start(ctx)
}

// BaseImagesDir is where the offline base images are: SLIPWAY_BASE_IMAGES
// or /var/lib/slipway/base-images.
func BaseImagesDir() string {
	if d := os.Getenv("SLIPWAY_BASE_IMAGES"); d != "" {
		return d
	}
	return "/var/lib/slipway/base-images"
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Config returns the server's configuration, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// API is the base URL of the API ("http://127.0.0.1:PORT").
func (s *Server) API() string { return "http://" + s.cfg.Listen }

// Router is the router's address ("127.0.0.1:PORT").
func (s *Server) Router() string { return s.cfg.Router }

// APIPort is the port of the API listener.
func (s *Server) APIPort() int {
	_, p, _ := net.SplitHostPort(s.cfg.Listen)
	n, _ := strconv.Atoi(p)
	return n
}

// Token is the admin token.
func (s *Server) Token() string { return s.cfg.Token }

// DataDir is the server's data directory.
func (s *Server) DataDir() string { return s.cfg.DataDir }

// LogPath is the file holding the server's output.
func (s *Server) LogPath() string { return s.cfg.LogPath }

// Client returns an API client for the server.
func (s *Server) Client() *Client {
	return NewClient(s.API(), s.cfg.Token, s.cfg.Router)
}

// Start starts the server process (again, after Kill or Stop) and waits
// until its API answers GET /api/v1/health.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.cmd != nil && !s.exitedLocked() {
		s.mu.Unlock()
		return errors.New("serverproc: server already running")
	}
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		s.mu.Unlock()
		return err
	}
	logf, err := os.OpenFile(s.cfg.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("opening server log: %w", err)
	}
	fmt.Fprintf(logf, "\n==== serverproc: starting %s at %s ====\n", s.cfg.Binary, time.Now().Format(time.RFC3339Nano))
	args := []string{"server", "--data", s.cfg.DataDir, "--listen", s.cfg.Listen, "--router", s.cfg.Router}
	if s.cfg.IdleTimeout > 0 {
		args = append(args, "--idle-timeout", s.cfg.IdleTimeout.String())
	} else if s.cfg.IdleTimeout < 0 {
		args = append(args, "--idle-timeout", "0")
	}
	if s.cfg.DeployWindow > 0 {
		args = append(args, "--deploy-window", s.cfg.DeployWindow.String())
	}
	if s.cfg.DNSUpstream != "" {
		args = append(args, "--dns-upstream", s.cfg.DNSUpstream)
	}
	args = append(args, s.cfg.Args...)
	cmd := exec.Command(s.cfg.Binary, args...)
	cmd.Env = append(os.Environ(),
		"SLIPWAY_BOOTSTRAP_TOKEN="+s.cfg.Token,
		"SLIPWAY_BASE_IMAGES="+s.cfg.BaseImages,
	)
	cmd.Env = append(cmd.Env, s.cfg.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a terminal's ^C reaches it only through
	// us; and it dies with us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.mu.Unlock()
		return fmt.Errorf("starting %s: %w", s.cfg.Binary, err)
	}
	exited := make(chan struct{})
	s.cmd, s.exited, s.err = cmd, exited, nil
	go func() {
		err := cmd.Wait()
		logf.Close()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(exited)
	}()
	s.mu.Unlock()
	return s.waitHealthy(ctx, exited)
}

func (s *Server) waitHealthy(ctx context.Context, exited chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := c.Get(s.API() + "/api/v1/health")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("server exited during start (%v); its log:\n%s", s.exitErr(), s.LogTail(40))
		case <-ctx.Done():
			s.Kill()
			return fmt.Errorf("server did not answer within %s; its log:\n%s", s.cfg.StartTimeout, s.LogTail(40))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Server) exitedLocked() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// PID is the server process's id, or 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.exitedLocked() {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the server process is alive.
func (s *Server) Running() bool { return s.PID() != 0 }

// Kill sends SIGKILL to the server and waits for it to be gone. Killing a
// server that is not running does nothing.
func (s *Server) Kill() error { return s.signal(syscall.SIGKILL, 30*time.Second) }

// Stop sends SIGTERM and waits up to timeout for a clean exit, then kills.
func (s *Server) Stop(timeout time.Duration) error {
	if err := s.signal(syscall.SIGTERM, timeout); err != nil {
		return s.Kill()
	}
	return nil
}

func (s *Server) signal(sig syscall.Signal, timeout time.Duration) error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("server did not exit within %s of %s", timeout, sig)
	}
}

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string {
	f, err := os.Open(s.cfg.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// RSS returns the resident set size of a process in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}

// Children returns the ids of pid's direct children (started by any of
// its threads).
func Children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// Comm returns a process's command name.
func Comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

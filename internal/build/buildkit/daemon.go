package buildkit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bkclient "github.com/moby/buildkit/client"
	"github.com/slipwayhq/slipway/internal/topdir"
	"golang.org/x/sys/unix"
)

// DaemonConfig configures a supervised buildkitd. Its zero value works.
type DaemonConfig struct {
	// Root is buildkitd's state directory (cache, snapshots, generated
	// config). If empty, /var/lib/slipway/buildkit.
	Root string
	// Binary is the buildkitd executable: a path, or a name looked up in
	// PATH. If empty, "buildkitd".
	Binary string
	// Socket is the path of the unix socket buildkitd listens on.
	// If empty, <Root>/buildkitd.sock.
	Socket string
	// PlainHTTPRegistries are registry hosts ("127.0.0.1:7300") that
	// buildkitd talks to over plain HTTP, such as the embedded registry.
	// If empty, none.
	PlainHTTPRegistries []string
	// DockerHubMirrors are registry hosts tried, in order, before docker.io
	// when pulling docker.io images (e.g. the embedded registry holding
	// base-image stand-ins under "library/NAME"). If empty, none.
	DockerHubMirrors []string
	// Network, if set, runs RUN steps in network namespaces on a CNI
	// bridge (instead of BuildKit's fallback, the host's network) and
	// names their resolvers. If nil, BuildKit chooses.
	Network *Network
	// Steps is enforced on every build step's container (see StepPolicy).
	Steps StepPolicy
	// Cache bounds the build cache buildkitd keeps (see CachePolicy). Its
	// zero value leaves BuildKit's default policy.
	Cache CachePolicy
	// Runc is the OCI runtime the step filter hands steps to: a path, or
	// a name looked up in PATH. If empty, "runc".
	Runc string
	// LogFile receives buildkitd's stdout and stderr, appended, and a line
	// for every exit and restart. If empty, <Root>/buildkitd.log.
	LogFile string
	// StartTimeout bounds the wait for buildkitd to answer after it is
	// started. If zero, 30 seconds.
	StartTimeout time.Duration
	// StopTimeout is how long Close waits after SIGTERM before it kills
	// buildkitd. If zero, 10 seconds.
	StopTimeout time.Duration
	// Logger receives supervision events (unexpected exits, restarts).
	// If nil, slog.Default().
	Logger *slog.Logger
}

// Network is how build steps reach the network: through CNI plugins, on
// the bridge a CNI configuration names, resolving names with Nameservers.
type Network struct {
	// CNIConfig is the CNI configuration (a .conflist file).
	CNIConfig string
	// CNIBinaryDir holds the CNI plugins (Debian's: /usr/lib/cni).
	CNIBinaryDir string
	// Nameservers are the resolvers written into build steps'
	// resolv.conf. If empty, BuildKit copies the host's.
	Nameservers []string
}

// Defaults.
const (
	DefaultRoot   = "/var/lib/slipway/buildkit"
	DefaultBinary = "buildkitd"
)

const (
	minBackoff  = 500 * time.Millisecond
	maxBackoff  = 30 * time.Second
	stableAfter = time.Minute // a run this long resets the backoff
)

func (c DaemonConfig) withDefaults() DaemonConfig {
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if c.Binary == "" {
		c.Binary = DefaultBinary
	}
	if c.Runc == "" {
		c.Runc = "runc"
	}
	if c.Socket == "" {
		c.Socket = filepath.Join(c.Root, "buildkitd.sock")
	}
	// buildkitd and the unix:// address need absolute paths.
	if abs, err := filepath.Abs(c.Root); err == nil {
		c.Root = abs
	}
	if abs, err := filepath.Abs(c.Socket); err == nil {
		c.Socket = abs
	}
	if c.LogFile == "" {
		c.LogFile = filepath.Join(c.Root, "buildkitd.log")
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 30 * time.Second
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// LookPath resolves the buildkitd binary (a path, or a name searched in
// PATH; "buildkitd" if empty) and returns a clear error when it is missing.
func LookPath(binary string) (string, error) {
	if binary == "" {
		binary = DefaultBinary
	}
	p, err := exec.LookPath(binary)
	if err != nil {
		if !strings.ContainsRune(binary, '/') {
			return "", fmt.Errorf("%s not found in PATH; run scripts/install-buildkit.sh", binary)
		}
		return "", fmt.Errorf("buildkitd binary %s: %w", binary, err)
	}
	return p, nil
}

// Daemon is a buildkitd process started and supervised by Slipway: it is
// restarted, with backoff, whenever it exits until Close is called.
type Daemon struct {
	cfg    DaemonConfig
	binary string
	config string // generated buildkitd.toml
	log    *os.File

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	waitErr error         // cmd.Wait's result, set before exited is closed

	closing   chan struct{}
	done      chan struct{} // closed when the supervisor has returned
	closeOnce sync.Once
	closeErr  error
}

// StartDaemon starts buildkitd with cfg and waits until it answers. The
// returned Daemon supervises it until Close. ctx bounds only the start.
func StartDaemon(ctx context.Context, cfg DaemonConfig) (*Daemon, error) {
	cfg = cfg.withDefaults()
	bin, err := LookPath(cfg.Binary)
	if err != nil {
		return nil, err
	}
	// BuildKit's OCI worker (overlayfs snapshotter) makes one directory per
	// snapshot here and unpacks layers into them: created beforehand and
	// marked as a top directory, each lands where inodes were not just
	// freed, which made extracting the golang image 2-3x faster on this
	// kind of disk (see package topdir).
	snapshots := filepath.Join(cfg.Root, "runc-overlayfs", "snapshots", "snapshots")
	if err := os.MkdirAll(snapshots, 0o700); err != nil {
		return nil, fmt.Errorf("creating buildkit root: %w", err)
	}
	topdir.Mark(cfg.Root)
	topdir.Mark(snapshots)
	if err := os.MkdirAll(filepath.Dir(cfg.Socket), 0o700); err != nil {
		return nil, fmt.Errorf("creating buildkit socket directory: %w", err)
	}
	runcPath, err := exec.LookPath(cfg.Runc)
	if err != nil {
		return nil, fmt.Errorf("buildkit: build steps need runc: %w", err)
	}
	stepRuntime, err := installStepRuntime(filepath.Join(cfg.Root, "step-runtime"), runcPath, cfg.Steps)
	if err != nil {
		return nil, err
	}
	toml, err := ConfigTOML(cfg, stepRuntime)
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(cfg.Root, "buildkitd.toml")
	if err := os.WriteFile(confPath, toml, 0o600); err != nil {
		return nil, fmt.Errorf("writing buildkitd config: %w", err)
	}
	logf, err := os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening buildkitd log: %w", err)
	}
	d := &Daemon{
		cfg:     cfg,
		binary:  bin,
		config:  confPath,
		log:     logf,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	// A buildkitd left behind by a previous Slipway that was killed holds
	// the root's lock; stop it, and clear what a crash leaves behind.
	if err := d.stopOrphan(); err != nil {
		logf.Close()
		return nil, err
	}
	if err := d.clearStale(); err != nil {
		logf.Close()
		return nil, err
	}
	// A buildkitd that exits while starting is started again, twice at
	// most: what it sets up at start (the build network's first
	// namespace, through CNI) can meet a passing condition of the host.
	// Each failure is logged with buildkitd's own error.
	for attempt := 1; ; attempt++ {
		if err := d.start(); err != nil {
			logf.Close()
			return nil, err
		}
		err := d.waitReady(ctx)
		if err == nil {
			break
		}
		d.kill()
		<-d.exited
		d.clearStale()
		if !errors.Is(err, errExitedDuringStart) || attempt == startAttempts || ctx.Err() != nil {
			logf.Close()
			return nil, err
		}
		d.cfg.Logger.Warn("buildkitd exited while starting; starting it again", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		}
	}
	go d.supervise()
	return d, nil
}

// startAttempts is how many times StartDaemon starts a buildkitd that
// exits before it answers.
const startAttempts = 3

// errExitedDuringStart is wrapped by the error of a start that ended
// because buildkitd exited.
var errExitedDuringStart = errors.New("buildkitd exited during start")

// Addr is the address to give the BuildKit client ("unix:///path").
func (d *Daemon) Addr() string { return "unix://" + d.cfg.Socket }

// LogFile is the path of the file that receives buildkitd's output.
func (d *Daemon) LogFile() string { return d.cfg.LogFile }

// Pid is the process id of the current buildkitd, or 0 if none runs.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	select {
	case <-d.exited:
		return 0
	default:
		return d.cmd.Process.Pid
	}
}

// Close stops buildkitd (SIGTERM, then SIGKILL after StopTimeout) and ends
// the supervision. It is safe to call more than once.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		close(d.closing)
		<-d.done
		d.mu.Lock()
		exited := d.exited
		d.mu.Unlock()
		d.signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(d.cfg.StopTimeout):
			d.cfg.Logger.Warn("buildkitd did not stop in time; killing it", "timeout", d.cfg.StopTimeout)
			d.kill()
			<-exited
		}
		d.killGroup()
		d.closeErr = d.clearStale()
		os.Remove(d.pidFile())
		d.log.Close()
	})
	return d.closeErr
}

func (d *Daemon) pidFile() string { return filepath.Join(d.cfg.Root, "buildkitd.pid") }

func (d *Daemon) start() error {
	cmd := exec.Command(d.binary,
		"--root", d.cfg.Root,
		"--addr", d.Addr(),
		"--oci-worker=true",
		"--config", d.config,
	)
	cmd.Stdout = d.log
	cmd.Stderr = d.log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so that runc children left by a crash
		// can be killed with it; and it ends when Slipway dies.
		Setpgid:   true,
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting buildkitd: %w", err)
	}
	exited := make(chan struct{})
	d.mu.Lock()
	d.cmd = cmd
	d.exited = exited
	d.mu.Unlock()
	if err := os.WriteFile(d.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		d.cfg.Logger.Warn("writing buildkitd pid file", "err", err)
	}
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.waitErr = err
		d.mu.Unlock()
		close(exited)
	}()
	return nil
}

// waitReady polls until buildkitd answers an Info request, it exits, or
// StartTimeout passes.
func (d *Daemon) waitReady(ctx context.Context) error {
	d.mu.Lock()
	exited := d.exited
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, d.cfg.StartTimeout)
	defer cancel()
	var lastErr error
	for {
		if lastErr = d.ping(ctx); lastErr == nil {
			return nil
		}
		select {
		case <-exited:
			d.mu.Lock()
			werr := d.waitErr
			d.mu.Unlock()
			return fmt.Errorf("%w (%v); see %s:\n%s", errExitedDuringStart, werr, d.cfg.LogFile, lastError(d.cfg.LogFile, 10))
		case <-ctx.Done():
			return fmt.Errorf("buildkitd did not answer on %s within %s (last error: %v); see %s", d.Addr(), d.cfg.StartTimeout, lastErr, d.cfg.LogFile)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (d *Daemon) ping(ctx context.Context) error {
	conn, err := net.DialTimeout("unix", d.cfg.Socket, time.Second)
	if err != nil {
		return err
	}
	conn.Close()
	c, err := bkclient.New(ctx, d.Addr())
	if err != nil {
		return err
	}
	defer c.Close()
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = c.Info(ictx)
	return err
}

// supervise restarts buildkitd whenever it exits, until Close.
func (d *Daemon) supervise() {
	defer close(d.done)
	backoff := minBackoff
	for {
		d.mu.Lock()
		exited := d.exited
		d.mu.Unlock()
		startedAt := time.Now()
		select {
		case <-d.closing:
			return
		case <-exited:
		}
		d.mu.Lock()
		werr := d.waitErr
		d.mu.Unlock()
		if time.Since(startedAt) > stableAfter {
			backoff = minBackoff
		}
		d.cfg.Logger.Error("buildkitd exited; restarting", "err", werr, "in", backoff, "log", d.cfg.LogFile)
		fmt.Fprintf(d.log, "slipway: buildkitd exited (%v); restarting in %s\n", werr, backoff)
		for {
			select {
			case <-d.closing:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxBackoff)
			d.killGroup()
			err := d.clearStale()
			if err == nil {
				err = d.start()
			}
			if err == nil {
				break
			}
			d.cfg.Logger.Error("restarting buildkitd", "err", err, "retry in", backoff)
		}
	}
}

func (d *Daemon) signal(sig syscall.Signal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Signal(sig)
	}
}

func (d *Daemon) kill() { d.signal(syscall.SIGKILL) }

// killGroup kills what is left of the last buildkitd's process group
// (runc processes of a build that was running when it died).
func (d *Daemon) killGroup() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil && d.cmd.Process != nil {
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// stopOrphan stops a buildkitd recorded in the pid file that still runs
// with our root (left by a Slipway that was killed).
func (d *Daemon) stopOrphan() error {
	b, err := os.ReadFile(d.pidFile())
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil // not running
	}
	args := strings.Split(string(cmdline), "\x00")
	ours := false
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--root" && args[i+1] == d.cfg.Root {
			ours = true
		}
	}
	if !ours {
		return nil
	}
	d.cfg.Logger.Warn("stopping buildkitd left by a previous run", "pid", pid)
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(d.cfg.StopTimeout)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	syscall.Kill(pid, syscall.SIGKILL)
	for range 100 {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("buildkitd (pid %d) from a previous run does not stop", pid)
}

// clearStale removes a stale socket and unmounts whatever a buildkitd that
// did not shut down cleanly left mounted under the root.
func (d *Daemon) clearStale() error {
	if conn, err := net.DialTimeout("unix", d.cfg.Socket, time.Second); err == nil {
		conn.Close()
		return fmt.Errorf("another buildkitd is serving %s", d.cfg.Socket)
	}
	if err := os.Remove(d.cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale buildkitd socket: %w", err)
	}
	return UnmountUnder(d.cfg.Root)
}

// UnmountUnder detaches every mount at or below dir, deepest first. A
// buildkitd that was killed leaves its build containers' mounts behind.
func UnmountUnder(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("reading mounts: %w", err)
	}
	// Deepest first; a path mounted twice is unmounted twice.
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unescapeMount decodes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// CachePolicy bounds buildkitd's build cache, which its garbage
// collector prunes about a second after a build and then at most once a
// minute, least recently used first (BuildKit's default policy, with
// these caps in place of its own: up to 80% of the disk or 100 GB, and
// 20% of it kept free).
type CachePolicy struct {
	// MaxUsed is the most the cache keeps, in bytes. If zero, BuildKit's
	// default.
	MaxUsed int64
	// MinFree is the free space, in bytes, the collector prunes the cache
	// to keep on its disk (never below what a build in progress uses).
	// If zero, BuildKit's default.
	MinFree int64
}

// ConfigTOML renders the buildkitd.toml Slipway generates from cfg: its
// PlainHTTPRegistries are spoken to over HTTP (and without TLS
// verification), its DockerHubMirrors are tried before docker.io, build
// steps use its Network's CNI network and resolvers (when not nil) and run
// through stepRuntime (when not empty) instead of runc, and the cache is
// bounded by its Cache. The network goes in the file, not in flags: buildkitd v0.26
// reads --oci-cni-config-path under another name and drops it.
func ConfigTOML(cfg DaemonConfig, stepRuntime string) ([]byte, error) {
	plainHTTP, mirrors, nw := cfg.PlainHTTPRegistries, cfg.DockerHubMirrors, cfg.Network
	if cfg.Cache.MaxUsed < 0 || cfg.Cache.MinFree < 0 {
		return nil, errors.New("buildkit: negative cache bound")
	}
	var b bytes.Buffer
	b.WriteString("# Generated by slipway at every start of buildkitd; edits are lost.\n")
	quoted := func(hosts []string) (string, error) {
		q := make([]string, len(hosts))
		for i, h := range hosts {
			if err := validHost(h); err != nil {
				return "", err
			}
			q[i] = strconv.Quote(h)
		}
		return strings.Join(q, ", "), nil
	}
	if len(mirrors) > 0 {
		m, err := quoted(mirrors)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\n[registry.\"docker.io\"]\n  mirrors = [%s]\n", m)
	}
	seen := map[string]bool{}
	for _, h := range plainHTTP {
		if err := validHost(h); err != nil {
			return nil, err
		}
		if seen[h] {
			continue
		}
		seen[h] = true
		fmt.Fprintf(&b, "\n[registry.%s]\n  http = true\n  insecure = true\n", strconv.Quote(h))
	}
	cache := cfg.Cache != CachePolicy{}
	if nw != nil || stepRuntime != "" || cache {
		b.WriteString("\n[worker.oci]\n")
	}
	if cache {
		b.WriteString("  gc = true\n")
		if cfg.Cache.MaxUsed > 0 {
			fmt.Fprintf(&b, "  maxUsedSpace = \"%d\"\n", cfg.Cache.MaxUsed)
		}
		if cfg.Cache.MinFree > 0 {
			fmt.Fprintf(&b, "  minFreeSpace = \"%d\"\n", cfg.Cache.MinFree)
		}
	}
	if stepRuntime != "" {
		fmt.Fprintf(&b, "  binary = %s\n", strconv.Quote(stepRuntime))
	}
	if nw != nil {
		if nw.CNIConfig == "" || nw.CNIBinaryDir == "" {
			return nil, errors.New("buildkit: Network needs CNIConfig and CNIBinaryDir")
		}
		fmt.Fprintf(&b, "  networkMode = \"cni\"\n  cniConfigPath = %s\n  cniBinaryPath = %s\n",
			strconv.Quote(nw.CNIConfig), strconv.Quote(nw.CNIBinaryDir))
		if len(nw.Nameservers) > 0 {
			q := make([]string, len(nw.Nameservers))
			for i, a := range nw.Nameservers {
				if ip := net.ParseIP(a); ip == nil {
					return nil, fmt.Errorf("buildkit: nameserver %q is not an IP address", a)
				}
				q[i] = strconv.Quote(a)
			}
			fmt.Fprintf(&b, "\n[dns]\n  nameservers = [%s]\n", strings.Join(q, ", "))
		}
	}
	// Builds run on the OCI worker (runc) alone. The buildkitd that
	// scripts/install-buildkit.sh builds has no containerd worker, nor its
	// --containerd-worker flag; any other buildkitd reads this instead.
	b.WriteString("\n[worker.containerd]\n  enabled = false\n")
	return b.Bytes(), nil
}

// validHost accepts "host", "host:port" and "[v6]:port" made of plain
// ASCII, so that quoting it for TOML is trivial.
func validHost(h string) error {
	if h == "" {
		return errors.New("empty registry host")
	}
	for _, r := range h {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]_", r)
		if !ok {
			return fmt.Errorf("invalid registry host %q", h)
		}
	}
	return nil
}

// lastError is the start of the last fatal error buildkitd wrote to its log
// ("buildkitd: ..." followed by a stack trace), at most n lines of it; or,
// when there is none, the log's last n lines.
func lastError(path string, n int) string {
	t := tail(path, 400)
	if i := strings.LastIndex("\n"+t, "\nbuildkitd: "); i >= 0 {
		lines := strings.SplitN(t[i:], "\n", n+1)
		return strings.Join(lines[:min(n, len(lines))], "\n")
	}
	lines := strings.Split(t, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 64*1024 {
		f.Seek(-64*1024, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

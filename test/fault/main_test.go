package fault

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/internal/netns/nettest"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	shared.mu.Lock()
	if shared.env != nil {
		shared.env.shutdown()
	}
	shared.mu.Unlock()
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	if fuzzSetup.dir != "" {
		os.RemoveAll(fuzzSetup.dir)
	}
	os.Exit(code)
}

// requireRealParts fails (under CI) or skips the test when what a real
// server needs is missing.
func requireRealParts(t testing.TB) {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("fault test cannot run: %s (scripts/setup.sh installs it)", why)
		}
		t.Skipf("skipping fault test: %s (run scripts/setup.sh as root, or set CI to make this fatal)", why)
	}
	if os.Geteuid() != 0 {
		missing("needs root")
	}
	for _, bin := range []string{"runc", "buildkitd", "ip", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing(bin + " not found in PATH")
		}
	}
	if _, err := os.Stat(filepath.Join(serverproc.BaseImagesDir(), "index.json")); err != nil {
		missing("no base images in " + serverproc.BaseImagesDir())
	}
}

var binary struct {
	once sync.Once
	path string
	dir  string // a temporary directory to remove at the end
	err  error
}

// slipwayBinary builds cmd/slipway once per test run (or uses $SLIPWAY_BIN).
func slipwayBinary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		if p := os.Getenv("SLIPWAY_BIN"); p != "" {
			binary.path = p
			return
		}
		dir, err := os.MkdirTemp("", "slipway-fault-bin-")
		if err != nil {
			binary.err = err
			return
		}
		binary.dir = dir
		binary.path = filepath.Join(dir, "slipway")
		out, err := exec.Command("go", "build", "-o", binary.path, "github.com/slipwayhq/slipway/cmd/slipway").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("building slipway: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// env is a running server for tests, and what it needs to be cleaned up.
type env struct {
	srv  *serverproc.Server
	c    *serverproc.Client
	root string         // removed at shutdown
	undo []func() error // run at shutdown, once the server is gone
}

// startEnv starts a server on a fresh data directory below root; each of
// opts may change its configuration first.
func startEnv(t testing.TB, root string, opts ...func(*serverproc.Config)) *env {
	t.Helper()
	cfg := serverproc.Config{
		Binary:       slipwayBinary(t),
		DataDir:      filepath.Join(root, "data"),
		DeployWindow: 2 * time.Minute,
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := serverproc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv, c: srv.Client(), root: root}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		e.shutdown()
		t.Fatal(err)
	}
	return e
}

// shutdown stops every deployment, then the server, and removes whatever
// is left.
func (e *env) shutdown() {
	if e.srv.Running() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if err := e.c.StopAll(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "fault: stopping deployments:", err)
		}
		cancel()
		e.srv.Stop(30 * time.Second)
	}
	if err := serverproc.Sweep(e.srv.DataDir()); err != nil {
		fmt.Fprintln(os.Stderr, "fault: sweeping:", err)
	}
	if e.root != "" {
		os.RemoveAll(e.root)
	}
	for _, u := range e.undo {
		if err := u(); err != nil {
			fmt.Fprintln(os.Stderr, "fault:", err)
		}
	}
}

// dumpOnFailure prints the end of the server's log when t fails.
func (e *env) dumpOnFailure(t testing.TB) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log (%s), last lines:\n%s", e.srv.LogPath(), e.srv.LogTail(60))
		}
	})
}

var shared struct {
	mu  sync.Mutex
	env *env
}

// sharedEnv returns the server shared by the tests that do not kill it,
// starting it on first use. TestMain shuts it down.
func sharedEnv(t *testing.T) *env {
	t.Helper()
	requireRealParts(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.env == nil {
		root, err := os.MkdirTemp("", "slipway-fault-")
		if err != nil {
			t.Fatal(err)
		}
		// Its instances' resolver forwards to the world's DNS, which
		// exists only during TestNetworking (network_test.go). While it
		// does not, the host's packets to that address go nowhere: an
		// "unreachable" rule, removed at shutdown.
		undo, err := nettest.Unreachable(netip.PrefixFrom(nettest.DNS.Addr(), 32))
		if err != nil {
			os.RemoveAll(root)
			t.Fatal(err)
		}
		defer func() { // also when startEnv fails the test
			if shared.env == nil {
				undo()
			}
		}()
		shared.env = startEnv(t, root, func(c *serverproc.Config) {
			c.DNSUpstream = nettest.DNS.String()
		})
		shared.env.undo = append(shared.env.undo, undo)
	}
	if !shared.env.srv.Running() {
		t.Fatal("the shared server is not running (an earlier test broke it)")
	}
	shared.env.dumpOnFailure(t)
	return shared.env
}

// faultApp copies testdata/faultapp to a temporary directory and, when
// variant is not empty, adds a file holding it, so that the source (and
// the image) differs from other variants'.
func faultApp(t testing.TB, variant string) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("testdata", "faultapp")
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if variant != "" {
		if err := os.WriteFile(filepath.Join(dst, "variant.txt"), []byte(variant+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// ensureProject creates a project unless it exists.
func ensureProject(t testing.TB, c *serverproc.Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Project(ctx, name); err == nil {
		return
	}
	if err := c.CreateProject(ctx, name); err != nil {
		t.Fatal(err)
	}
}

// deployRunning uploads dir to project and waits until it is RUNNING.
func deployRunning(t testing.TB, c *serverproc.Client, project, dir string, timeout time.Duration) api.Deployment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d, err := c.Upload(ctx, project, dir, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	d, err = c.WaitSettled(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "RUNNING" {
		lines, _ := c.BuildLogs(context.Background(), d.ID)
		for _, l := range lines {
			t.Log(l.Text)
		}
		t.Fatalf("deployment %s of %s is %s: %s", d.ID, project, d.Status, d.FailureReason)
	}
	return d
}

// appInfo is what the test app's GET / says about itself.
type appInfo struct {
	Deployment, Instance string
	Started              int64
}

func parseAppInfo(body []byte) (appInfo, bool) {
	s := strings.TrimSpace(string(body))
	if !strings.HasPrefix(s, "faultapp ") {
		return appInfo{}, false
	}
	var a appInfo
	for _, f := range strings.Fields(s)[1:] {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "deployment":
			a.Deployment = v
		case "instance":
			a.Instance = v
		case "started":
			a.Started, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return a, a.Deployment != "" && a.Instance != "" && a.Started != 0
}

// info asks an app, through the router, who it is.
func info(t testing.TB, c *serverproc.Client, host string) appInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, body, err := c.Get(ctx, host, "/")
	if err != nil {
		t.Fatalf("GET %s: %v", host, err)
	}
	a, ok := parseAppInfo(body)
	if code != 200 || !ok {
		t.Fatalf("GET %s: %d %q", host, code, body)
	}
	return a
}

// infoDirect asks an instance who it is by dialling into its network
// namespace, without the server.
func infoDirect(ctx context.Context, instance string) (appInfo, error) {
	conn, err := serverproc.DialInstance(ctx, instance, 3000)
	if err != nil {
		return appInfo{}, err
	}
	return askInfo(conn, "instance "+instance)
}

// askInfo asks the app at the other end of conn (who, for errors) who it
// is, and closes conn.
func askInfo(conn net.Conn, who string) (appInfo, error) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: direct\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil {
		return appInfo{}, err
	}
	head, body, _ := strings.Cut(string(b), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200") {
		return appInfo{}, fmt.Errorf("%s answered %q", who, head)
	}
	a, ok := parseAppInfo([]byte(body))
	if !ok {
		return a, fmt.Errorf("%s answered %q", who, body)
	}
	return a, nil
}

// report parses the test app's "key: value" answers.
// askApp sends the fault app at host one of its probe requests (path, with
// the query q) and returns its report, logged, and how long it took.
func askApp(t testing.TB, c *serverproc.Client, host, path string, q url.Values, timeout time.Duration) (map[string]string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	start := time.Now()
	code, body, err := c.Get(ctx, host, path)
	took := time.Since(start)
	if err != nil || code != 200 {
		t.Fatalf("%s %s: %d %q %v", host, path, code, body, err)
	}
	t.Logf("%s %s (%v):\n%s", host, path, took.Round(time.Millisecond), strings.TrimSpace(string(body)))
	return report(body), took
}

// sameApp fails t when the app at host is no longer the instance before
// describes (restarted, replaced or harmed).
func sameApp(t testing.TB, c *serverproc.Client, host string, before appInfo) {
	t.Helper()
	if got := info(t, c, host); got != before {
		t.Errorf("%s changed: before %+v, now %+v", host, before, got)
	}
}

func report(body []byte) map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(string(body)) {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\n"), ": ")
		if ok {
			m[k] = v
		}
	}
	return m
}

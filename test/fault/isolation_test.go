package fault

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/netns/nettest"
	"github.com/slipwayhq/slipway/internal/runtime/runc"
)

// Isolation: an attacker app (the test app, asked to misbehave) runs next
// to a victim app on the same server. Every attempt must fail or stay
// contained in the attacker's sandbox, and the victim must keep serving
// as the same process throughout.
func TestIsolation(t *testing.T) {
	e := sharedEnv(t)
	c := e.c
	src := faultApp(t, "")
	for _, p := range []string{"victim", "attacker"} {
		ensureProject(t, c, p)
		deployRunning(t, c, p, src, 10*time.Minute)
	}
	victimHost, attackerHost := c.Host("victim"), c.Host("attacker")
	victim := info(t, c, victimHost)
	attacker := info(t, c, attackerHost)

	ask := func(t *testing.T, path string, q url.Values) map[string]string {
		t.Helper()
		r, _ := askApp(t, c, attackerHost, path, q, 2*time.Minute)
		return r
	}
	victimUnharmed := func(t *testing.T) {
		t.Helper()
		sameApp(t, c, victimHost, victim)
	}

	t.Run("files", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, secret, err := c.Get(ctx, victimHost, "/secret")
		if err != nil || !strings.HasPrefix(string(secret), "faultapp-secret-") {
			t.Fatalf("victim's secret: %q %v", secret, err)
		}
		needle := strings.TrimSpace(string(secret))
		// Where the secret is on the host: the victim instance's upper
		// layer. The test can read it; the attacker must not.
		bundle := filepath.Join(runc.DefaultRunDir(filepath.Join(e.srv.DataDir(), "runtime")), victim.Instance)
		hostPath := filepath.Join(bundle, "layer", "upper", "tmp", "secret")
		if b, err := os.ReadFile(hostPath); err != nil || string(b) != needle {
			t.Fatalf("the victim's secret is not at %s on the host (%v); the test needs to know where it is", hostPath, err)
		}
		for _, p := range []string{
			hostPath,
			filepath.Join(bundle, "rootfs", "tmp", "secret"),
			"/proc/1/root" + hostPath,
			filepath.Join(e.srv.DataDir(), "admin-token"),
			filepath.Join(e.srv.DataDir(), "slipway.db"),
			"/etc/shadow",
		} {
			if r := ask(t, "/read", url.Values{"path": {p}}); r["read"] == "ok" {
				t.Errorf("the attacker read %s (%s bytes: %q)", p, r["bytes"], r["head"])
			}
		}
		if r := ask(t, "/find", url.Values{"needle": {needle}, "max": {"50000"}}); r["found"] != "" {
			t.Errorf("the attacker found the victim's secret in %s", r["found"])
		}
		// A block device for the host's disk: creating it is allowed
		// (CAP_MKNOD), opening it must not be.
		var st unix.Stat_t
		if err := unix.Stat(e.srv.DataDir(), &st); err != nil {
			t.Fatal(err)
		}
		maj, min := unix.Major(st.Dev), unix.Minor(st.Dev)
		if r := ask(t, "/mknod", url.Values{"major": {strconv.Itoa(int(maj))}, "minor": {strconv.Itoa(int(min))}}); r["open"] == "ok" || r["read"] == "ok" {
			t.Errorf("the attacker opened the host's disk %d:%d: %v", maj, min, r)
		}
		r := ask(t, "/mount", nil)
		for _, k := range []string{"mount-tmpfs", "mount-proc", "unshare-user"} {
			if r[k] == "ok" {
				t.Errorf("the attacker could %s", k)
			}
		}
		victimUnharmed(t)
	})

	t.Run("control plane", func(t *testing.T) {
		// A listener on every host address, so that a dial that reaches
		// the host at all connects.
		ln, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		nettest.Answer(ln, "HTTP/1.0 200 OK\r\n\r\nreached the host\n")
		probe := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		_, routerPort, _ := net.SplitHostPort(e.srv.Router())
		api := strconv.Itoa(e.srv.APIPort())
		targets := []string{"127.0.0.1:" + api, "127.0.0.1:" + routerPort, "127.0.0.1:" + probe, "[::1]:" + probe}
		for _, ip := range hostIPs(t) {
			targets = append(targets, net.JoinHostPort(ip, api), net.JoinHostPort(ip, probe))
		}
		for _, addr := range targets {
			if r := ask(t, "/dial", url.Values{"addr": {addr}}); r["connect"] == "ok" {
				t.Errorf("the attacker reached %s from its sandbox (answer %q)", addr, r["status"])
			}
		}
		// And the API itself refuses whoever has no token.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		anon := *c
		anon.Token = ""
		if code, _, err := anon.Do(ctx, "GET", "/api/v1/projects", nil, ""); err != nil || code != 401 {
			t.Errorf("the API without a token answered %d %v, want 401", code, err)
		}
		victimUnharmed(t)
	})

	t.Run("processes", func(t *testing.T) {
		r := ask(t, "/procs", nil)
		pids := strings.Fields(r["pids"])
		if len(pids) == 0 || len(pids) > 3 {
			t.Errorf("the attacker sees processes %v; want only its own", pids)
		}
		for _, d := range strings.Fields(r["deployments"]) {
			if d != attacker.Deployment {
				t.Errorf("the attacker sees a process of deployment %s", d)
			}
		}
		if r["self"] != "1" {
			t.Errorf("the attacker is pid %s in its sandbox, want 1 (its own pid namespace)", r["self"])
		}
		victimUnharmed(t)
	})

	t.Run("pids", func(t *testing.T) {
		const n = 4096
		r := ask(t, "/fork", url.Values{"n": {strconv.Itoa(n)}})
		forked, _ := strconv.Atoi(r["forked"])
		if forked >= n || !strings.Contains(r["fork"], "resource temporarily unavailable") {
			t.Errorf("the attacker forked %d of %d processes (%s); want the pids limit to stop it", forked, n, r["fork"])
		}
		if out, err := exec.Command("true").CombinedOutput(); err != nil {
			t.Errorf("the host cannot start a process after the fork bomb: %v %s", err, out)
		}
		victimUnharmed(t)
		if got := info(t, c, attackerHost); got != attacker {
			t.Errorf("the attacker was restarted by its own fork bomb: %+v → %+v", attacker, got)
		}
	})

	t.Run("disk", func(t *testing.T) {
		// /dev/shm is a 64 MiB tmpfs.
		if r := ask(t, "/disk", url.Values{"path": {"/dev/shm/fill"}, "mb": {"256"}}); r["write"] == "ok" || r["create"] != "" {
			t.Errorf("the attacker wrote %s MiB to /dev/shm", r["written_mb"])
		}
		// Its root file system is an overlay on the host's disk: without a
		// quota an app can fill the host's disk. 1 GiB is far beyond
		// what the test app needs.
		r := ask(t, "/disk", url.Values{"path": {"/tmp/fill"}, "mb": {"1024"}})
		if r["create"] != "" {
			t.Fatalf("the attacker could not even create a file in /tmp: %s", r["create"])
		}
		if r["write"] == "ok" {
			t.Errorf("the attacker wrote %s MiB to its root file system with no error: instances have no disk quota, so one app can fill the host's disk", r["written_mb"])
		}
		victimUnharmed(t)
	})

	t.Run("memory", func(t *testing.T) {
		// Past its memory limit (512 MiB by default) the attacker is
		// killed; the answer never comes (the router answers 502).
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		code, body, err := c.Get(ctx, attackerHost, "/mem?mb=2048")
		if err == nil && code == 200 {
			t.Errorf("the attacker allocated 2 GiB: %q", body)
		}
		t.Logf("attacker /mem?mb=2048: %d %q %v", code, strings.TrimSpace(string(body)), err)
		if !e.srv.Running() {
			t.Fatal("the server died of the attacker's memory bomb")
		}
		victimUnharmed(t)
		// The attacker is restarted by its supervisor, as a new process.
		deadline := time.Now().Add(90 * time.Second)
		for {
			code, body, err := c.Get(ctx, attackerHost, "/")
			if a, ok := parseAppInfo(body); err == nil && code == 200 && ok && a.Started != attacker.Started {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the attacker was not restarted after it was killed: %d %q %v", code, body, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		victimUnharmed(t)
	})
}

// hostIPs returns the host's non-loopback addresses.
func hostIPs(t *testing.T) []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			out = append(out, n.IP.String())
		}
	}
	return out
}

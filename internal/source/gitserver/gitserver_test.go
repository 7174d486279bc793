package gitserver

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/source"
)

// The build log reaches the git client while the push is still open: the
// Pusher writes a line, waits until the client has printed it, then writes
// the last line and returns.
func TestPushStreamsOutputWhileOpen(t *testing.T) {
	ts := newTestServer(t, nil)
	printed := make(chan struct{})
	ts.pusher.fn = func(ctx context.Context, ev PushEvent, out io.Writer) error {
		fmt.Fprintf(out, "building %s at %s\n", ev.Branch, source.ShortSHA(ev.NewSHA))
		select {
		case <-printed:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Minute):
			return errors.New("the client never printed the first line")
		}
		fmt.Fprintln(out, "live at https://app.example.test")
		return nil
	}
	c := newClient(t)
	sha := c.commit("First commit\n\nWith a body.", map[string]string{"main.go": "package main\n"})
	c.git("remote", "add", "slipway", ts.remote("app", testToken))

	cmd := c.cmd("push", "slipway", "main")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	sc := bufio.NewScanner(stderr)
	first := "remote: building main at " + source.ShortSHA(sha)
	for sc.Scan() {
		line := sc.Text()
		all.WriteString(line + "\n")
		if strings.TrimSpace(line) == first {
			close(printed)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("git push: %v\n%s", err, all.String())
	}
	out := all.String()
	lines := remoteLines(out)
	if !contains(lines, "live at https://app.example.test") {
		t.Errorf("last line not shown; git said:\n%s", out)
	}
	if !strings.Contains(out, "* [new branch]      main -> main") {
		t.Errorf("push summary missing:\n%s", out)
	}

	evs := ts.pusher.take()
	if len(evs) != 1 {
		t.Fatalf("got %d events, want 1: %+v", len(evs), evs)
	}
	want := PushEvent{RepoDir: ts.RepoDir("app"), Push: source.Push{
		Project: "app", Ref: "refs/heads/main", Branch: "main",
		OldSHA: ZeroSHA, NewSHA: sha, Created: true,
		Message: "First commit\n\nWith a body.", Author: "Ada Lovelace <ada@example.com>",
	}}
	if evs[0] != want {
		t.Errorf("event:\n got %+v\nwant %+v", evs[0], want)
	}
	if got := gitIn(t, ts.RepoDir("app"), "rev-parse", "refs/heads/main"); got != sha {
		t.Errorf("server has main at %s, want %s", got, sha)
	}
}

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := gitCommand(context.Background(), "git", dir, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestFastForwardAndForcePush(t *testing.T) {
	ts := newTestServer(t, nil)
	c := newClient(t)
	c.git("remote", "add", "slipway", ts.remote("app", testToken))
	a := c.commit("a", map[string]string{"f": "a"})
	c.git("push", "-q", "slipway", "main")
	b := c.commit("b", map[string]string{"f": "b"})
	out := c.git("push", "slipway", "main")
	ts.pusher.take() // the first push
	_ = out

	// Rewrite b: a push that is not a fast-forward, refused without --force.
	c.git("reset", "-q", "--hard", a)
	b2 := c.commit("b rewritten", map[string]string{"f": "b2"})
	if out, err := c.try("push", "slipway", "main"); err == nil {
		t.Fatalf("a non-fast-forward push without --force succeeded:\n%s", out)
	}
	ts.pusher.take()
	out = c.git("push", "--force", "slipway", "main")
	if !contains(remoteLines(out), "received refs/heads/main "+source.ShortSHA(b2)) {
		t.Errorf("force push output:\n%s", out)
	}
	evs := ts.pusher.take()
	if len(evs) != 1 || !evs[0].Forced || evs[0].OldSHA != b || evs[0].NewSHA != b2 || evs[0].Message != "b rewritten" {
		t.Fatalf("force push event: %+v", evs)
	}
	c3 := c.commit("c", map[string]string{"f": "c"})
	c.git("push", "-q", "slipway", "main")
	evs = ts.pusher.take()
	if len(evs) != 1 || evs[0].Forced || evs[0].Created || evs[0].OldSHA != b2 || evs[0].NewSHA != c3 {
		t.Fatalf("fast-forward event: %+v", evs)
	}
}

func TestDeleteBranch(t *testing.T) {
	ts := newTestServer(t, nil)
	c := newClient(t)
	c.git("remote", "add", "slipway", ts.remote("app", testToken))
	sha := c.commit("a", map[string]string{"f": "a"})
	c.git("push", "-q", "slipway", "main", "main:feature")
	evs := ts.pusher.take()
	if len(evs) != 2 || evs[0].Branch != "main" || evs[1].Branch != "feature" {
		t.Fatalf("events of a two-branch push, in the client's order: %+v", evs)
	}
	out := c.git("push", "slipway", ":feature")
	if !strings.Contains(out, "[deleted]") {
		t.Errorf("delete output:\n%s", out)
	}
	evs = ts.pusher.take()
	want := PushEvent{RepoDir: ts.RepoDir("app"), Push: source.Push{Project: "app", Ref: "refs/heads/feature", Branch: "feature",
		OldSHA: sha, NewSHA: ZeroSHA, Deleted: true}}
	if len(evs) != 1 || evs[0] != want {
		t.Fatalf("delete event:\n got %+v\nwant %+v", evs, want)
	}
	if !contains(remoteLines(out), "received refs/heads/feature "+source.ShortSHA(ZeroSHA)) {
		t.Errorf("the Pusher's output for a deletion is shown too:\n%s", out)
	}
}

func TestTagPush(t *testing.T) {
	ts := newTestServer(t, nil)
	c := newClient(t)
	c.git("remote", "add", "slipway", ts.remote("app", testToken))
	sha := c.commit("tagged", map[string]string{"f": "a"})
	c.git("tag", "-a", "-m", "release", "v1")
	c.git("push", "-q", "slipway", "v1")
	evs := ts.pusher.take()
	if len(evs) != 1 || evs[0].Ref != "refs/tags/v1" || evs[0].Branch != "" || evs[0].Message != "tagged" {
		t.Fatalf("tag event: %+v", evs)
	}
	if evs[0].NewSHA == sha {
		t.Errorf("NewSHA of an annotated tag should be the tag object, not the commit")
	}
}

func TestBadTokenIsRejectedReadably(t *testing.T) {
	ts := newTestServer(t, nil)
	c := newClient(t)
	c.commit("a", map[string]string{"f": "a"})
	out, err := c.try("push", ts.remote("app", "wrong-token"), "main")
	t.Logf("git push with a bad token:\n%s", out)
	if err == nil {
		t.Fatalf("push with a bad token succeeded:\n%s", out)
	}
	if !strings.Contains(out, "Authentication failed") {
		t.Errorf("git's message does not say why:\n%s", out)
	}
	if strings.Contains(out, "wrong-token") {
		t.Errorf("git printed the token:\n%s", out)
	}
	// Without credentials git would prompt; prompts are off here.
	out, err = c.try("push", ts.url+"/git/app.git", "main")
	if err == nil || !strings.Contains(out, "could not read Username") {
		t.Errorf("push without credentials: %v\n%s", err, out)
	}
	if evs := ts.pusher.take(); len(evs) != 0 {
		t.Errorf("the Pusher was called: %+v", evs)
	}

	resp, err := http.Get(ts.url + "/git/app.git/info/refs?service=git-receive-pack")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="slipway"` {
		t.Errorf("unauthenticated request: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestUnknownProject(t *testing.T) {
	ts := newTestServer(t, func(c *Config) {
		c.Exists = func(_ context.Context, p string) (bool, error) { return p == "app", nil }
	})
	c := newClient(t)
	c.commit("a", map[string]string{"f": "a"})
	out, err := c.try("push", ts.remote("nope", testToken), "main")
	if err == nil || !strings.Contains(out, "not found") {
		t.Errorf("push to an unknown project: %v\n%s", err, out)
	}
	if _, err := os.Stat(ts.RepoDir("nope")); !os.IsNotExist(err) {
		t.Errorf("a repository was created for an unknown project: %v", err)
	}
	out, err = c.try("push", ts.remote("Bad_Name", testToken), "main")
	if err == nil {
		t.Errorf("push to an invalid project name succeeded:\n%s", out)
	}
	c.git("push", "-q", ts.remote("app", testToken), "main")
}

func TestPusherErrorIsShown(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.pusher.fn = func(ctx context.Context, ev PushEvent, out io.Writer) error {
		fmt.Fprintln(out, "building")
		return errors.New("build failed: exit status 1")
	}
	c := newClient(t)
	c.commit("a", map[string]string{"f": "a"})
	out := c.git("push", ts.remote("app", testToken), "main")
	lines := remoteLines(out)
	if !contains(lines, "building") || !contains(lines, "error: build failed: exit status 1") {
		t.Errorf("git output:\n%s", out)
	}
}

// Writes after Push returned fail instead of corrupting the response.
func TestWritesAfterPushFail(t *testing.T) {
	ts := newTestServer(t, nil)
	var late io.Writer
	ts.pusher.fn = func(ctx context.Context, ev PushEvent, out io.Writer) error {
		late = out
		return nil
	}
	c := newClient(t)
	c.commit("a", map[string]string{"f": "a"})
	c.git("push", "-q", ts.remote("app", testToken), "main")
	if _, err := late.Write([]byte("too late\n")); err == nil {
		t.Error("a write after Push returned succeeded")
	}
}

// A push larger than git's http.postBuffer (1 MiB) is sent chunked, after a
// probe request with an empty command list.
func TestLargePushAndClone(t *testing.T) {
	ts := newTestServer(t, nil)
	c := newClient(t)
	blob := make([]byte, 2<<20)
	rand.Read(blob)
	files := map[string]string{"big.bin": string(blob)}
	for i := range 300 { // more objects than receive.unpackLimit
		files[fmt.Sprintf("small/%d.txt", i)] = strings.Repeat(fmt.Sprintf("%d\n", i), 1000)
	}
	sha := c.commit("big", files)
	// --progress: receive-pack reports progress while the pack is still
	// arriving, so the response starts before the request body is read.
	out := c.git("push", "--progress", ts.remote("app", testToken), "main")
	if !contains(remoteLines(out), "received refs/heads/main "+source.ShortSHA(sha)) {
		t.Errorf("git output:\n%s", out)
	}
	ts.mu.Lock()
	reqs := strings.Join(ts.requests, "\n")
	ts.mu.Unlock()
	if !strings.Contains(reqs, "POST /git/app.git/git-receive-pack 4\n") || !strings.Contains(reqs, "POST /git/app.git/git-receive-pack -1") {
		t.Errorf("expected a probe and a chunked push; requests:\n%s", reqs)
	}
	for _, proto := range []string{"0", "2"} {
		dst := filepath.Join(t.TempDir(), "clone")
		c.git("-c", "protocol.version="+proto, "clone", "-q", ts.remote("app", testToken), dst)
		got, err := os.ReadFile(filepath.Join(dst, "big.bin"))
		if err != nil || !bytes.Equal(got, blob) {
			t.Errorf("clone with protocol v%s: %v", proto, err)
		}
	}
}

// A Pusher's long write is split into packets the client reassembles.
func TestLongOutput(t *testing.T) {
	ts := newTestServer(t, nil)
	long := strings.Repeat("x", 150_000)
	ts.pusher.fn = func(ctx context.Context, ev PushEvent, out io.Writer) error {
		_, err := io.WriteString(out, "start "+long+" end\n")
		return err
	}
	c := newClient(t)
	c.commit("a", map[string]string{"f": "a"})
	out := c.git("push", ts.remote("app", testToken), "main")
	if !contains(remoteLines(out), "start "+long+" end") {
		t.Errorf("long line did not arrive whole (%d bytes of output)", len(out))
	}
}

func TestConcurrentPushesToNewRepositories(t *testing.T) {
	ts := newTestServer(t, nil)
	c := newClient(t)
	c.commit("a", map[string]string{"f": "a"})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Two pushes per project race to create its repository.
			if out, err := c.try("push", "-q", ts.remote(fmt.Sprintf("p%d", i%2), testToken), "main:b"+fmt.Sprint(i)); err != nil {
				errs <- fmt.Errorf("%v: %s", err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(ts.pusher.take()); n != 4 {
		t.Errorf("%d events, want 4", n)
	}
	left, _ := filepath.Glob(filepath.Join(ts.cfg.Root, ".*"))
	if len(left) != 0 {
		t.Errorf("temporary directories left behind: %v", left)
	}
}

func TestEnsureAndRemove(t *testing.T) {
	ts := newTestServer(t, nil)
	dir, err := ts.Ensure(context.Background(), "app")
	if err != nil {
		t.Fatal(err)
	}
	if got := gitIn(t, dir, "rev-parse", "--is-bare-repository"); got != "true" {
		t.Errorf("not a bare repository: %s", got)
	}
	if again, err := ts.Ensure(context.Background(), "app"); err != nil || again != dir {
		t.Errorf("second Ensure: %q %v", again, err)
	}
	if _, err := ts.Ensure(context.Background(), "../x"); !errors.Is(err, ErrInvalidProject) {
		t.Errorf("Ensure(../x): %v", err)
	}
	if err := ts.Remove("app"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("repository still there: %v", err)
	}
}

func TestReadCommands(t *testing.T) {
	old, new := strings.Repeat("a", 40), strings.Repeat("b", 40)
	body := pktLine(ZeroSHA+" "+new+" refs/heads/main\x00report-status side-band-64k agent=git/2\n") +
		pktLine(old+" "+ZeroSHA+" refs/heads/gone\n") + flushPkt + "PACK..."
	r := strings.NewReader(body)
	req, err := readCommands(r, maxCommandBytes)
	if err != nil {
		t.Fatal(err)
	}
	want := []command{{ZeroSHA, new, "refs/heads/main"}, {old, ZeroSHA, "refs/heads/gone"}}
	if fmt.Sprint(req.commands) != fmt.Sprint(want) || req.band != maxPkt-4 {
		t.Errorf("got %+v band %d", req.commands, req.band)
	}
	rest, _ := io.ReadAll(r)
	if string(req.raw)+string(rest) != body {
		t.Error("raw bytes and the rest do not make up the request")
	}
	for _, bad := range []string{"zzzz", "0003", pktLine("xy")[:5], "ffff"} {
		if _, err := readCommands(strings.NewReader(bad), maxCommandBytes); err == nil {
			t.Errorf("readCommands(%q) accepted it", bad)
		}
	}
}

func TestBandWriterFramingAndKeepAlive(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	bw := newBandWriter(w, 1000-4)
	io.WriteString(bw, strings.Repeat("y", 2000))
	mu.Lock()
	data := buf.String()
	buf.Reset()
	mu.Unlock()
	// Parse back: packets of at most 1000 bytes on band 2.
	var got strings.Builder
	r := strings.NewReader(data)
	hdr := make([]byte, 4)
	for r.Len() > 0 {
		n, err := readPkt(r, hdr)
		if err != nil || n <= 0 || n+4 > 1000 {
			t.Fatalf("packet %d: %v", n, err)
		}
		p := make([]byte, n)
		io.ReadFull(r, p)
		if p[0] != 2 {
			t.Fatalf("band %d", p[0])
		}
		got.Write(p[1:])
	}
	if got.String() != strings.Repeat("y", 2000) {
		t.Errorf("reassembled %d bytes", got.Len())
	}

	stop := bw.keepAlive(time.Millisecond)
	defer stop()
	for i := 0; ; i++ {
		mu.Lock()
		s := buf.String()
		mu.Unlock()
		if strings.Contains(s, "0005\x01") {
			break
		}
		if i > 5000 {
			t.Fatal("no keep-alive packet")
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	bw.close()
	if _, err := bw.Write([]byte("x")); !errors.Is(err, errClosed) {
		t.Errorf("write after close: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestGzipPushIsBounded sends a push whose gzip-compressed body is small
// but inflates past MaxPushBytes: it is refused, as one sent as is would
// be, and no ref moves.
func TestGzipPushIsBounded(t *testing.T) {
	const limit = 1 << 20
	ts := newTestServer(t, func(c *Config) { c.MaxPushBytes = limit })
	c := newClient(t)
	// An uncompressed pack of 4 MiB of zeros: gzip makes it a few KiB.
	c.git("config", "core.compression", "0")
	sha := c.commit("zeros", map[string]string{"zeros.bin": string(make([]byte, 4<<20))})
	pack := c.cmd("-c", "pack.compression=0", "pack-objects", "--revs", "--stdout")
	pack.Stdin = strings.NewReader(sha + "\n")
	packBytes, err := pack.Output()
	if err != nil || len(packBytes) < 4<<20 {
		t.Fatalf("pack-objects: %d bytes, %v", len(packBytes), err)
	}
	var body bytes.Buffer
	zw := gzip.NewWriter(&body)
	io.WriteString(zw, pktLine(strings.Repeat("0", 40)+" "+sha+" refs/heads/main\x00report-status\n")+flushPkt)
	zw.Write(packBytes)
	zw.Close()
	if body.Len() >= limit {
		t.Fatalf("the compressed body (%d bytes) is not under the limit", body.Len())
	}
	req, _ := http.NewRequest("POST", ts.url+"/git/app.git/git-receive-pack", &body)
	req.SetBasicAuth("slipway", testToken)
	req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(msg), "push too large") {
		t.Errorf("push inflating to %d bytes with a limit of %d: %d %q, want 413 push too large", len(packBytes), limit, resp.StatusCode, msg)
	}
	if evs := ts.pusher.take(); len(evs) != 0 {
		t.Errorf("the refused push updated refs: %+v", evs)
	}
}

package github

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/slipwayhq/slipway/internal/source"
)

var secret = []byte("It's a Secret to Everybody")

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hook is a Handler mounted as the server mounts it, with a recording
// Enqueue.
type hook struct {
	url string

	mu       sync.Mutex
	queued   []PushEvent
	failNext error
}

func newHook(t *testing.T, mod func(*Config)) *hook {
	t.Helper()
	hk := &hook{}
	cfg := Config{
		Lookup: func(_ context.Context, project string) (Link, bool, error) {
			switch project {
			case "hello":
				return Link{Secret: secret, Repository: "https://github.com/octo-org/hello-world"}, true, nil
			case "anyrepo":
				return Link{Secret: secret}, true, nil
			case "nosecret":
				return Link{}, true, nil
			case "broken":
				return Link{}, false, errors.New("database is locked")
			}
			return Link{}, false, nil
		},
		Enqueue: func(_ context.Context, ev PushEvent) error {
			hk.mu.Lock()
			defer hk.mu.Unlock()
			if err := hk.failNext; err != nil {
				hk.failNext = nil
				return err
			}
			hk.queued = append(hk.queued, ev)
			return nil
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/github/{project}", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	hk.url = srv.URL + "/hooks/github/"
	return hk
}

func (hk *hook) take() []PushEvent {
	hk.mu.Lock()
	defer hk.mu.Unlock()
	q := hk.queued
	hk.queued = nil
	return q
}

type delivery struct {
	project     string
	event       string
	id          string
	body        []byte
	signature   string // if empty, the right one; "-" for none
	contentType string // if empty, application/json
}

func (hk *hook) deliver(t *testing.T, d delivery) (int, answer) {
	t.Helper()
	req, err := http.NewRequest("POST", hk.url+d.project, bytes.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	// The headers GitHub sends.
	req.Header.Set("User-Agent", "GitHub-Hookshot/044aadd")
	ct := d.contentType
	if ct == "" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("X-GitHub-Event", d.event)
	req.Header.Set("X-GitHub-Hook-ID", "292430182")
	if d.id != "" {
		req.Header.Set("X-GitHub-Delivery", d.id)
	}
	switch d.signature {
	case "":
		req.Header.Set("X-Hub-Signature-256", Sign(secret, d.body))
	case "-":
	default:
		req.Header.Set("X-Hub-Signature-256", d.signature)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer is not JSON: %q", b)
	}
	return resp.StatusCode, a
}

func TestDeliveries(t *testing.T) {
	push := readTestdata(t, "push.json")
	otherPush := bytes.ReplaceAll(push, []byte("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"), []byte("1e2b37f78e9a6fb0a7cb6d68a8d4d8ea2bd1ae2d"))
	wrongSecret := Sign([]byte("not the secret"), push)
	tests := []struct {
		name       string
		d          delivery
		wantCode   int
		wantStatus string
		wantQueued int
	}{
		{"push", delivery{project: "hello", event: "push", id: "d-1", body: push}, 202, "queued", 1},
		{"ping", delivery{project: "hello", event: "ping", id: "d-2", body: readTestdata(t, "ping.json")}, 200, "pong", 0},
		{"wrong signature", delivery{project: "hello", event: "push", id: "d-3", body: push, signature: wrongSecret}, 401, "error", 0},
		{"missing signature", delivery{project: "hello", event: "push", id: "d-4", body: push, signature: "-"}, 401, "error", 0},
		{"malformed signature", delivery{project: "hello", event: "push", id: "d-5", body: push, signature: "sha256=zz"}, 401, "error", 0},
		{"sha1 signature only", delivery{project: "hello", event: "push", id: "d-6", body: push, signature: "sha1=" + strings.Repeat("0", 40)}, 401, "error", 0},
		{"signature of another body", delivery{project: "hello", event: "push", id: "d-7", body: append(bytes.Clone(push), ' '), signature: Sign(secret, push)}, 401, "error", 0},
		{"ping with wrong signature", delivery{project: "hello", event: "ping", id: "d-8", body: readTestdata(t, "ping.json"), signature: wrongSecret}, 401, "error", 0},
		{"no secret configured", delivery{project: "nosecret", event: "push", id: "d-9", body: push}, 401, "error", 0},
		{"unknown project", delivery{project: "nope", event: "push", id: "d-10", body: push}, 404, "error", 0},
		{"invalid project name", delivery{project: "No_Such", event: "push", id: "d-11", body: push}, 404, "error", 0},
		{"lookup fails", delivery{project: "broken", event: "push", id: "d-12", body: push}, 500, "error", 0},
		{"tag push", delivery{project: "hello", event: "push", id: "d-13", body: readTestdata(t, "push-tag.json")}, 200, "ignored", 0},
		{"branch deleted", delivery{project: "hello", event: "push", id: "d-14", body: readTestdata(t, "push-delete.json")}, 200, "ignored", 0},
		{"force push", delivery{project: "hello", event: "push", id: "d-15", body: readTestdata(t, "push-forced.json")}, 202, "queued", 1},
		{"other event", delivery{project: "hello", event: "issues", id: "d-16", body: []byte(`{"action":"opened"}`)}, 200, "ignored", 0},
		{"no event header", delivery{project: "hello", id: "d-17", body: push}, 400, "error", 0},
		{"no delivery id", delivery{project: "hello", event: "push", body: push}, 400, "error", 0},
		{"bad payload", delivery{project: "hello", event: "push", id: "d-18", body: []byte(`{"ref": 7}`)}, 400, "error", 0},
		{"other repository", delivery{project: "hello", event: "push", id: "d-19", body: bytes.ReplaceAll(push, []byte("octo-org/hello-world"), []byte("evil/fork"))}, 422, "error", 0},
		{"any repository allowed", delivery{project: "anyrepo", event: "push", id: "d-20", body: bytes.ReplaceAll(push, []byte("octo-org/hello-world"), []byte("evil/fork"))}, 202, "queued", 1},
		// The same push as "push" above, form-encoded: a replay (the signed content is the same).
		{"form encoded replay", delivery{project: "hello", event: "push", id: "d-21", contentType: "application/x-www-form-urlencoded",
			body: []byte(url.Values{"payload": {string(push)}}.Encode())}, 200, "duplicate", 0},
		{"form encoded", delivery{project: "hello", event: "push", id: "d-23", contentType: "application/x-www-form-urlencoded",
			body: []byte(url.Values{"payload": {string(otherPush)}}.Encode())}, 202, "queued", 1},
		{"unknown content type", delivery{project: "hello", event: "push", id: "d-22", contentType: "text/plain", body: push}, 400, "error", 0},
	}
	hk := newHook(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, a := hk.deliver(t, tt.d)
			if code != tt.wantCode || a.Status != tt.wantStatus {
				t.Errorf("got %d %+v, want %d %q", code, a, tt.wantCode, tt.wantStatus)
			}
			if a.Message == "" {
				t.Errorf("answer without a message")
			}
			if q := hk.take(); len(q) != tt.wantQueued {
				t.Errorf("%d queued, want %d", len(q), tt.wantQueued)
			}
		})
	}
}

func TestPushEventQueued(t *testing.T) {
	hk := newHook(t, nil)
	code, a := hk.deliver(t, delivery{project: "hello", event: "push", id: "72d3162e-cc78-11e3-81ab-4c9367dc0958", body: readTestdata(t, "push.json")})
	if code != 202 {
		t.Fatalf("%d %+v", code, a)
	}
	q := hk.take()
	want := PushEvent{
		DeliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		Repository: "octo-org/hello-world", CloneURL: "https://github.com/octo-org/hello-world.git", DefaultBranch: "main",
		Push: source.Push{
			Project: "hello", Ref: "refs/heads/main", Branch: "main",
			OldSHA: "6113728f27ae82c7b1a177c8d03f9e96e0adf246", NewSHA: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
			Message: "Update README.md\n\nExplain how to run it.",
			Author:  "Codertocat <21031067+Codertocat@users.noreply.github.com>",
		},
	}
	if len(q) != 1 || q[0] != want {
		t.Errorf("queued:\n got %+v\nwant %+v", q, want)
	}
	if a.Message != "deploying main of octo-org/hello-world at 0d1a26e67d8f" {
		t.Errorf("message %q", a.Message)
	}
}

func TestReplayIsQueuedOnce(t *testing.T) {
	for _, persistent := range []bool{false, true} {
		t.Run(fmt.Sprintf("persistent=%v", persistent), func(t *testing.T) {
			var mu sync.Mutex
			seen := map[string]bool{}
			hk := newHook(t, func(c *Config) {
				if persistent {
					c.Seen = func(_ context.Context, id string) (bool, error) {
						mu.Lock()
						defer mu.Unlock()
						was := seen[id]
						seen[id] = true
						return was, nil
					}
					c.Forget = func(_ context.Context, id string) error {
						mu.Lock()
						defer mu.Unlock()
						delete(seen, id)
						return nil
					}
				}
			})
			d := delivery{project: "hello", event: "push", id: "replayed", body: readTestdata(t, "push.json")}
			var wg sync.WaitGroup
			codes := make(chan int, 8)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					code, _ := hk.deliver(t, d)
					codes <- code
				}()
			}
			wg.Wait()
			close(codes)
			n := map[int]int{}
			for c := range codes {
				n[c]++
			}
			if n[202] != 1 || n[200] != 7 {
				t.Errorf("answers %v, want one 202 and seven 200", n)
			}
			if q := hk.take(); len(q) != 1 {
				t.Errorf("queued %d times", len(q))
			}
			if _, a := hk.deliver(t, d); a.Status != "duplicate" {
				t.Errorf("replay answered %+v", a)
			}
		})
	}
}

// A captured delivery sent again under new X-GitHub-Delivery ids (which
// the signature does not cover) is the same push: queued once.
func TestReplayUnderNewDeliveryIDs(t *testing.T) {
	hk := newHook(t, nil)
	body := readTestdata(t, "push.json")
	for i, id := range []string{"original", "replay-1", "replay-2"} {
		code, a := hk.deliver(t, delivery{project: "hello", event: "push", id: id, body: body})
		want := "duplicate"
		if i == 0 {
			want = "queued"
		}
		if a.Status != want {
			t.Errorf("delivery %s: %d %+v, want %q", id, code, a, want)
		}
	}
	if q := hk.take(); len(q) != 1 {
		t.Errorf("queued %d times, want once", len(q))
	}
}

func TestEnqueueFailureAllowsRedelivery(t *testing.T) {
	hk := newHook(t, nil)
	d := delivery{project: "hello", event: "push", id: "d-fail", body: readTestdata(t, "push.json")}
	hk.failNext = errors.New("disk full")
	if code, a := hk.deliver(t, d); code != 500 || strings.Contains(a.Message, "disk full") {
		t.Errorf("failing Enqueue: %d %+v (internal detail must not leak)", code, a)
	}
	if code, _ := hk.deliver(t, d); code != 202 {
		t.Errorf("redelivery after a failure: %d", code)
	}
	hk.failNext = fmt.Errorf("branch %q is not mapped to an environment: %w", "main", ErrIgnored)
	d = delivery{project: "hello", event: "push", id: "d-ignored", body: readTestdata(t, "push-forced.json")}
	if code, a := hk.deliver(t, d); code != 200 || a.Status != "ignored" || !strings.Contains(a.Message, "not mapped") {
		t.Errorf("ignored push: %d %+v", code, a)
	}
}

func TestBodyLimitAndMethod(t *testing.T) {
	hk := newHook(t, func(c *Config) { c.MaxBodyBytes = 1000 })
	code, a := hk.deliver(t, delivery{project: "hello", event: "push", id: "big", body: readTestdata(t, "push.json")})
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized delivery: %d %+v", code, a)
	}
	h, _ := New(Config{
		Lookup:  func(context.Context, string) (Link, bool, error) { return Link{}, false, nil },
		Enqueue: func(context.Context, PushEvent) error { return nil },
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/hooks/github/hello", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", rec.Code)
	}
	// Without a {project} pattern the last path segment names the project.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/hooks/github/hello", strings.NewReader("{}")))
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), `\"hello\"`) {
		t.Errorf("POST without pattern: %d %s", rec.Code, rec.Body)
	}
}

func TestSignature(t *testing.T) {
	// The example GitHub documents for validating deliveries.
	got := Sign([]byte("It's a Secret to Everybody"), []byte("Hello, World!"))
	want := "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	if !ValidSignature([]byte("It's a Secret to Everybody"), []byte("Hello, World!"), want) {
		t.Error("documented signature not valid")
	}
	for _, bad := range []string{"", "sha256=", want[:len(want)-2], strings.ToUpper(want), "sha1=" + want[7:]} {
		if ValidSignature([]byte("It's a Secret to Everybody"), []byte("Hello, World!"), bad) {
			t.Errorf("ValidSignature(%q) = true", bad)
		}
	}
}

func TestSameRepository(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"octo-org/hello-world", "octo-org/hello-world", true},
		{"https://github.com/octo-org/hello-world.git", "octo-org/hello-world", true},
		{"https://github.com/Octo-Org/Hello-World/", "octo-org/hello-world", true},
		{"git@github.com:octo-org/hello-world.git", "octo-org/hello-world", true},
		{"github.com/octo-org/hello-world", "octo-org/hello-world", true},
		{"https://github.com/octo-org/hello", "octo-org/hello-world", false},
		{"", "", false},
	} {
		if got := SameRepository(tt.a, tt.b); got != tt.want {
			t.Errorf("SameRepository(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}

func TestParsePushSamples(t *testing.T) {
	for _, tt := range []struct {
		file string
		want PushEvent
	}{
		{"push-tag.json", PushEvent{Repository: "octo-org/hello-world", CloneURL: "https://github.com/octo-org/hello-world.git", DefaultBranch: "main", Push: source.Push{
			Ref: "refs/tags/v1.0.0", OldSHA: strings.Repeat("0", 40), NewSHA: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", Created: true,
			Message: "Update README.md\n\nExplain how to run it.", Author: "Codertocat <21031067+Codertocat@users.noreply.github.com>"}}},
		{"push-delete.json", PushEvent{Repository: "octo-org/hello-world", CloneURL: "https://github.com/octo-org/hello-world.git", DefaultBranch: "main", Push: source.Push{
			Ref: "refs/heads/feature/login", Branch: "feature/login", OldSHA: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
			NewSHA: strings.Repeat("0", 40), Deleted: true}}},
		{"push-forced.json", PushEvent{Repository: "octo-org/hello-world", CloneURL: "https://github.com/octo-org/hello-world.git", DefaultBranch: "main", Push: source.Push{
			Ref: "refs/heads/main", Branch: "main", OldSHA: "a5f1d3b2c4e6f8091a2b3c4d5e6f708192a3b4c5",
			NewSHA: "b7e3c1d9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9", Forced: true,
			Message: "Rewrite history", Author: "Codertocat <21031067+Codertocat@users.noreply.github.com>"}}},
	} {
		got, err := ParsePush(readTestdata(t, tt.file))
		if err != nil || got != tt.want {
			t.Errorf("%s:\n got %+v %v\nwant %+v", tt.file, got, err, tt.want)
		}
	}
	if _, err := ParsePush(readTestdata(t, "ping.json")); err == nil {
		t.Error("a ping payload parsed as a push")
	}
}

// FuzzParsePush checks that no payload makes ParsePush panic, and that what
// it accepts is well-formed.
func FuzzParsePush(f *testing.F) {
	for _, name := range []string{"push.json", "push-tag.json", "push-delete.json", "push-forced.json", "ping.json"} {
		f.Add(readTestdata(f, name))
	}
	f.Add([]byte(`{"ref":"refs/heads/","before":"` + strings.Repeat("0", 40) + `","after":"` + strings.Repeat("a", 64) + `","repository":{"full_name":"a/b"}}`))
	f.Add([]byte(`{"ref":"refs/heads/x\u0000y","before":"","after":"","repository":{"full_name":"a/b"},"head_commit":null}`))
	f.Add([]byte(`{"ref":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		ev, err := ParsePush(payload)
		if err != nil {
			return
		}
		if !strings.HasPrefix(ev.Ref, "refs/") || strings.ContainsAny(ev.Ref, "\x00\n\r") {
			t.Errorf("accepted ref %q", ev.Ref)
		}
		if !objectName.MatchString(ev.OldSHA) || !objectName.MatchString(ev.NewSHA) {
			t.Errorf("accepted shas %q %q", ev.OldSHA, ev.NewSHA)
		}
		if ev.Branch != "" && ev.Ref != "refs/heads/"+ev.Branch {
			t.Errorf("branch %q of ref %q", ev.Branch, ev.Ref)
		}
		if ev.Repository == "" {
			t.Error("accepted without a repository")
		}
		if ev.Deleted && (ev.Message != "" || ev.Author != "") {
			t.Error("a deletion with a head commit")
		}
	})
}

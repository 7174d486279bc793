package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/deploy"
	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// received is one request a stand-in receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a stand-in webhook endpoint answering with the statuses it
// is given in turn (the last one from then on).
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	statuses []int
	got      []received
	ch       chan received
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses, ch: make(chan received, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		status := r.statuses[min(len(r.got), len(r.statuses)-1)]
		rc := received{header: req.Header.Clone(), body: b}
		r.got = append(r.got, rc)
		r.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, "answer\nwith lines")
		r.ch <- rc
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) next(t *testing.T) received {
	t.Helper()
	select {
	case rc := <-r.ch:
		return rc
	case <-time.After(15 * time.Second):
		t.Fatal("no delivery arrived")
		return received{}
	}
}

type env struct {
	t     *testing.T
	path  string
	store *store.Store
	box   *secrets.Box
	p     store.Project
	d     store.Deployment
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, path: filepath.Join(t.TempDir(), "slipway.db")}
	e.open()
	key := make([]byte, 32)
	key[0] = 7
	e.box, _ = secrets.New(key)
	ctx := context.Background()
	p, err := e.store.CreateProject(ctx, store.Project{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	envr, err := e.store.GetEnvironment(ctx, p.ID, store.ProductionEnvironment)
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.store.CreateDeployment(ctx, store.Deployment{ProjectID: p.ID, EnvironmentID: envr.ID, Status: string(deploy.Running),
		Trigger: "push", Branch: "main", CommitSHA: "0123456789abcdef", CommitMessage: "Fix the thing\n\nbody", CommitAuthor: "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	if e.d, err = e.store.GetDeployment(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) open() {
	st, err := store.Open(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.store = st
	e.t.Cleanup(func() { st.Close() })
}

func (e *env) service(cfg Config) *Service {
	e.t.Helper()
	cfg.Store, cfg.Secrets = e.store, e.box
	if cfg.FirstRetry == 0 {
		cfg.FirstRetry = 10 * time.Millisecond
	}
	cfg.DeploymentURL = func(d store.Deployment) string { return "http://" + d.ID + ".slipway.localhost" }
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(s.Close)
	return s
}

func (e *env) add(s *Service, spec HookSpec) Hook {
	e.t.Helper()
	h, _, err := s.Add(context.Background(), e.p, spec)
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}

// settled waits until the hook's newest delivery is no longer pending.
func (e *env) settled(s *Service, hook string) store.Delivery {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ds, err := s.Deliveries(context.Background(), e.p, hook, 1)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(ds) == 1 && ds[0].State != store.DeliveryPending {
			return ds[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatal("the delivery did not settle")
	return store.Delivery{}
}

func TestDeliveryIsSignedJSON(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, 200)
	s := e.service(Config{})
	s.Start()
	h, secret, err := s.Add(context.Background(), e.p, HookSpec{URL: r.URL + "/hook?token=abcdef123", Secret: "s3cret"})
	if err != nil || secret != "s3cret" {
		t.Fatal(secret, err)
	}
	if h.URL != r.URL+"/…f123" || strings.Contains(h.URL, "token") {
		t.Errorf("hint %q", h.URL)
	}
	s.StatusChanged(e.d, deploy.Deploying)
	rc := r.next(t)
	if sig := rc.header.Get(SignatureHeader); !Verify([]byte("s3cret"), rc.body, sig) || !strings.HasPrefix(sig, "sha256=") {
		t.Errorf("signature %q does not verify", sig)
	}
	if Verify([]byte("other"), rc.body, rc.header.Get(SignatureHeader)) {
		t.Error("the signature verifies under another secret")
	}
	var p Payload
	if err := json.Unmarshal(rc.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Event != DeploymentSucceeded || rc.header.Get(EventHeader) != DeploymentSucceeded || p.ID != rc.header.Get(DeliveryHeader) ||
		p.Project != "web" || p.Environment != "production" || p.Deployment == nil || p.Time.IsZero() {
		t.Fatalf("payload %+v, headers %v", p, rc.header)
	}
	want := Deployment{ID: e.d.ID, Status: "RUNNING", URL: "http://" + e.d.ID + ".slipway.localhost", Trigger: "push", Branch: "main",
		Commit: "0123456789abcdef", CommitMessage: "Fix the thing", Author: "Ada"}
	if *p.Deployment != want {
		t.Errorf("deployment %+v, want %+v", *p.Deployment, want)
	}
	if p.Message != "web: deployment "+e.d.ID+" (production, main@0123456) is live at "+want.URL {
		t.Errorf("message %q", p.Message)
	}
	if d := e.settled(s, h.ID); d.State != store.DeliveryDelivered || d.Attempts != 1 || d.LastStatus != 200 || d.ID != p.ID {
		t.Errorf("delivery log: %+v", d)
	}
}

func TestSlackFormat(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, 200)
	s := e.service(Config{})
	s.Start()
	e.add(s, HookSpec{URL: r.URL, Format: FormatSlack})
	e.d.Status, e.d.FailureReason = string(deploy.Failed), "the build failed: <exit 1> & more"
	s.StatusChanged(e.d, deploy.Building)
	rc := r.next(t)
	var m map[string]any
	if err := json.Unmarshal(rc.body, &m); err != nil {
		t.Fatal(err)
	}
	text, _ := m["text"].(string)
	if len(m) != 1 || !strings.HasPrefix(text, ":x: web: deployment "+e.d.ID) ||
		!strings.Contains(text, "failed: the build failed: &lt;exit 1&gt; &amp; more") ||
		!strings.HasSuffix(text, "<http://"+e.d.ID+".slipway.localhost|open>") {
		t.Errorf("slack body %s", rc.body)
	}
	if rc.header.Get(SignatureHeader) == "" {
		t.Error("a Slack-format delivery is not signed")
	}
}

func TestRetriesWithBackoffThenSuccess(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, 500, 503, 200)
	s := e.service(Config{})
	s.Start()
	h := e.add(s, HookSpec{URL: r.URL})
	s.Restarted(e.d, deploy.Restart{Crashed: true, Reason: "the app exited (exit code 1)"})
	var ids []string
	for range 3 {
		rc := r.next(t)
		ids = append(ids, rc.header.Get(DeliveryHeader))
		var p Payload
		json.Unmarshal(rc.body, &p)
		if p.Event != AppCrashed || p.Reason != "the app exited (exit code 1)" ||
			!strings.HasSuffix(p.Message, "crashed: the app exited (exit code 1); restarting it") {
			t.Errorf("payload %+v", p)
		}
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("retries carry other delivery ids: %v", ids)
	}
	d := e.settled(s, h.ID)
	if d.State != store.DeliveryDelivered || d.Attempts != 3 || d.LastStatus != 200 || d.LastError != "" {
		t.Errorf("delivery %+v", d)
	}
}

func TestBackoffDoublesUpToItsBound(t *testing.T) {
	s := &Service{cfg: Config{FirstRetry: 10 * time.Second, MaxRetry: time.Minute}}
	for n, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 4: time.Minute, 20: time.Minute} {
		if got := s.backoff(n); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestFailuresAreBounded(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		status   int
		attempts int
	}{{500, 3}, {429, 3}, {400, 1}, {410, 1}} {
		r := newReceiver(t, tc.status)
		s := e.service(Config{MaxAttempts: 3})
		s.Start()
		h := e.add(s, HookSpec{URL: r.URL})
		if _, err := s.SendTest(context.Background(), e.p, h.ID, 0); err != nil {
			t.Fatal(err)
		}
		d := e.settled(s, h.ID)
		if d.State != store.DeliveryFailed || d.Attempts != tc.attempts || d.LastStatus != tc.status ||
			d.LastError != fmt.Sprintf("HTTP %d: answer with lines", tc.status) {
			t.Errorf("HTTP %d: %+v", tc.status, d)
		}
		s.Close()
	}
}

func TestPendingDeliveriesSurviveARestart(t *testing.T) {
	e := newEnv(t)
	down := newReceiver(t, 503)
	r := newReceiver(t, 200)
	ctx := context.Background()

	// A delivery that failed once and waits for its retry when the
	// server stops, and one queued after the sender stopped (the server
	// went down right after the event).
	s := e.service(Config{FirstRetry: 300 * time.Millisecond})
	retry := e.add(s, HookSpec{URL: down.URL, Events: []string{AppSlept}})
	s.Start()
	s.Slept(e.d)
	down.next(t)
	waitFor(t, func() bool {
		ds, _ := s.Deliveries(ctx, e.p, retry.ID, 1)
		return len(ds) == 1 && ds[0].Attempts == 1
	})
	s.Close()
	queued := e.add(s, HookSpec{URL: r.URL})
	s.StatusChanged(e.d, deploy.Deploying)
	ds, _ := s.Deliveries(ctx, e.p, queued.ID, 10)
	if len(ds) != 1 || ds[0].Event != DeploymentSucceeded {
		t.Fatalf("deliveries to the second hook: %+v", ds)
	}

	// Reopen the store: the same data, as a restarted server finds it.
	e.store.Close()
	e.open()
	down.mu.Lock()
	down.statuses = []int{200}
	down.mu.Unlock()
	s2 := e.service(Config{})
	s2.Start()
	rc := r.next(t)
	if rc.header.Get(DeliveryHeader) != ds[0].ID {
		t.Errorf("delivered %s, queued %s", rc.header.Get(DeliveryHeader), ds[0].ID)
	}
	down.next(t)
	if d := e.settled(s2, queued.ID); d.State != store.DeliveryDelivered || d.Attempts != 1 {
		t.Errorf("queued: %+v", d)
	}
	if d := e.settled(s2, retry.ID); d.State != store.DeliveryDelivered || d.Attempts < 2 || d.Event != AppSlept {
		t.Errorf("retried: %+v", d)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSendTestAndTheDeliveryLog(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, 204)
	s := e.service(Config{Keep: 2})
	s.Start()
	ctx := context.Background()
	h := e.add(s, HookSpec{URL: r.URL, Events: []string{AppWoke}})
	var tests []store.Delivery
	for range 3 {
		d, err := s.SendTest(ctx, e.p, h.ID, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if d.State != store.DeliveryDelivered || d.Attempts != 1 || d.LastStatus != 204 || d.Event != Test {
			t.Errorf("test delivery %+v", d)
		}
		var p Payload
		json.Unmarshal(r.next(t).body, &p)
		if p.Event != Test || p.Project != "web" || p.Message != "web: a test notification from Slipway" {
			t.Errorf("test payload %+v", p)
		}
		tests = append(tests, d)
	}
	s.Woke(e.d, 42*time.Millisecond, 3, nil)
	var p Payload
	json.Unmarshal(r.next(t).body, &p)
	if p.Event != AppWoke || p.WakeMS != 42 || !strings.HasSuffix(p.Message, "woke in 42ms") {
		t.Errorf("woke payload %+v", p)
	}
	e.settled(s, h.ID)
	ds, err := s.Deliveries(ctx, e.p, h.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Keep 2: beyond 2 finished ones, the oldest are trimmed when another
	// is queued.
	if len(ds) != 3 || ds[0].Event != AppWoke || ds[1].ID != tests[2].ID || ds[2].ID != tests[1].ID {
		t.Errorf("delivery log %+v", ds)
	}

	other, _ := e.store.CreateProject(ctx, store.Project{Name: "other"})
	if _, err := s.SendTest(ctx, other, h.ID, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another project's webhook: %v", err)
	}
	if _, err := s.Deliveries(ctx, other, h.ID, 10); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another project's deliveries: %v", err)
	}
	if err := s.Remove(ctx, other, h.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing another project's webhook: %v", err)
	}
	if err := s.Remove(ctx, e.p, h.ID); err != nil {
		t.Fatal(err)
	}
	if hs, _ := s.List(ctx, e.p); len(hs) != 0 {
		t.Errorf("after remove: %+v", hs)
	}
}

func TestHookSpecValidation(t *testing.T) {
	for _, spec := range []HookSpec{
		{URL: "ftp://example.com"}, {URL: "example.com/hook"}, {URL: "http://"},
		{URL: "https://example.com", Format: "xml"},
		{URL: "https://example.com", Events: []string{"deployment.started"}},
		{URL: "https://example.com", Secret: strings.Repeat("x", 257)},
	} {
		if err := spec.Validate(); !errors.Is(err, project.ErrInvalid) {
			t.Errorf("%+v: %v", spec, err)
		}
	}
	spec := HookSpec{URL: " https://example.com/x ", Events: []string{AppWoke, AppWoke, " app.slept"}}
	if err := spec.Validate(); err != nil || spec.URL != "https://example.com/x" || spec.Format != FormatJSON ||
		strings.Join(spec.Events, ",") != "app.woke,app.slept" {
		t.Errorf("%+v %v", spec, err)
	}
}

package drain

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

type env struct {
	t     *testing.T
	store *store.Store
	box   *secrets.Box
	p     store.Project
	d     store.Deployment
}

func newEnv(t *testing.T) *env {
	st, err := store.Open(filepath.Join(t.TempDir(), "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key := make([]byte, 32)
	box, _ := secrets.New(key)
	ctx := context.Background()
	p, err := st.CreateProject(ctx, store.Project{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	envr, _ := st.GetEnvironment(ctx, p.ID, store.ProductionEnvironment)
	d, err := st.CreateDeployment(ctx, store.Deployment{ProjectID: p.ID, EnvironmentID: envr.ID, Status: "RUNNING", Trigger: "upload"})
	if err != nil {
		t.Fatal(err)
	}
	d, _ = st.GetDeployment(ctx, d.ID)
	return &env{t: t, store: st, box: box, p: p, d: d}
}

func (e *env) service(cfg Config) *Service {
	cfg.Store, cfg.Secrets = e.store, e.box
	cfg.Hostname = "host-1"
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 20 * time.Millisecond
	}
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(s.Close)
	return s
}

func (e *env) add(s *Service, spec Spec) Status {
	e.t.Helper()
	st, err := s.Add(context.Background(), e.p, spec)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// lines makes n runtime log lines of e's deployment.
func (e *env) lines(from, n int, stream string) []store.LogLine {
	var out []store.LogLine
	t := time.Date(2026, 12, 4, 10, 0, 0, 123456789, time.UTC)
	for i := from; i < from+n; i++ {
		out = append(out, store.LogLine{DeploymentID: e.d.ID, Kind: store.LogRuntime, InstanceID: "inst1", Stream: stream,
			Time: t, Text: fmt.Sprintf("line %d", i)})
	}
	return out
}

// syslogServer is a stand-in syslog receiver over TCP (or TLS): it reads
// octet-counted frames and hands each message over. While stalled, it
// accepts connections and never reads them.
type syslogServer struct {
	ln      net.Listener
	msgs    chan string
	stalled atomic.Bool
	mu      sync.Mutex
	held    []net.Conn
}

func newSyslogServer(t *testing.T, tc *tls.Config) *syslogServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	s := &syslogServer{ln: ln, msgs: make(chan string, 100_000)}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.held {
			c.Close()
		}
		s.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.held = append(s.held, c)
			s.mu.Unlock()
			if s.stalled.Load() {
				continue
			}
			go s.read(c)
		}
	}()
	return s
}

func (s *syslogServer) read(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		n, err := r.ReadString(' ')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
		if err != nil {
			s.msgs <- "BAD FRAME " + n
			return
		}
		msg := make([]byte, size)
		if _, err := io.ReadFull(r, msg); err != nil {
			return
		}
		s.msgs <- string(msg)
	}
}

func (s *syslogServer) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(15 * time.Second):
		t.Fatal("no syslog message arrived")
		return ""
	}
}

// rfc5424 matches the messages Slipway sends: PRI, VERSION, TIMESTAMP,
// HOSTNAME, APP-NAME, PROCID, MSGID, STRUCTURED-DATA, MSG.
var rfc5424 = regexp.MustCompile(`^<(\d{1,3})>1 (\S+) ([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32}) (\[slipway@32473(?: [a-z]+="(?:[^"\\\]]|\\["\\\]])*")*\]) (.*)$`)

func checkMessage(t *testing.T, msg string, pri, instance, stream, sd, text string) {
	t.Helper()
	m := rfc5424.FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("not an RFC 5424 message: %q", msg)
	}
	if _, err := time.Parse(time.RFC3339Nano, m[2]); err != nil {
		t.Errorf("timestamp %q: %v", m[2], err)
	}
	got := []string{m[1], m[3], m[4], m[5], m[6], m[7], m[8]}
	want := []string{pri, "host-1", "web", instance, stream, sd, text}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("message %q:\n got %q\nwant %q", msg, got, want)
	}
}

func TestSyslogOverTCP(t *testing.T) {
	e := newEnv(t)
	srv := newSyslogServer(t, nil)
	s := e.service(Config{})
	st := e.add(s, Spec{URL: "syslog://" + srv.ln.Addr().String()})
	if st.Kind != KindSyslog || st.TLS || st.URL != "syslog://"+srv.ln.Addr().String() {
		t.Errorf("status %+v", st)
	}
	s.RuntimeLines(e.d, e.lines(0, 2, "stdout"))
	s.RuntimeLines(e.d, append(e.lines(2, 1, "stderr"), store.LogLine{DeploymentID: e.d.ID, Stream: "slipway",
		Time: time.Now(), Text: `a "quoted" ] text`}))
	sd := `[slipway@32473 deployment="` + e.d.ID + `" environment="production"]`
	checkMessage(t, srv.next(t), "14", "inst1", "stdout", sd, "line 0")
	m := srv.next(t)
	checkMessage(t, m, "14", "inst1", "stdout", sd, "line 1")
	if !strings.Contains(m, " 2026-12-04T10:00:00.123456Z ") {
		t.Errorf("timestamp in %q", m)
	}
	checkMessage(t, srv.next(t), "11", "inst1", "stderr", sd, "line 2")
	checkMessage(t, srv.next(t), "13", "-", "slipway", sd, `a "quoted" ] text`)
	waitFor(t, func() bool { st := status(t, s, e); return st.Sent == 4 && st.Connected && st.Dropped == 0 })
}

func TestAppendParamEscapes(t *testing.T) {
	got := string(appendParam(nil, "deployment", `a"b\c]d`))
	if got != ` deployment="a\"b\\c\]d"` {
		t.Errorf("%s", got)
	}
}

func status(t *testing.T, s *Service, e *env) Status {
	t.Helper()
	sts, err := s.List(context.Background(), e.p)
	if err != nil || len(sts) != 1 {
		t.Fatal(sts, err)
	}
	return sts[0]
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

// selfSigned returns a TLS config serving a certificate for 127.0.0.1
// and the certificate's PEM.
func selfSigned(t *testing.T) (*tls.Config, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pemText
}

func TestSyslogOverTLS(t *testing.T) {
	e := newEnv(t)
	tc, ca := selfSigned(t)
	srv := newSyslogServer(t, tc)
	s := e.service(Config{})
	url := "syslog+tls://" + srv.ln.Addr().String()

	// Without the CA, the certificate is refused and nothing is sent.
	untrusted := e.add(s, Spec{URL: url})
	s.RuntimeLines(e.d, e.lines(0, 1, "stdout"))
	waitFor(t, func() bool { return status(t, s, e).LastError != "" })
	if st := status(t, s, e); st.Sent != 0 || !strings.Contains(st.LastError, "certificate") || st.Connected || !st.TLS {
		t.Errorf("untrusted: %+v", st)
	}
	if err := s.Remove(context.Background(), e.p, untrusted.ID); err != nil {
		t.Fatal(err)
	}

	e.add(s, Spec{URL: url, CA: ca})
	s.RuntimeLines(e.d, e.lines(1, 1, "stdout"))
	checkMessage(t, srv.next(t), "14", "inst1", "stdout", `[slipway@32473 deployment="`+e.d.ID+`" environment="production"]`, "line 1")
}

func TestHTTPDrainBatchesAndRetries(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var got []Line
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var batch []Line
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&batch) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got = append(got, batch...)
	}))
	defer srv.Close()
	s := e.service(Config{})
	st := e.add(s, Spec{URL: srv.URL + "/ingest?token=secret-token-1234"})
	if st.Kind != KindHTTP || strings.Contains(st.URL, "secret") {
		t.Errorf("status %+v", st)
	}
	s.RuntimeLines(e.d, e.lines(0, 3, "stdout"))
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 3 })
	mu.Lock()
	defer mu.Unlock()
	want := Line{Time: time.Date(2026, 12, 4, 10, 0, 0, 123456789, time.UTC), Project: "web", Environment: "production",
		Deployment: e.d.ID, Instance: "inst1", Stream: "stdout", Text: "line 0"}
	if len(got) == 3 && got[0].Time.Equal(want.Time) {
		got[0].Time = want.Time
	}
	if len(got) != 3 || got[0] != want || got[2].Text != "line 2" || calls != 2 {
		t.Errorf("after %d calls, got %+v", calls, got)
	}
}

func TestStalledDrainNeverBlocksLoggingAndReportsDrops(t *testing.T) {
	e := newEnv(t)
	// An HTTP endpoint that stalls: it holds every request until the
	// client gives up, until it is released.
	var stalled atomic.Bool
	stalled.Store(true)
	var mu sync.Mutex
	var got []Line
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stalled.Load() {
			// Read the body, so that the server notices the client
			// giving up (and ends the request's context).
			io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			return
		}
		var batch []Line
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, batch...)
		mu.Unlock()
	}))
	defer srv.Close()
	s := e.service(Config{BufferLines: 100, Timeout: 300 * time.Millisecond})
	dr := e.add(s, Spec{URL: srv.URL})
	ctx := context.Background()

	// The log path: each batch is stored, then offered to the drains.
	const batches, per = 200, 100
	for i := range batches {
		lines := e.lines(i*per, per, "stdout")
		if err := e.store.AppendLogs(ctx, lines); err != nil {
			t.Fatal(err)
		}
		s.RuntimeLines(e.d, lines)
	}
	stored, err := e.store.ListLogs(ctx, store.LogQuery{DeploymentID: e.d.ID, Kind: store.LogRuntime, Limit: 1 << 20})
	app := 0
	for _, l := range stored {
		if l.Stream == "stdout" {
			app++
		}
	}
	if err != nil || app != batches*per {
		t.Fatalf("the store has %d of the app's lines (%v)", app, err)
	}
	st := status(t, s, e)
	if st.Dropped < batches*per-batchLines-100 || st.Sent != 0 || st.Buffered > 100 {
		t.Fatalf("status %+v", st)
	}

	// Its requests time out: the runtime log is told lines are dropped.
	notices := func() (announced bool, reported int64) {
		lines, _ := e.store.ListLogs(ctx, store.LogQuery{DeploymentID: e.d.ID, Kind: store.LogRuntime, Limit: 1 << 20})
		for _, l := range lines {
			var n int64
			if l.Stream != "slipway" {
				continue
			}
			if strings.HasPrefix(l.Text, "slipway: log drain "+dr.ID+" is dropping lines: its buffer is full and its endpoint fails") {
				announced = true
			} else if _, err := fmt.Sscanf(l.Text, "slipway: log drain "+dr.ID+" dropped %d lines", &n); err == nil {
				reported += n
			}
		}
		return announced, reported
	}
	waitFor(t, func() bool { a, _ := notices(); return a })
	if st := status(t, s, e); st.Connected || !strings.Contains(st.LastError, "deadline exceeded") {
		t.Errorf("stalled drain: %+v", st)
	}

	// The endpoint answers again: what was buffered arrives, preceded by
	// a line that says how many were dropped (in the drain and in the
	// runtime log).
	stalled.Store(false)
	dropped := status(t, s, e).Dropped
	waitFor(t, func() bool {
		st := status(t, s, e)
		_, reported := notices()
		return st.Connected && st.Buffered == 0 && reported == dropped
	})
	mu.Lock()
	defer mu.Unlock()
	var text, drained int64
	for _, l := range got {
		var n int64
		if l.Stream == "slipway" {
			if _, err := fmt.Sscanf(l.Text, "slipway: log drain "+dr.ID+" dropped %d lines", &n); err != nil ||
				l.Deployment != e.d.ID || l.Project != "web" || l.Environment != "production" {
				t.Errorf("notice %+v", l)
			}
			drained += n
			continue
		}
		text++
	}
	if drained != dropped || text+dropped != batches*per {
		t.Errorf("received %d lines and notices of %d dropped; %d were dropped of %d", text, drained, dropped, batches*per)
	}
}

func TestSpecValidation(t *testing.T) {
	for _, spec := range []Spec{
		{URL: "syslog://logs.example.com"}, {URL: "tcp://logs.example.com:514"}, {URL: "https://"},
		{URL: "syslog+tls://:6514"}, {URL: "https://logs.example.com", CA: "not pem"},
	} {
		if err := spec.Validate(); !errors.Is(err, project.ErrInvalid) {
			t.Errorf("%+v: %v", spec, err)
		}
	}
	for _, raw := range []string{"syslog://logs.example.com:514", "syslog+tls://logs.example.com:6514", "https://u:p@logs.example.com/in"} {
		spec := Spec{URL: raw}
		if err := spec.Validate(); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

func TestRemoveAndOtherProjects(t *testing.T) {
	e := newEnv(t)
	s := e.service(Config{})
	d := e.add(s, Spec{URL: "syslog://127.0.0.1:9"})
	ctx := context.Background()
	other, _ := e.store.CreateProject(ctx, store.Project{Name: "other"})
	if err := s.Remove(ctx, other, d.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing another project's drain: %v", err)
	}
	if sts, _ := s.List(ctx, other); len(sts) != 0 {
		t.Errorf("another project lists %+v", sts)
	}
	if err := s.Remove(ctx, e.p, d.ID); err != nil {
		t.Fatal(err)
	}
	if sts, _ := s.List(ctx, e.p); len(sts) != 0 {
		t.Errorf("after remove: %+v", sts)
	}
	s.RuntimeLines(e.d, e.lines(0, 1, "stdout")) // no drain: nothing happens
}

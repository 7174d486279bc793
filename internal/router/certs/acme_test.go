package certs_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/router/certs"
)

// acmeWait bounds every wait in the ACME tests (Pebble starting, a
// certificate being issued); it guards against hangs and asserts nothing
// about speed.
const acmeWait = 60 * time.Second

const (
	customDomain = "app.example.test" // a custom domain the policy allows
	otherDomain  = "other.example.test"
	testBase     = "slipway.localhost"
	baseHost     = "web." + testBase // on the base domain: never a certificate
)

// allowSet is a HostPolicy over a fixed set of hosts, like the store's
// domains table.
func allowSet(hosts ...string) func(context.Context, string) error {
	return func(_ context.Context, host string) error {
		for _, h := range hosts {
			if h == host {
				return nil
			}
		}
		return errors.New("not a custom domain")
	}
}

func TestNewACMEConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  certs.ACMEConfig
		ok   bool
	}{
		{"zero value", certs.ACMEConfig{}, true},
		{"full", certs.ACMEConfig{DirectoryURL: "https://127.0.0.1:14000/dir", Email: "ops@example.com",
			CacheDir: filepath.Join(dir, "acme"), BaseDomain: "Slipway.Localhost."}, true},
		{"relative directory URL", certs.ACMEConfig{DirectoryURL: "/dir"}, false},
		{"directory URL scheme", certs.ACMEConfig{DirectoryURL: "ftp://ca.example/dir"}, false},
		{"base domain", certs.ACMEConfig{BaseDomain: "bad domain"}, false},
		{"missing CA file", certs.ACMEConfig{CACertFile: filepath.Join(dir, "missing.pem")}, false},
		{"CA file without PEM", certs.ACMEConfig{CACertFile: notPEM}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := certs.NewACME(tc.cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("NewACME: err = %v, want ok = %v", err, tc.ok)
			}
		})
	}
	// The cache is kept per directory URL, created up front, private.
	sub := filepath.Join(dir, "acme", "127.0.0.1_14000_dir")
	if fi, err := os.Stat(sub); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory %s: %v, %v", sub, fi, err)
	}
}

// TestACMEHostPolicy checks which hosts may have a certificate, without a
// CA: Obtain refuses the others before any order, and the plain-HTTP
// handler sends only allowed hosts' challenge requests to autocert.
func TestACMEHostPolicy(t *testing.T) {
	policyErr := errors.New("not a custom domain")
	a, err := certs.NewACME(certs.ACMEConfig{
		DirectoryURL: "https://127.0.0.1:1/unreachable", // never contacted
		BaseDomain:   testBase,
		HostPolicy: func(_ context.Context, host string) error {
			switch host {
			case customDomain, baseHost, testBase:
				return nil // the base-domain guard must win over the policy
			}
			return policyErr
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(299) // marks "went to the router"
	})
	h := a.HTTPHandler(fallback)

	for _, tc := range []struct {
		host    string
		allowed bool
	}{
		{customDomain, true},
		{"APP.Example.Test.:80", true},
		{otherDomain, false},
		{testBase, false},
		{baseHost, false},
		{"deep.web." + testBase, false},
		{"127.0.0.1", false},
		{"[::1]:443", false},
		{"", false},
		{"bad host", false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			// Plain HTTP: ordinary requests always reach the router.
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/index.html", nil)
			req.Host = tc.host
			h.ServeHTTP(rec, req)
			if rec.Code != 299 {
				t.Errorf("ordinary request: status %d, want the router's", rec.Code)
			}
			// A challenge request goes to autocert (404: no such token)
			// only for an allowed host; otherwise to the router.
			rec = httptest.NewRecorder()
			req = httptest.NewRequest("GET", "/.well-known/acme-challenge/token", nil)
			req.Host = tc.host
			h.ServeHTTP(rec, req)
			want := 299
			if tc.allowed {
				want = http.StatusNotFound
			}
			if rec.Code != want {
				t.Errorf("challenge request: status %d, want %d", rec.Code, want)
			}
			if tc.allowed {
				return
			}
			err := a.Obtain(context.Background(), tc.host)
			if !errors.Is(err, certs.ErrHostNotAllowed) {
				t.Errorf("Obtain: err = %v, want ErrHostNotAllowed", err)
			}
		})
	}
	if err := a.Obtain(context.Background(), otherDomain); !errors.Is(err, policyErr) {
		t.Errorf("Obtain(%s): err = %v, want it to wrap the policy's error", otherDomain, err)
	}
}

// TestACMEZeroValueRefusesAll: with no HostPolicy every handshake fails.
func TestACMEZeroValueRefusesAll(t *testing.T) {
	a, err := certs.NewACME(certs.ACMEConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ErrorLog: testLogger(t)}
	done := make(chan error, 1)
	go func() { done <- a.ServeTLS(srv, ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	if err := handshake(ln.Addr().String(), customDomain); err == nil {
		t.Fatal("handshake succeeded with no host policy")
	}
}

// TestACMEPebbleTLSALPN issues a certificate from Pebble with real
// tls-alpn-01 validation on the router's TLS listener, serves a custom
// domain through the Router over HTTPS, refuses hosts the policy does not
// allow, and after a restart serves the cached certificate with the CA gone.
func TestACMEPebbleTLSALPN(t *testing.T) {
	bin := pebbleBinary(t)
	env := newACMEEnv(t)
	pb := startPebble(t, bin, env.httpPort(), env.tlsPort())

	cacheDir := filepath.Join(t.TempDir(), "acme")
	cfg := certs.ACMEConfig{
		DirectoryURL: pb.directory,
		Email:        "ops@example.com",
		CacheDir:     cacheDir,
		BaseDomain:   testBase,
		// baseHost is in the set, yet must never get a certificate.
		HostPolicy: allowSet(customDomain, baseHost),
		CACertFile: pb.certFile,
	}
	a, err := certs.NewACME(cfg)
	if err != nil {
		t.Fatal(err)
	}
	env.serve(t, a)

	client := httpsClient(env.tlsAddr, pb.roots(t))
	began := time.Now()
	res := mustGetTLS(t, client, customDomain)
	t.Logf("first HTTPS request, certificate ordered and issued by Pebble (tls-alpn-01): %v", time.Since(began).Round(time.Millisecond))
	if res.body != "hello from "+customDomain+" via https" {
		t.Errorf("body = %q", res.body)
	}
	if res.proto != "HTTP/2.0" {
		t.Errorf("proto = %s, want HTTP/2.0", res.proto)
	}
	if n := env.challenges.Load(); n != 0 {
		t.Errorf("%d http-01 challenge requests; tls-alpn-01 should have been used", n)
	}
	if env.alpnChallenges.Load() == 0 {
		t.Errorf("no tls-alpn-01 challenge handshake")
	}
	serial := res.serial

	// Later requests reuse the certificate.
	if res := mustGetTLS(t, client, customDomain); res.serial.Cmp(serial) != 0 {
		t.Errorf("second request: serial %v, want %v", res.serial, serial)
	}
	// HTTP/1.1 works as well (and is what WebSocket upgrades use).
	if res := mustGetTLS(t, httpsClient(env.tlsAddr, pb.roots(t), "http/1.1"), customDomain); res.proto != "HTTP/1.1" {
		t.Errorf("proto = %s, want HTTP/1.1", res.proto)
	}
	// Hosts the policy refuses, and base-domain names, fail the handshake.
	for _, host := range []string{otherDomain, baseHost, testBase} {
		if err := handshake(env.tlsAddr, host); err == nil {
			t.Errorf("handshake for %s succeeded", host)
		}
	}
	// Plain HTTP still reaches the apps.
	if got := getPlain(t, env.httpAddr, baseHost); got != "hello from "+baseHost+" via http" {
		t.Errorf("plain HTTP: %q", got)
	}

	// Restart: the CA is gone, a new ACME over the same cache serves the
	// same certificate, so no order was placed.
	env.stopTLS(t)
	pb.stop()
	a2, err := certs.NewACME(cfg)
	if err != nil {
		t.Fatal(err)
	}
	env2 := newACMEEnv(t)
	env2.serve(t, a2)
	res = mustGetTLS(t, httpsClient(env2.tlsAddr, pb.roots(t)), customDomain)
	if res.serial.Cmp(serial) != 0 {
		t.Errorf("after restart: serial %v, want the cached %v", res.serial, serial)
	}
	if res.body != "hello from "+customDomain+" via https" {
		t.Errorf("after restart: body = %q", res.body)
	}
}

// TestACMEPebbleHTTP01 issues a certificate with real http-01 validation
// on the plain-HTTP listener: Pebble's tls-alpn-01 port is closed, so that
// challenge fails and autocert falls back to http-01.
func TestACMEPebbleHTTP01(t *testing.T) {
	bin := pebbleBinary(t)
	env := newACMEEnv(t)
	pb := startPebble(t, bin, env.httpPort(), closedPort(t))
	a, err := certs.NewACME(certs.ACMEConfig{
		DirectoryURL: pb.directory,
		CacheDir:     filepath.Join(t.TempDir(), "acme"),
		BaseDomain:   testBase,
		HostPolicy:   allowSet(customDomain),
		CACertFile:   pb.certFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	env.serve(t, a)

	ctx, cancel := context.WithTimeout(context.Background(), acmeWait)
	defer cancel()
	began := time.Now()
	if err := a.Obtain(ctx, customDomain); err != nil {
		t.Fatalf("Obtain: %v\npebble log:\n%s", err, pb.log())
	}
	t.Logf("Obtain (tls-alpn-01 failing, then http-01): %v", time.Since(began).Round(time.Millisecond))
	if n := env.challenges.Load(); n == 0 {
		t.Errorf("no http-01 challenge request answered")
	}
	res := mustGetTLS(t, httpsClient(env.tlsAddr, pb.roots(t)), customDomain)
	if res.body != "hello from "+customDomain+" via https" {
		t.Errorf("body = %q", res.body)
	}
}

// ExampleNewACME wires ACME certificates for custom domains into a server:
// the Router over TLS on :443, and on :80 the challenge handler in front of
// the Router. (Compiled, not run: it would listen on real ports.)
func ExampleNewACME() {
	var table router.Table
	rt := &router.Router{Table: &table}
	customDomains := map[string]bool{"www.example.com": true} // the store, in Slipway

	a, err := certs.NewACME(certs.ACMEConfig{
		Email:      "ops@example.com",
		CacheDir:   "/var/lib/slipway/acme",
		BaseDomain: "slipway.example.com",
		HostPolicy: func(ctx context.Context, host string) error {
			if !customDomains[host] {
				return errors.New("not a custom domain")
			}
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	tlsLn, err := net.Listen("tcp", ":443")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		log.Fatal(a.ServeTLS(&http.Server{Handler: rt, ReadHeaderTimeout: 10 * time.Second}, tlsLn))
	}()
	plain := &http.Server{Addr: ":80", Handler: a.HTTPHandler(rt), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(plain.ListenAndServe())
}

// acmeEnv is the router's two listeners (TLS and plain HTTP) with one app
// behind them, routed for customDomain and baseHost.
type acmeEnv struct {
	tlsLn, httpLn     net.Listener
	tlsAddr, httpAddr string
	rt                *router.Router
	challenges        atomic.Int64 // http-01 challenge requests answered 200
	alpnChallenges    atomic.Int64 // tls-alpn-01 challenge handshakes

	tlsSrv  *http.Server
	tlsDone chan error
}

func newACMEEnv(t *testing.T) *acmeEnv {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s via %s", r.Host, r.Header.Get("X-Forwarded-Proto"))
	}))
	t.Cleanup(app.Close)
	backend := router.BackendFunc(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", app.Listener.Addr().String())
	})
	var table router.Table
	table.Set(customDomain, router.Route{Deployment: "d0123456789a", Backend: backend})
	table.Set(baseHost, router.Route{Deployment: "d0123456789a", Backend: backend})
	rt := &router.Router{Table: &table}
	t.Cleanup(rt.CloseIdleConnections)

	e := &acmeEnv{rt: rt}
	var err error
	if e.tlsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if e.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		e.tlsLn.Close()
		t.Fatal(err)
	}
	e.tlsAddr, e.httpAddr = e.tlsLn.Addr().String(), e.httpLn.Addr().String()
	t.Cleanup(func() { e.tlsLn.Close(); e.httpLn.Close() })
	return e
}

func (e *acmeEnv) tlsPort() int  { return e.tlsLn.Addr().(*net.TCPAddr).Port }
func (e *acmeEnv) httpPort() int { return e.httpLn.Addr().(*net.TCPAddr).Port }

// serve starts both servers as a server wires them: the Router over TLS
// with a's certificates, and a.HTTPHandler(Router) on plain HTTP. Both
// count the challenges they answer.
func (e *acmeEnv) serve(t *testing.T, a *certs.ACME) {
	t.Helper()
	challenge := a.HTTPHandler(e.rt)
	plain := &http.Server{ErrorLog: testLogger(t), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			challenge.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		challenge.ServeHTTP(rec, r)
		if rec.status == http.StatusOK {
			e.challenges.Add(1)
		}
	})}
	plainDone := make(chan error, 1)
	go func() { plainDone <- plain.Serve(e.httpLn) }()
	t.Cleanup(func() { plain.Close(); <-plainDone })

	tlsCfg := a.TLSConfig()
	getCert := tlsCfg.GetCertificate
	tlsCfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == "acme-tls/1" {
			e.alpnChallenges.Add(1)
		}
		return getCert(hello)
	}
	e.tlsSrv = &http.Server{Handler: e.rt, ErrorLog: testLogger(t), TLSConfig: tlsCfg}
	e.tlsDone = make(chan error, 1)
	go func() { e.tlsDone <- a.ServeTLS(e.tlsSrv, e.tlsLn) }()
	t.Cleanup(func() { e.stopTLS(t) })
}

func (e *acmeEnv) stopTLS(t *testing.T) {
	if e.tlsSrv == nil {
		return
	}
	e.tlsSrv.Close()
	if err := <-e.tlsDone; err != nil {
		t.Errorf("ServeTLS: %v", err)
	}
	e.tlsSrv = nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// httpsClient sends every request to addr (as if DNS resolved each custom
// domain to it), verifying the server against roots with SNI = the URL's
// host. protos, if given, limits ALPN (default: h2 and http/1.1).
func httpsClient(addr string, roots *x509.CertPool, protos ...string) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: roots, NextProtos: protos},
		ForceAttemptHTTP2: len(protos) == 0,
	}
	return &http.Client{Transport: tr, Timeout: acmeWait}
}

type tlsResponse struct {
	body, proto string
	serial      *big.Int
}

func mustGetTLS(t *testing.T, client *http.Client, host string) tlsResponse {
	t.Helper()
	res, err := client.Get("https://" + host + "/")
	if err != nil {
		t.Fatalf("GET https://%s/: %v", host, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET https://%s/: %s: %s", host, res.Status, body)
	}
	leaf := res.TLS.PeerCertificates[0]
	if err := leaf.VerifyHostname(host); err != nil {
		t.Fatalf("certificate: %v", err)
	}
	return tlsResponse{body: string(body), proto: res.Proto, serial: leaf.SerialNumber}
}

func getPlain(t *testing.T, addr, host string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = host
	res, err := (&http.Client{Timeout: acmeWait}).Do(req)
	if err != nil {
		t.Fatalf("GET http://%s/: %v", host, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return string(body)
}

// handshake performs a TLS handshake for host against addr, accepting any
// certificate: an error means the server refused.
func handshake(addr, host string) error {
	d := &net.Dialer{Timeout: acmeWait}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	return c.Close()
}

func testLogger(t *testing.T) *log.Logger {
	return log.New(testWriter{t}, "", 0)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// pebbleBinary finds Pebble ($PEBBLE, else on PATH). Missing, it fails the
// test under CI and skips it otherwise.
func pebbleBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PEBBLE"); p != "" {
		return p
	}
	p, err := exec.LookPath("pebble")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("pebble not found (CI is set): run scripts/install-pebble.sh")
		}
		t.Skip("pebble not found: run scripts/install-pebble.sh to test ACME")
	}
	return p
}

// pebble is a running Pebble ACME server.
type pebble struct {
	directory string // ACME directory URL
	certFile  string // Pebble's own HTTPS certificate (PEM)
	mgmt      string // management address (for the issuing root)
	cmd       *exec.Cmd
	exited    chan struct{}
	stopOnce  sync.Once
	out       *syncBuffer
	rootPool  *x509.CertPool
}

// startPebble runs Pebble on loopback with a generated config. Its VA
// resolves every name to 127.0.0.1 through a DNS server of the test and
// validates for real: http-01 on httpPort, tls-alpn-01 on tlsPort.
func startPebble(t *testing.T, bin string, httpPort, tlsPort int) *pebble {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := writeServerCert(t, dir)
	listen, mgmt := freeAddr(t), freeAddr(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           listen,
		"managementListenAddress": mgmt,
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                httpPort,
		"tlsPort":                 tlsPort,
		"ocspResponderURL":        "",
		"keyAlgorithm":            "ecdsa",
	}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}

	p := &pebble{
		directory: "https://" + listen + "/dir",
		certFile:  certFile,
		mgmt:      mgmt,
		exited:    make(chan struct{}),
		out:       &syncBuffer{},
	}
	p.cmd = exec.Command(bin, "-config", cfgFile, "-dnsserver", startDNS(t))
	p.cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // no random 0-5 s sleeps before validating
		"PEBBLE_WFE_NONCEREJECT=0", // no deliberately rejected nonces
	)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting pebble: %v", err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("pebble log:\n%s", p.log())
		}
	})

	// Wait for the directory to answer.
	client := trustingClient(t, certFile)
	deadline := time.Now().Add(acmeWait)
	for {
		res, err := client.Get(p.directory)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("pebble exited:\n%s", p.log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not answer within %v: %v\n%s", acmeWait, err, p.log())
		}
	}

	// The root that signs issued certificates.
	res, err := client.Get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("fetching pebble's root: %v", err)
	}
	defer res.Body.Close()
	rootPEM, _ := io.ReadAll(res.Body)
	p.rootPool = x509.NewCertPool()
	if !p.rootPool.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble's root is not PEM: %q", rootPEM)
	}
	return p
}

func (p *pebble) roots(*testing.T) *x509.CertPool { return p.rootPool }

func (p *pebble) stop() {
	p.stopOnce.Do(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
}

func (p *pebble) log() string { return p.out.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeServerCert writes a self-signed certificate for 127.0.0.1 (Pebble's
// HTTPS) and its key into dir.
func writeServerCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, certFile, keyFile, &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pebble test server"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	})
	return certFile, keyFile
}

// writeSelfSigned completes tmpl (a day's validity, a CA for server auth),
// signs it with a new key and writes both as PEM; it returns the
// certificate.
func writeSelfSigned(t *testing.T, certFile, keyFile string, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func trustingClient(t *testing.T, certFile string) *http.Client {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return &http.Client{
		Timeout:   acmeWait,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	n, _ := strconv.Atoi(port)
	return n
}

// startDNS runs a DNS server over TCP on loopback (Pebble's VA asks over
// TCP) that answers every A question with 127.0.0.1 and every other
// question with no records. It returns its address.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveDNS(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func serveDNS(c net.Conn) {
	for {
		var n uint16
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		resp, err := dnsAnswer(msg)
		if err != nil {
			return
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

func dnsAnswer(msg []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if q.Type == dnsmessage.TypeA {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
		if err := b.AResource(rh, dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

package certs_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/router"
	"github.com/slipwayhq/slipway/internal/router/certs"
)

// previewHost is the preview hostname of the deployment acmeEnv routes.
const previewHost = "d0123456789a." + testBase

// writeWildcard writes a self-signed certificate for *.<testBase> and
// <testBase> with the given serial, and a new key, to certFile and keyFile,
// and returns a pool that trusts it. The files' modification time is set to
// mod, so a reload is seen whatever the file system's time granularity.
func writeWildcard(t *testing.T, certFile, keyFile string, serial int64, mod time.Time) *x509.CertPool {
	t.Helper()
	leaf := writeSelfSigned(t, certFile, keyFile, &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "*." + testBase},
		DNSNames:     []string{"*." + testBase, testBase},
	})
	touch(t, mod, certFile, keyFile)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return pool
}

func touch(t *testing.T, mod time.Time, files ...string) {
	t.Helper()
	for _, f := range files {
		if err := os.Chtimes(f, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewCertFileErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeWildcard(t, certFile, keyFile, 1, time.Now())
	otherCert, otherKey := filepath.Join(dir, "other.pem"), filepath.Join(dir, "other-key.pem")
	writeWildcard(t, otherCert, otherKey, 2, time.Now())
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"no key", certFile, "", "key file"},
		{"missing certificate", missing, keyFile, missing},
		{"missing key", certFile, missing, missing},
		{"key of another certificate", certFile, otherKey, otherKey},
		{"key as certificate", keyFile, keyFile, keyFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := certs.NewCertFile(certs.CertFileConfig{CertFile: tc.cert, KeyFile: tc.key})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewCertFile: err = %v, want it to name %q", err, tc.want)
			}
		})
	}
	c, err := certs.NewCertFile(certs.CertFileConfig{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	for host, covered := range map[string]bool{
		"web." + testBase: true, "WEB." + testBase + ".:443": true, testBase: true,
		"deep.web." + testBase: false, customDomain: false, "": false, "[::1]": false,
	} {
		if got := c.Certificate(host) != nil; got != covered {
			t.Errorf("Certificate(%q) covers = %v, want %v", host, got, covered)
		}
	}
}

// TestCertFileServesWildcard serves base-domain names through the router's
// TLS path with an operator's wildcard certificate, and picks up a renewal
// by rewriting the files; a bad pair written later is logged and the
// previous one kept. The ACME directory is unreachable: nothing is ordered.
func TestCertFileServesWildcard(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	mod := time.Now().Add(-time.Hour).Truncate(time.Second)
	pool1 := writeWildcard(t, certFile, keyFile, 1, mod)
	logs := &syncBuffer{}
	cert, err := certs.NewCertFile(certs.CertFileConfig{
		CertFile: certFile, KeyFile: keyFile,
		CheckInterval: time.Nanosecond, // look at the files on every handshake
		Log:           slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := certs.NewACME(certs.ACMEConfig{
		DirectoryURL: "https://127.0.0.1:1/unreachable", // never contacted
		BaseDomain:   testBase,
		HostPolicy:   allowSet(otherDomain),
		Certificate:  cert,
	})
	if err != nil {
		t.Fatal(err)
	}
	env := newACMEEnv(t)
	env.serve(t, a)

	res := mustGetTLS(t, httpsClient(env.tlsAddr, pool1), baseHost)
	if res.body != "hello from "+baseHost+" via https" || res.serial.Int64() != 1 {
		t.Fatalf("got %q with serial %v, want the app with serial 1", res.body, res.serial)
	}
	// Names the certificate does not cover and ACME may not have fail.
	for _, host := range []string{"deep." + baseHost, customDomain} {
		if err := handshake(env.tlsAddr, host); err == nil {
			t.Errorf("handshake for %s succeeded", host)
		}
	}

	// Renewal: new files, new key. Each client makes a new connection.
	pool2 := writeWildcard(t, certFile, keyFile, 2, mod.Add(time.Minute))
	res = mustGetTLS(t, httpsClient(env.tlsAddr, pool2), baseHost)
	if res.serial.Int64() != 2 {
		t.Fatalf("after renewal: serial %v, want 2", res.serial)
	}
	if !strings.Contains(logs.String(), "reloaded the TLS certificate") {
		t.Errorf("no reload logged:\n%s", logs)
	}

	// A bad pair (a key that is not the certificate's) is refused, logged,
	// and the loaded one keeps being served.
	otherCert, otherKey := filepath.Join(dir, "other.pem"), filepath.Join(dir, "other-key.pem")
	writeWildcard(t, otherCert, otherKey, 3, mod)
	b, err := os.ReadFile(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	touch(t, mod.Add(2*time.Minute), keyFile)
	res = mustGetTLS(t, httpsClient(env.tlsAddr, pool2), baseHost)
	if res.serial.Int64() != 2 {
		t.Fatalf("after a bad pair: serial %v, want 2 (kept)", res.serial)
	}
	if !strings.Contains(logs.String(), "keeping the loaded one") {
		t.Errorf("bad pair not logged:\n%s", logs)
	}
}

// TestRoutedBaseHosts checks which base-domain names may order a
// certificate with BaseHostPolicy = RoutedBaseHosts, without a CA: the
// plain-HTTP handler sends only allowed hosts' challenges to autocert.
func TestRoutedBaseHosts(t *testing.T) {
	var table router.Table
	table.Set(baseHost, router.Route{Deployment: "d0123456789a"})
	table.Set("web-staging."+testBase, router.Route{Deployment: "d0123456789b"})
	table.Set(previewHost, router.Route{Deployment: "d0123456789a"})
	table.Set("deep."+baseHost, router.Route{Deployment: "d0123456789a"})
	table.Set(testBase, router.Route{Deployment: "d0123456789a"})
	a, err := certs.NewACME(certs.ACMEConfig{
		DirectoryURL:   "https://127.0.0.1:1/unreachable", // never contacted
		BaseDomain:     testBase,
		HostPolicy:     allowSet(customDomain),
		BaseHostPolicy: certs.RoutedBaseHosts(&table, testBase),
	})
	if err != nil {
		t.Fatal(err)
	}
	h := a.HTTPHandler(http.NotFoundHandler())
	for host, allowed := range map[string]bool{
		baseHost:                   true,
		"Web-Staging." + testBase:  true,
		customDomain:               true,
		previewHost:                false, // a preview hostname
		"gone." + testBase:         false, // not routed
		"deep." + baseHost:         false, // two labels below the base
		testBase:                   false, // the base itself
		"d0123456789b." + testBase: false, // not routed (only its env host is)
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/.well-known/acme-challenge/token", nil)
		req.Host = host
		h.ServeHTTP(rec, req)
		// autocert answers 404 page not found too, but with its own body.
		gotAllowed := !strings.HasPrefix(rec.Body.String(), "404 page not found")
		if gotAllowed != allowed {
			t.Errorf("%s: allowed = %v, want %v (body %q)", host, gotAllowed, allowed, rec.Body)
		}
		if !allowed {
			if err := a.Obtain(context.Background(), host); !errors.Is(err, certs.ErrHostNotAllowed) {
				t.Errorf("Obtain(%s): err = %v, want ErrHostNotAllowed", host, err)
			}
		}
	}
}

// TestACMEPebbleBaseHosts orders a certificate from Pebble for a project
// hostname under the base domain (routed, not a preview) on its first
// HTTPS request, and refuses its deployment's preview hostname.
func TestACMEPebbleBaseHosts(t *testing.T) {
	bin := pebbleBinary(t)
	env := newACMEEnv(t)
	env.rt.Table.Set(previewHost, router.Route{Deployment: "d0123456789a"})
	pb := startPebble(t, bin, env.httpPort(), env.tlsPort())
	a, err := certs.NewACME(certs.ACMEConfig{
		DirectoryURL:   pb.directory,
		CacheDir:       filepath.Join(t.TempDir(), "acme"),
		BaseDomain:     testBase,
		HostPolicy:     allowSet(customDomain),
		BaseHostPolicy: certs.RoutedBaseHosts(env.rt.Table, testBase),
		CACertFile:     pb.certFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	env.serve(t, a)

	began := time.Now()
	res := mustGetTLS(t, httpsClient(env.tlsAddr, pb.roots(t)), baseHost)
	t.Logf("first HTTPS request for %s, certificate issued by Pebble: %v", baseHost, time.Since(began).Round(time.Millisecond))
	if res.body != "hello from "+baseHost+" via https" {
		t.Errorf("body = %q", res.body)
	}
	for _, host := range []string{previewHost, "gone." + testBase, testBase} {
		if err := handshake(env.tlsAddr, host); err == nil {
			t.Errorf("handshake for %s succeeded", host)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), acmeWait)
	defer cancel()
	if err := a.Obtain(ctx, previewHost); !errors.Is(err, certs.ErrHostNotAllowed) {
		t.Errorf("Obtain(%s): err = %v, want ErrHostNotAllowed", previewHost, err)
	}
}

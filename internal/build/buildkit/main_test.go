package buildkit

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// The integration tests share one buildkitd and one registry, started on
// first use and stopped by TestMain.
var env struct {
	once   sync.Once
	err    error
	skip   string
	dir    string
	reg    *httptest.Server
	host   string // registry host:port
	daemon *Daemon
}

const testSecret = "secret"

func TestMain(m *testing.M) {
	code := m.Run()
	if env.daemon != nil {
		if err := env.daemon.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing buildkitd:", err)
			code = 1
		}
	}
	if env.reg != nil {
		env.reg.Close()
	}
	if env.dir != "" {
		UnmountUnder(env.dir)
		os.RemoveAll(env.dir)
	}
	os.Exit(code)
}

// requireBuildkit skips (or, when CI is set, fails) unless buildkitd can
// run here: root and the binary in PATH.
func requireBuildkit(t *testing.T) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "buildkitd needs root"
	} else if _, err := LookPath(""); err != nil {
		reason = err.Error()
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and %s", reason)
	}
	t.Skip(reason)
}

// authRegistry wraps a registry so that writes need the basic-auth
// password testSecret (any user), like the embedded registry.
func authRegistry(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if _, pw, ok := r.BasicAuth(); !ok || pw != testSecret {
				w.Header().Set("WWW-Authenticate", `Basic realm="slipway-test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`, http.StatusUnauthorized)
				return
			}
		}
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			if f := manifestHook.Load(); f != nil {
				(*f)()
			}
		}
		h.ServeHTTP(w, r)
	})
}

// manifestHook, when set, is called for every manifest push.
var manifestHook atomic.Pointer[func()]

// sharedEnv returns the shared daemon and registry host, starting them once.
func sharedEnv(t *testing.T) (*Daemon, string) {
	t.Helper()
	requireBuildkit(t)
	env.once.Do(func() {
		env.dir, env.err = os.MkdirTemp("", "bk")
		if env.err != nil {
			return
		}
		env.reg = httptest.NewServer(authRegistry(registry.New(registry.Logger(discardLogger()))))
		env.host = strings.TrimPrefix(env.reg.URL, "http://")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		env.daemon, env.err = StartDaemon(ctx, DaemonConfig{
			Root:                env.dir + "/root",
			PlainHTTPRegistries: []string{env.host},
			DockerHubMirrors:    []string{env.host},
		})
		if env.err == nil {
			fmt.Fprintf(os.Stderr, "buildkitd ready in %s\n", time.Since(start).Round(time.Millisecond))
		}
	})
	if env.err != nil {
		t.Fatalf("starting test environment: %v", env.err)
	}
	return env.daemon, env.host
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

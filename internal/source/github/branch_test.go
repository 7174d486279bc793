package github

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDefaultBranch asks a stand-in GitHub on loopback: the token goes as
// a bearer token, the answer's default_branch comes back, and failures
// (an unknown repository, a redirect to another host, no branch) are
// errors.
func TestDefaultBranch(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the token followed a redirect to another host: %q", r.Header.Get("Authorization"))
	}))
	defer other.Close()
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v3/repos/acme/web":
			if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Accept") != "application/vnd.github+json" {
				http.Error(w, `{"message": "Bad credentials"}`, http.StatusUnauthorized)
				return
			}
			w.Write([]byte(`{"full_name": "acme/web", "default_branch": "trunk", "private": true}`))
		case "/api/v3/repos/acme/moved":
			http.Redirect(w, r, other.URL+"/api/v3/repos/acme/web", http.StatusMovedPermanently)
		case "/api/v3/repos/acme/empty":
			w.Write([]byte(`{"full_name": "acme/empty"}`))
		default:
			http.Error(w, `{"message": "Not Found"}`, http.StatusNotFound)
		}
	}))
	defer gh.Close()
	ctx := context.Background()
	if b, err := DefaultBranch(ctx, gh.URL+"/acme/web.git", "tok"); err != nil || b != "trunk" {
		t.Errorf("DefaultBranch = %q, %v; want trunk", b, err)
	}
	for repo, want := range map[string]string{
		"acme/web":   "401", // no token
		"acme/nope":  "404",
		"acme/moved": "another host",
		"acme/empty": "no default branch",
	} {
		tok := ""
		if repo != "acme/web" {
			tok = "tok"
		}
		if b, err := DefaultBranch(ctx, gh.URL+"/"+repo, tok); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q, %v; want an error with %q", repo, b, err, want)
		}
	}
}

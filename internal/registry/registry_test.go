package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/slipwayhq/slipway/internal/registry"
)

const token = "s3cret-token"

// tokenAuth accepts the token as basic-auth password or bearer token, as
// the server does.
func tokenAuth(r *http.Request) bool {
	if _, pw, ok := r.BasicAuth(); ok {
		return pw == token
	}
	return r.Header.Get("Authorization") == "Bearer "+token
}

// start serves a Registry over dir on a fresh loopback server.
func start(t *testing.T, dir string, authorize func(*http.Request) bool) (*registry.Registry, string) {
	t.Helper()
	reg, err := registry.New(registry.Config{Dir: dir, Authorize: authorize})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", reg)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return reg, strings.TrimPrefix(srv.URL, "http://")
}

func ref(t *testing.T, host, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(1024, 3)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pullAll fetches the image at r and reads every layer, so that blobs are
// pulled too, returning the manifest digest.
func pullAll(t *testing.T, r name.Reference, opts ...remote.Option) (v1.Hash, error) {
	t.Helper()
	img, err := remote.Image(r, opts...)
	if err != nil {
		return v1.Hash{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return v1.Hash{}, err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return v1.Hash{}, err
		}
	}
	return img.Digest()
}

func TestManifestsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	_, host := start(t, dir, nil)

	img := randomImage(t)
	if err := remote.Write(ref(t, host, "team/app:v1"), img); err != nil {
		t.Fatalf("push: %v", err)
	}
	gone := randomImage(t)
	if err := remote.Write(ref(t, host, "team/app:gone"), gone); err != nil {
		t.Fatalf("push: %v", err)
	}
	if err := remote.Delete(ref(t, host, "team/app:gone")); err != nil {
		t.Fatalf("delete: %v", err)
	}
	idx, err := random.Index(512, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref(t, host, "team/multi:latest"), idx); err != nil {
		t.Fatalf("push index: %v", err)
	}

	// A second Registry over the same directory stands for a restarted server.
	_, host2 := start(t, dir, nil)
	got, err := pullAll(t, ref(t, host2, "team/app:v1"))
	if err != nil {
		t.Fatalf("pull after restart: %v", err)
	}
	if want := digest(t, img); got != want {
		t.Errorf("digest after restart = %s, want %s", got, want)
	}
	if _, err := pullAll(t, ref(t, host2, "team/app@"+digest(t, img).String())); err != nil {
		t.Errorf("pull by digest after restart: %v", err)
	}
	if _, err := remote.Image(ref(t, host2, "team/app:gone")); !isStatus(err, http.StatusNotFound) {
		t.Errorf("deleted tag after restart: err = %v, want 404", err)
	}
	gotIdx, err := remote.Index(ref(t, host2, "team/multi:latest"))
	if err != nil {
		t.Fatalf("pull index after restart: %v", err)
	}
	if digest(t, gotIdx) != digest(t, idx) {
		t.Errorf("index digest after restart = %s, want %s", digest(t, gotIdx), digest(t, idx))
	}
	tags, err := remote.List(ref(t, host2, "team/app:v1").Context())
	if err != nil {
		t.Fatalf("list tags: %v", err)
	}
	if strings.Join(tags, ",") != "v1" {
		t.Errorf("tags after restart = %v, want [v1]", tags)
	}
}

// Deleting a manifest by digest deletes the tags naming it (the spec: "Once
// deleted, a GET to /v2/<name>/manifests/<digest> and any tag pointing to
// that digest will return a 404"), and stays so after a restart.
func TestDeletedDigestStaysDeleted(t *testing.T) {
	dir := t.TempDir()
	_, host := start(t, dir, nil)
	img, other := randomImage(t), randomImage(t)
	if err := remote.Write(ref(t, host, "app:v1"), img); err != nil {
		t.Fatalf("push: %v", err)
	}
	if err := remote.Write(ref(t, host, "app:v2"), other); err != nil {
		t.Fatalf("push: %v", err)
	}
	byDigest := ref(t, host, "app@"+digest(t, img).String())
	if err := remote.Delete(byDigest); err != nil {
		t.Fatalf("delete digest: %v", err)
	}
	if _, err := remote.Image(ref(t, host, "app:v1")); !isStatus(err, http.StatusNotFound) {
		t.Errorf("tag of a deleted digest: err = %v, want 404", err)
	}
	_, host2 := start(t, dir, nil)
	for _, r := range []string{"app@" + digest(t, img).String(), "app:v1"} {
		if _, err := remote.Image(ref(t, host2, r)); !isStatus(err, http.StatusNotFound) {
			t.Errorf("%s after restart: err = %v, want 404", r, err)
		}
	}
	if _, err := pullAll(t, ref(t, host2, "app:v2")); err != nil {
		t.Errorf("another tag after restart: %v", err)
	}
}

func TestAuthMatrix(t *testing.T) {
	_, host := start(t, t.TempDir(), tokenAuth)
	creds := remote.WithAuth(&authn.Basic{Username: "slipway", Password: token})
	wrong := remote.WithAuth(&authn.Basic{Username: "slipway", Password: "nope"})
	anon := remote.WithAuth(authn.Anonymous)

	private, public := randomImage(t), randomImage(t)
	if err := remote.Write(ref(t, host, "team/app:v1"), private, anon); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("anonymous push: err = %v, want 401", err)
	}
	if err := remote.Write(ref(t, host, "team/app:v1"), private, wrong); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("push with a wrong token: err = %v, want 401", err)
	}
	if err := remote.Write(ref(t, host, "library/base:1"), public, anon); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("anonymous push to library/: err = %v, want 401", err)
	}
	if err := remote.Write(ref(t, host, "team/app:v1"), private, creds); err != nil {
		t.Fatalf("push with basic auth: %v", err)
	}
	if err := remote.Write(ref(t, host, "library/base:1"), public, creds); err != nil {
		t.Fatalf("push to library/ with basic auth: %v", err)
	}

	if _, err := pullAll(t, ref(t, host, "team/app:v1"), anon); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("anonymous pull of a private repository: err = %v, want 401", err)
	}
	if _, err := pullAll(t, ref(t, host, "team/app:v1"), creds); err != nil {
		t.Errorf("pull with basic auth: %v", err)
	}
	if got, err := pullAll(t, ref(t, host, "library/base:1"), anon); err != nil || got != digest(t, public) {
		t.Errorf("anonymous pull of library/base = %s, %v; want %s", got, err, digest(t, public))
	}

	// Raw requests: the challenge, bearer tokens, and blobs of private images
	// requested through a public repository's URL.
	privateLayers, _ := private.Layers()
	privateBlob := digest(t, privateLayers[0]).String()
	publicLayers, _ := public.Layers()
	publicBlob := digest(t, publicLayers[0]).String()
	for _, tc := range []struct {
		name, method, path, auth string
		want                     int
	}{
		{"ping without credentials", "GET", "/v2/", "", 401},
		{"ping with bearer token", "GET", "/v2/", "Bearer " + token, 200},
		{"catalog without credentials", "GET", "/v2/_catalog", "", 401},
		{"private manifest with bearer token", "GET", "/v2/team/app/manifests/v1", "Bearer " + token, 200},
		{"private manifest with wrong bearer", "HEAD", "/v2/team/app/manifests/v1", "Bearer nope", 401},
		{"public manifest anonymously", "HEAD", "/v2/library/base/manifests/1", "", 200},
		{"public tags anonymously", "GET", "/v2/library/base/tags/list", "", 200},
		{"public blob anonymously", "GET", "/v2/library/base/blobs/" + publicBlob, "", 200},
		{"private blob through a public name", "GET", "/v2/library/base/blobs/" + privateBlob, "", 404},
		{"anonymous delete in library/", "DELETE", "/v2/library/base/manifests/1", "", 401},
		{"anonymous upload to library/", "POST", "/v2/library/base/blobs/uploads/", "", 401},
		{"invalid repository name", "GET", "/v2/Team/App/manifests/v1", "Bearer " + token, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://"+host+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
			}
			if tc.want == 401 && resp.Header.Get("WWW-Authenticate") != `Basic realm="slipway"` {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestRejectsTraversal(t *testing.T) {
	reg, _ := start(t, t.TempDir(), nil)
	// Served directly: a ServeMux would clean the path first.
	for _, path := range []string{"/v2/a/../../../x/manifests/v1", "/v2/a/manifests/..", "/v2/../blobs/uploads/1"} {
		req := httptest.NewRequest("PUT", "http://registry", strings.NewReader("{}"))
		req.URL.Path = path
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("PUT %s = %d, want 400", path, rec.Code)
		}
	}
}

func TestImport(t *testing.T) {
	dir := t.TempDir()
	reg, _ := start(t, dir, tokenAuth)
	img := randomImage(t)
	ctx := context.Background()
	for _, tag := range []string{"1.23", "1.23-bookworm"} {
		if err := reg.Import(ctx, "library/golang:"+tag, img); err != nil {
			t.Fatalf("Import: %v", err)
		}
	}
	if err := reg.Import(ctx, "../etc:passwd", img); err == nil {
		t.Error("Import of an invalid name succeeded")
	}
	// Imported images survive a restart and are public.
	_, host := start(t, dir, tokenAuth)
	for _, tag := range []string{"1.23", "1.23-bookworm"} {
		got, err := pullAll(t, ref(t, host, "library/golang:"+tag), remote.WithAuth(authn.Anonymous))
		if err != nil {
			t.Fatalf("pull %s: %v", tag, err)
		}
		if got != digest(t, img) {
			t.Errorf("pulled %s = %s, want %s", tag, got, digest(t, img))
		}
	}
}

func TestNewRequiresDir(t *testing.T) {
	if _, err := registry.New(registry.Config{}); err == nil {
		t.Fatal("New with an empty Dir succeeded")
	}
}

func isStatus(err error, code int) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == code
}

// A data directory written by the previous registry (go-containerregistry's
// handler with manifests persisted beside it) has no _blobs directories,
// and may hold a tag whose digest file was deleted: both are carried over.
func TestRestoresEarlierLayout(t *testing.T) {
	dir := t.TempDir()
	write := func(path string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, layer := []byte(`{"os":"linux"}`), []byte("old layer")
	for _, b := range [][]byte{cfg, layer} {
		write(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(sha256Of(b), "sha256:")), b)
	}
	m := imageManifest(sha256Of(cfg), len(cfg), []string{sha256Of(layer)}, nil)
	stored, _ := json.Marshal(map[string]any{"contentType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256Of(m), "manifest": m})
	refs := filepath.Join(dir, "manifests", "team", "app", "_manifests")
	write(filepath.Join(refs, "v1.json"), stored)
	write(filepath.Join(refs, sha256Of(m)+".json"), stored)
	write(filepath.Join(dir, "manifests", "team", "old", "_manifests", "kept.json"), stored) // its digest file was deleted

	_, c := newRegistry(t, registry.Config{Dir: dir})
	for _, path := range []string{
		"/v2/team/app/manifests/v1", "/v2/team/app/manifests/" + sha256Of(m), "/v2/team/app/blobs/" + sha256Of(layer),
		"/v2/team/old/manifests/kept", "/v2/team/old/manifests/" + sha256Of(m), "/v2/team/old/blobs/" + sha256Of(cfg),
	} {
		want{code: 200}.check(t, path, c.do("GET", path, nil))
	}
	if _, err := os.Stat(filepath.Join(dir, "manifests", "team", "app", "_blobs", "sha256", strings.TrimPrefix(sha256Of(layer), "sha256:"))); err != nil {
		t.Errorf("the blobs of an earlier repository were not recorded: %v", err)
	}
}

// TestAPIDocCoversErrorCodes keeps docs/API.md's registry section true to
// the error codes the spec defines and the registry answers.
func TestAPIDocCoversErrorCodes(t *testing.T) {
	doc, err := os.ReadFile("../../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
		"MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID", "NAME_UNKNOWN",
		"SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS"} {
		if !strings.Contains(string(doc), "`"+code+"`") {
			t.Errorf("docs/API.md does not list the registry error code %s", code)
		}
	}
	for _, endpoint := range []string{"/v2/<name>/referrers/<digest>", "/v2/<name>/tags/list", "/v2/<name>/blobs/uploads/", "PATCH <location>"} {
		if !strings.Contains(string(doc), endpoint) {
			t.Errorf("docs/API.md does not document %s", endpoint)
		}
	}
}

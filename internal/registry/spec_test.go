package registry_test

// Tests per endpoint and error case of the OCI distribution spec 1.1,
// over HTTP against a registry on loopback. Quoted requirements are the
// spec's.

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/registry"
)

// client sends raw requests to a registry.
type client struct {
	t    *testing.T
	base string // http://host
	user string // basic-auth password, if any
}

type resp struct {
	code int
	h    http.Header
	body []byte
}

// errCode returns the code of the first error in the body.
func (r resp) errCode() string {
	var env struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(r.body, &env) != nil || len(env.Errors) == 0 {
		return ""
	}
	return env.Errors[0].Code
}

// do sends a request; path may be a Location header's value, relative or
// absolute. Headers come in pairs.
func (c client) do(method, path string, body []byte, headers ...string) resp {
	c.t.Helper()
	u, err := url.Parse(c.base)
	if err != nil {
		c.t.Fatal(err)
	}
	target, err := u.Parse(path)
	if err != nil {
		c.t.Fatal(err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, target.String(), rd)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if c.user != "" {
		req.SetBasicAuth("slipway", c.user)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp{code: res.StatusCode, h: res.Header, body: b}
}

// with returns a query string appended to a Location.
func with(loc string, kv ...string) string {
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return loc + sep + q.Encode()
}

func sha256Of(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func sha512Of(b []byte) string {
	s := sha512.Sum512(b)
	return "sha512:" + hex.EncodeToString(s[:])
}

// newRegistry serves a registry with cfg (Dir filled in) on loopback.
func newRegistry(t *testing.T, cfg registry.Config) (*registry.Registry, client) {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	reg, err := registry.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", reg)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return reg, client{t: t, base: srv.URL}
}

// pushBlob stores b in repo with a single POST and returns its digest.
func (c client) pushBlob(repo string, b []byte) string {
	c.t.Helper()
	d := sha256Of(b)
	if r := c.do("POST", with("/v2/"+repo+"/blobs/uploads/", "digest", d), b); r.code != 201 {
		c.t.Fatalf("pushing blob: %d %s", r.code, r.body)
	}
	return d
}

// imageManifest returns an OCI image manifest over a config and layers
// (digest, size pairs), with extra top-level fields.
func imageManifest(config string, configSize int, layers []string, extra map[string]any) []byte {
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": configSize},
		"layers":        []any{},
	}
	var ls []any
	for _, l := range layers {
		ls = append(ls, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": 1})
	}
	if ls != nil {
		m["layers"] = ls
	}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

// pushImage pushes a small image to repo:tag and returns the manifest and
// its digest.
func (c client) pushImage(repo, tag string, extra map[string]any) ([]byte, string) {
	c.t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cd := c.pushBlob(repo, cfg)
	ld := c.pushBlob(repo, []byte("layer of "+repo+tag+fmt.Sprint(extra)))
	m := imageManifest(cd, len(cfg), []string{ld}, extra)
	ref := tag
	if ref == "" {
		ref = sha256Of(m)
	}
	r := c.do("PUT", "/v2/"+repo+"/manifests/"+ref, m, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if r.code != 201 {
		c.t.Fatalf("pushing manifest: %d %s", r.code, r.body)
	}
	return m, sha256Of(m)
}

type want struct {
	code    int
	errCode string            // the first error's code, if an error
	headers map[string]string // headers that must have these values ("*": present)
	body    []byte            // the exact body, if set
}

func (w want) check(t *testing.T, what string, r resp) {
	t.Helper()
	if r.code != w.code {
		t.Fatalf("%s: status %d, want %d (%s)", what, r.code, w.code, r.body)
	}
	if w.errCode != "" && r.errCode() != w.errCode {
		t.Errorf("%s: error code %q, want %q (%s)", what, r.errCode(), w.errCode, r.body)
	}
	for k, v := range w.headers {
		got := r.h.Get(k)
		if (v == "*" && got == "") || (v != "*" && got != v) {
			t.Errorf("%s: header %s = %q, want %q", what, k, got, v)
		}
	}
	if w.body != nil && !bytes.Equal(r.body, w.body) {
		t.Errorf("%s: body %q, want %q", what, r.body, w.body)
	}
}

func TestAPIVersionCheck(t *testing.T) {
	_, c := newRegistry(t, registry.Config{})
	// "If the response is 200 OK, then the registry implements this specification."
	want{code: 200, headers: map[string]string{"Docker-Distribution-API-Version": "registry/2.0"}}.check(t, "GET /v2/", c.do("GET", "/v2/", nil))
	want{code: 404, errCode: "UNSUPPORTED"}.check(t, "unknown endpoint", c.do("GET", "/v2/app/nothing/here", nil))
}

// Pushing blobs: every way the spec allows, each read back.
func TestPushBlob(t *testing.T) {
	blob := []byte("Hello, how are you today?")
	d256, d512 := sha256Of(blob), sha512Of(blob)
	created := func(d string) want {
		return want{code: 201, headers: map[string]string{"Location": "/v2/app/blobs/" + d, "Docker-Content-Digest": d}}
	}
	for _, tc := range []struct {
		name string
		push func(c client) (resp, string) // the final response and the digest pushed
		want want
	}{
		{"single POST", func(c client) (resp, string) {
			// "Successful completion of the request MUST return a 201 Created and MUST include ... Location"
			return c.do("POST", with("/v2/app/blobs/uploads/", "digest", d256), blob, "Content-Type", "application/octet-stream"), d256
		}, created(d256)},
		{"single POST, sha512", func(c client) (resp, string) {
			return c.do("POST", with("/v2/app/blobs/uploads/", "digest", d512), blob), d512
		}, created(d512)},
		{"POST then PUT", func(c client) (resp, string) {
			r := c.do("POST", "/v2/app/blobs/uploads/", nil)
			// "the response MUST have a code of 202 Accepted, and MUST include ... Location"
			want{code: 202, headers: map[string]string{"Location": "*", "Range": "0-0"}}.check(t, "POST", r)
			return c.do("PUT", with(r.h.Get("Location"), "digest", d256), blob, "Content-Type", "application/octet-stream"), d256
		}, created(d256)},
		{"POST then PUT, sha512", func(c client) (resp, string) {
			r := c.do("POST", "/v2/app/blobs/uploads/", nil)
			return c.do("PUT", with(r.h.Get("Location"), "digest", d512), blob), d512
		}, created(d512)},
		{"chunked, last chunk in the PUT", func(c client) (resp, string) {
			r := c.do("POST", "/v2/app/blobs/uploads/", nil, "Content-Length", "0")
			loc := r.h.Get("Location")
			r = c.do("PATCH", loc, blob[:3], "Content-Type", "application/octet-stream", "Content-Range", "0-2")
			// "Each successful chunk upload MUST have a 202 Accepted response code, and MUST have ... Location, Range: 0-<end-of-range>"
			want{code: 202, headers: map[string]string{"Location": loc, "Range": "0-2"}}.check(t, "PATCH 0-2", r)
			return c.do("PUT", with(r.h.Get("Location"), "digest", d256), blob[3:], "Content-Range", fmt.Sprintf("3-%d", len(blob)-1)), d256
		}, created(d256)},
		{"chunked, all chunks in PATCHes, out of order retried", func(c client) (resp, string) {
			loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
			for i := 0; i < len(blob); i += 5 {
				end := min(i+5, len(blob))
				if i == 10 {
					// "If a chunk is uploaded out of order, the registry MUST respond with a 416"
					r := c.do("PATCH", loc, blob[end:], "Content-Range", fmt.Sprintf("%d-%d", end, len(blob)-1))
					want{code: 416, errCode: "BLOB_UPLOAD_INVALID", headers: map[string]string{"Range": "0-9", "Location": loc}}.check(t, "out of order", r)
					// "A GET request may be used to retrieve the current valid offset and upload location."
					r = c.do("GET", loc, nil)
					want{code: 204, headers: map[string]string{"Range": "0-9", "Location": loc}}.check(t, "status", r)
				}
				r := c.do("PATCH", loc, blob[i:end], "Content-Range", fmt.Sprintf("%d-%d", i, end-1), "Content-Length", fmt.Sprint(end-i))
				want{code: 202, headers: map[string]string{"Range": fmt.Sprintf("0-%d", end-1)}}.check(t, "PATCH", r)
				loc = r.h.Get("Location")
			}
			return c.do("PUT", with(loc, "digest", d256), nil), d256
		}, created(d256)},
		{"streamed PATCH without Content-Range", func(c client) (resp, string) {
			loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
			r := c.do("PATCH", loc, blob[:7], "Content-Type", "application/octet-stream")
			want{code: 202, headers: map[string]string{"Range": "0-6"}}.check(t, "PATCH", r)
			r = c.do("PATCH", r.h.Get("Location"), blob[7:])
			want{code: 202, headers: map[string]string{"Range": fmt.Sprintf("0-%d", len(blob)-1)}}.check(t, "PATCH", r)
			return c.do("PUT", with(r.h.Get("Location"), "digest", d512), nil), d512
		}, created(d512)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newRegistry(t, registry.Config{})
			r, d := tc.push(c)
			tc.want.check(t, "closing request", r)
			// "<blob-location> is a pullable blob URL"
			want{code: 200, body: blob, headers: map[string]string{"Docker-Content-Digest": d}}.check(t, "GET Location", c.do("GET", r.h.Get("Location"), nil))
			want{code: 404, errCode: "BLOB_UNKNOWN"}.check(t, "another repository", c.do("GET", "/v2/other/blobs/"+d, nil))
		})
	}
}

// The push error cases, each on a fresh registry with small limits.
func TestPushBlobErrors(t *testing.T) {
	blob := []byte("NBA Jam on my NBA toast")
	d := sha256Of(blob)
	wrong := sha256Of([]byte("something else"))
	for _, tc := range []struct {
		name string
		run  func(c client) resp
		want want
	}{
		{"single POST, wrong digest", func(c client) resp {
			return c.do("POST", with("/v2/app/blobs/uploads/", "digest", wrong), blob)
		}, want{code: 400, errCode: "DIGEST_INVALID"}},
		{"single POST, malformed digest", func(c client) resp {
			return c.do("POST", with("/v2/app/blobs/uploads/", "digest", "sha256:xyz"), blob)
		}, want{code: 400, errCode: "DIGEST_INVALID"}},
		{"single POST, unsupported algorithm", func(c client) resp {
			return c.do("POST", with("/v2/app/blobs/uploads/", "digest", "md5:0123456789abcdef0123456789abcdef"), blob)
		}, want{code: 400, errCode: "UNSUPPORTED"}},
		{"single POST, too large", func(c client) resp {
			return c.do("POST", with("/v2/app/blobs/uploads/", "digest", sha256Of(make([]byte, 100))), make([]byte, 100))
		}, want{code: 413, errCode: "SIZE_INVALID"}},
		{"PUT without digest", func(c client) resp {
			loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
			return c.do("PUT", loc, blob)
		}, want{code: 400, errCode: "DIGEST_INVALID"}},
		{"PUT with the wrong digest ends the session", func(c client) resp {
			loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
			want{code: 400, errCode: "DIGEST_INVALID"}.check(t, "PUT", c.do("PUT", with(loc, "digest", wrong), blob))
			return c.do("GET", loc, nil)
		}, want{code: 404, errCode: "BLOB_UPLOAD_UNKNOWN"}},
		{"PATCH past the size limit", func(c client) resp {
			loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
			want{code: 202}.check(t, "first chunk", c.do("PATCH", loc, make([]byte, 60)))
			r := c.do("PATCH", loc, make([]byte, 60))
			want{code: 413, errCode: "SIZE_INVALID"}.check(t, "second chunk", r)
			return c.do("GET", loc, nil) // the first chunk is kept
		}, want{code: 204, headers: map[string]string{"Range": "0-59"}}},
		{"Content-Range and Content-Length disagree", func(c client) resp {
			loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
			return c.do("PATCH", loc, blob[:4], "Content-Range", "0-9")
		}, want{code: 400, errCode: "SIZE_INVALID"}},
		{"malformed Content-Range", func(c client) resp {
			loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
			return c.do("PATCH", loc, blob, "Content-Range", "zero-ten")
		}, want{code: 400, errCode: "BLOB_UPLOAD_INVALID"}},
		{"first chunk not at 0", func(c client) resp {
			loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
			return c.do("PATCH", loc, blob[3:], "Content-Range", fmt.Sprintf("3-%d", len(blob)-1))
		}, want{code: 416, errCode: "BLOB_UPLOAD_INVALID", headers: map[string]string{"Range": "0-0"}}},
		{"unknown session", func(c client) resp {
			return c.do("PATCH", "/v2/app/blobs/uploads/0b6c6a2e-2d6e-4e0c-9d51-6e4c1c1f0a00", blob)
		}, want{code: 404, errCode: "BLOB_UPLOAD_UNKNOWN"}},
		{"another repository's session", func(c client) resp {
			loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
			return c.do("PATCH", strings.Replace(loc, "/v2/app/", "/v2/other/", 1), blob)
		}, want{code: 404, errCode: "BLOB_UPLOAD_UNKNOWN"}},
		{"cancelled session", func(c client) resp {
			loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
			want{code: 204}.check(t, "DELETE", c.do("DELETE", loc, nil))
			return c.do("PUT", with(loc, "digest", d), blob)
		}, want{code: 404, errCode: "BLOB_UPLOAD_UNKNOWN"}},
		{"too many sessions", func(c client) resp {
			for range 3 {
				want{code: 202}.check(t, "POST", c.do("POST", "/v2/app/blobs/uploads/", nil))
			}
			return c.do("POST", "/v2/app/blobs/uploads/", nil)
		}, want{code: 429, errCode: "TOOMANYREQUESTS", headers: map[string]string{"Retry-After": "*"}}},
		{"invalid repository name", func(c client) resp {
			return c.do("POST", "/v2/App/blobs/uploads/", nil)
		}, want{code: 400, errCode: "NAME_INVALID"}},
		{"method not allowed", func(c client) resp {
			return c.do("PUT", "/v2/app/blobs/"+d, blob)
		}, want{code: 405, errCode: "UNSUPPORTED", headers: map[string]string{"Allow": "GET, HEAD, DELETE"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newRegistry(t, registry.Config{MaxBlobSize: 64, MaxUploads: 3})
			tc.want.check(t, tc.name, tc.run(c))
		})
	}
}

// "If this request fails or is not called, the server SHOULD eventually
// timeout unfinished uploads."
func TestAbandonedUploadExpires(t *testing.T) {
	dir := t.TempDir()
	_, c := newRegistry(t, registry.Config{Dir: dir, UploadTimeout: 50 * time.Millisecond, MaxUploads: 1})
	loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
	c.do("PATCH", loc, []byte("partial"))
	staged := filepath.Join(dir, "uploads", path.Base(loc))
	if _, err := os.Stat(staged); err != nil {
		t.Fatalf("the upload is not staged on disk: %v", err)
	}
	// Polled without touching the session (any request on it counts as
	// activity): its slot frees when it expires.
	deadline := time.Now().Add(20 * time.Second)
	for c.do("POST", "/v2/app/blobs/uploads/", nil).code != 202 {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned upload never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	want{code: 404, errCode: "BLOB_UPLOAD_UNKNOWN"}.check(t, "the expired session", c.do("GET", loc, nil))
	if _, err := os.Stat(staged); !os.IsNotExist(err) {
		t.Errorf("the expired upload's file is still there: %v", err)
	}
}

func TestPullBlob(t *testing.T) {
	_, c := newRegistry(t, registry.Config{})
	blob := []byte("0123456789abcdef")
	d := c.pushBlob("app", blob)
	for _, tc := range []struct {
		name, method, path string
		headers            []string
		want               want
	}{
		{"HEAD", "HEAD", "/v2/app/blobs/" + d, nil, want{code: 200, headers: map[string]string{"Content-Length": "16", "Docker-Content-Digest": d}}},
		{"GET", "GET", "/v2/app/blobs/" + d, nil, want{code: 200, body: blob}},
		// "A registry SHOULD support the Range request header in accordance with RFC 9110."
		{"range", "GET", "/v2/app/blobs/" + d, []string{"Range", "bytes=2-5"}, want{code: 206, body: blob[2:6], headers: map[string]string{"Content-Range": "bytes 2-5/16"}}},
		{"open range", "GET", "/v2/app/blobs/" + d, []string{"Range", "bytes=10-"}, want{code: 206, body: blob[10:]}},
		{"unsatisfiable range", "GET", "/v2/app/blobs/" + d, []string{"Range", "bytes=20-30"}, want{code: 416}},
		{"unknown blob", "GET", "/v2/app/blobs/" + sha256Of([]byte("hello world")), nil, want{code: 404, errCode: "BLOB_UNKNOWN"}},
		{"unknown blob, HEAD", "HEAD", "/v2/app/blobs/" + sha256Of([]byte("hello world")), nil, want{code: 404}},
		{"blob of another repository", "GET", "/v2/other/blobs/" + d, nil, want{code: 404, errCode: "BLOB_UNKNOWN"}},
		{"malformed digest", "GET", "/v2/app/blobs/sha256:abc", nil, want{code: 400, errCode: "DIGEST_INVALID"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.check(t, tc.name, c.do(tc.method, tc.path, nil, tc.headers...))
		})
	}
}

func TestMountBlob(t *testing.T) {
	_, c := newRegistry(t, registry.Config{})
	blob := []byte("shared layer")
	d := c.pushBlob("base", blob)
	// "The response to a successful mount MUST be 201 Created, and MUST contain ... Location"
	r := c.do("POST", with("/v2/app/blobs/uploads/", "mount", d, "from", "base"), nil)
	want{code: 201, headers: map[string]string{"Location": "/v2/app/blobs/" + d, "Docker-Content-Digest": d}}.check(t, "mount", r)
	want{code: 200, body: blob}.check(t, "mounted blob", c.do("GET", "/v2/app/blobs/"+d, nil))

	// "if a registry ... is unable to mount the requested blob, it SHOULD return a 202"
	unknown := sha256Of([]byte("not stored"))
	for _, q := range [][]string{
		{"mount", unknown, "from", "base"},
		{"mount", d, "from", "nothing"},
		{"mount", "sha256:bad", "from", "base"},
	} {
		r := c.do("POST", with("/v2/other/blobs/uploads/", q...), nil)
		want{code: 202, headers: map[string]string{"Location": "*"}}.check(t, fmt.Sprint("mount ", q), r)
		want{code: 204}.check(t, "the session it opened", c.do("GET", r.h.Get("Location"), nil))
	}
	want{code: 404}.check(t, "not mounted", c.do("GET", "/v2/other/blobs/"+d, nil))

	// "The registry MAY treat the from parameter as optional, and it MAY
	// cross-mount the blob if it can be found."
	r = c.do("POST", with("/v2/third/blobs/uploads/", "mount", d), nil)
	want{code: 201, headers: map[string]string{"Location": "/v2/third/blobs/" + d}}.check(t, "mount without from", r)
}

func TestManifests(t *testing.T) {
	_, c := newRegistry(t, registry.Config{})
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	cd := c.pushBlob("app", cfg)
	ld := c.pushBlob("app", []byte("layer"))
	m := imageManifest(cd, len(cfg), []string{ld}, nil)
	md := sha256Of(m)
	const mt = "application/vnd.oci.image.manifest.v1+json"

	// "Upon a successful upload, the registry MUST return response code 201 Created, and MUST have ... Location"
	r := c.do("PUT", "/v2/app/manifests/v1", m, "Content-Type", mt)
	want{code: 201, headers: map[string]string{"Location": "/v2/app/manifests/" + md, "Docker-Content-Digest": md}}.check(t, "PUT by tag", r)
	r = c.do("PUT", "/v2/app/manifests/"+sha512Of(m), m, "Content-Type", mt)
	want{code: 201, headers: map[string]string{"Docker-Content-Digest": sha512Of(m)}}.check(t, "PUT by sha512 digest", r)

	foreign := imageManifest(cd, len(cfg), nil, map[string]any{"layers": []any{map[string]any{
		"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": sha256Of([]byte("elsewhere")), "size": 9,
		"urls": []string{"https://example.com/layer"}}}})
	otherCfg := imageManifest(cd, len(cfg), []string{sha256Of([]byte("never pushed"))}, nil)
	index := func(children ...string) []byte {
		var ms []any
		for _, d := range children {
			ms = append(ms, map[string]any{"mediaType": mt, "digest": d, "size": 1})
		}
		b, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": ms})
		return b
	}
	big := imageManifest(cd, len(cfg), nil, map[string]any{"annotations": map[string]string{"pad": strings.Repeat("x", 9<<20)}})

	for _, tc := range []struct {
		name, method, path string
		body               []byte
		headers            []string
		want               want
	}{
		{"GET by tag", "GET", "/v2/app/manifests/v1", nil, []string{"Accept", mt}, want{code: 200, body: m, headers: map[string]string{"Content-Type": mt, "Docker-Content-Digest": md}}},
		{"GET by digest", "GET", "/v2/app/manifests/" + md, nil, nil, want{code: 200, body: m}},
		{"GET by sha512 digest", "GET", "/v2/app/manifests/" + sha512Of(m), nil, nil, want{code: 200, body: m}},
		{"HEAD", "HEAD", "/v2/app/manifests/v1", nil, nil, want{code: 200, headers: map[string]string{"Content-Length": fmt.Sprint(len(m)), "Docker-Content-Digest": md}}},
		{"GET unknown tag", "GET", "/v2/app/manifests/v9", nil, nil, want{code: 404, errCode: "MANIFEST_UNKNOWN"}},
		{"GET invalid reference", "GET", "/v2/app/manifests/.INVALID_MANIFEST_NAME", nil, nil, want{code: 404, errCode: "MANIFEST_UNKNOWN"}},
		{"GET in another repository", "GET", "/v2/other/manifests/" + md, nil, nil, want{code: 404}},
		{"PUT a foreign layer", "PUT", "/v2/app/manifests/foreign", foreign, []string{"Content-Type", mt}, want{code: 201}},
		{"PUT an index of known manifests", "PUT", "/v2/app/manifests/multi", index(md), []string{"Content-Type", "application/vnd.oci.image.index.v1+json"}, want{code: 201}},
		{"PUT not JSON", "PUT", "/v2/app/manifests/bad", []byte("blablabla"), []string{"Content-Type", mt}, want{code: 400, errCode: "MANIFEST_INVALID"}},
		{"PUT a mediaType unlike Content-Type", "PUT", "/v2/app/manifests/bad", m, []string{"Content-Type", "application/vnd.oci.image.index.v1+json"}, want{code: 400, errCode: "MANIFEST_INVALID"}},
		{"PUT an unsupported media type", "PUT", "/v2/app/manifests/bad", []byte(`{"schemaVersion":2}`), []string{"Content-Type", "text/plain"}, want{code: 400, errCode: "MANIFEST_INVALID"}},
		{"PUT an invalid tag", "PUT", "/v2/app/manifests/.bad", m, []string{"Content-Type", mt}, want{code: 400, errCode: "MANIFEST_INVALID"}},
		{"PUT by a digest the content does not have", "PUT", "/v2/app/manifests/" + sha256Of([]byte("x")), m, []string{"Content-Type", mt}, want{code: 400, errCode: "DIGEST_INVALID"}},
		{"PUT by a malformed digest", "PUT", "/v2/app/manifests/sha256:totallywrong", []byte("blablabla"), []string{"Content-Type", mt}, want{code: 400, errCode: "MANIFEST_INVALID"}},
		{"PUT with an unknown layer", "PUT", "/v2/app/manifests/missing", otherCfg, []string{"Content-Type", mt}, want{code: 400, errCode: "MANIFEST_BLOB_UNKNOWN"}},
		{"PUT with another repository's blobs", "PUT", "/v2/other/manifests/v1", m, []string{"Content-Type", mt}, want{code: 400, errCode: "MANIFEST_BLOB_UNKNOWN"}},
		{"PUT an index of unknown manifests", "PUT", "/v2/app/manifests/multi2", index(sha256Of([]byte("y"))), []string{"Content-Type", "application/vnd.oci.image.index.v1+json"}, want{code: 400, errCode: "MANIFEST_BLOB_UNKNOWN"}},
		{"PUT too large", "PUT", "/v2/app/manifests/big", big, []string{"Content-Type", mt}, want{code: 413, errCode: "SIZE_INVALID"}},
		{"POST", "POST", "/v2/app/manifests/v1", m, nil, want{code: 405, errCode: "UNSUPPORTED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.check(t, tc.name, c.do(tc.method, tc.path, tc.body, tc.headers...))
		})
	}
}

func TestTagList(t *testing.T) {
	_, c := newRegistry(t, registry.Config{})
	for _, tag := range []string{"b", "A", "c", "a", "d1"} {
		c.pushImage("app", tag, nil)
	}
	tags := func(r resp) string {
		var l struct {
			Name string
			Tags []string
		}
		if err := json.Unmarshal(r.body, &l); err != nil {
			t.Fatalf("tag list %s: %v", r.body, err)
		}
		if l.Name != "app" {
			t.Errorf("name = %q", l.Name)
		}
		return strings.Join(l.Tags, ",")
	}
	for _, tc := range []struct {
		name, query, tags, link string
	}{
		// "the tags MUST be in lexical order (i.e. case-insensitive alphanumeric order)"
		{"all", "", "A,a,b,c,d1", ""},
		{"n", "?n=2", "A,a", `</v2/app/tags/list?last=a&n=2>; rel="next"`},
		{"n and last", "?n=2&last=a", "b,c", `</v2/app/tags/list?last=c&n=2>; rel="next"`},
		{"last page", "?n=2&last=c", "d1", ""},
		{"n larger than the list", "?n=10", "A,a,b,c,d1", ""},
		// "When n is zero, this endpoint MUST return an empty list, and MUST NOT include a Link header."
		{"n zero", "?n=0", "", ""},
		// "When using the last query parameter, the n parameter is OPTIONAL."
		{"last alone", "?last=b", "c,d1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do("GET", "/v2/app/tags/list"+tc.query, nil)
			want{code: 200}.check(t, tc.name, r)
			if got := tags(r); got != tc.tags {
				t.Errorf("tags = %q, want %q", got, tc.tags)
			}
			if got := r.h.Get("Link"); got != tc.link {
				t.Errorf("Link = %q, want %q", got, tc.link)
			}
		})
	}
	want{code: 404, errCode: "NAME_UNKNOWN"}.check(t, "unknown repository", c.do("GET", "/v2/nothing/tags/list", nil))
	want{code: 400, errCode: "UNSUPPORTED"}.check(t, "negative n", c.do("GET", "/v2/app/tags/list?n=-1", nil))
}

func TestReferrers(t *testing.T) {
	_, c := newRegistry(t, registry.Config{})
	_, subject := c.pushImage("app", "v1", nil)
	empty := c.pushBlob("app", []byte("{}"))
	ref := func(extra map[string]any) ([]byte, string) {
		extra["subject"] = map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1}
		m := imageManifest(empty, 2, nil, extra)
		return m, sha256Of(m)
	}
	sbom, sbomD := ref(map[string]any{"artifactType": "application/vnd.example.sbom", "annotations": map[string]string{"k": "sbom"}})
	sig, sigD := ref(map[string]any{"config": map[string]any{"mediaType": "application/vnd.example.sig", "digest": empty, "size": 2},
		"annotations": map[string]string{"k": "sig"}})
	for _, m := range []struct {
		body []byte
		d    string
	}{{sbom, sbomD}, {sig, sigD}} {
		// "a registry implementation that supports the referrers API MUST respond with the response header OCI-Subject: <subject digest>"
		r := c.do("PUT", "/v2/app/manifests/"+m.d, m.body, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
		want{code: 201, headers: map[string]string{"OCI-Subject": subject}}.check(t, "PUT a referrer", r)
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{}, "subject": map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1}})
	want{code: 201, headers: map[string]string{"OCI-Subject": subject}}.check(t, "PUT an index referrer",
		c.do("PUT", "/v2/app/manifests/"+sha256Of(idx), idx, "Content-Type", "application/vnd.oci.image.index.v1+json"))
	// "A registry MUST initially accept an otherwise valid manifest with a subject field that references a manifest that does not exist"
	orphan := imageManifest(empty, 2, nil, map[string]any{"subject": map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256Of([]byte("absent")), "size": 1}})
	want{code: 201}.check(t, "PUT a referrer of an absent subject",
		c.do("PUT", "/v2/app/manifests/"+sha256Of(orphan), orphan, "Content-Type", "application/vnd.oci.image.manifest.v1+json"))

	type index struct {
		SchemaVersion int
		MediaType     string
		Manifests     []struct {
			MediaType, Digest, ArtifactType string
			Size                            int64
			Annotations                     map[string]string
		}
	}
	list := func(path string) (index, resp) {
		r := c.do("GET", path, nil)
		// "The Content-Type header MUST be set to application/vnd.oci.image.index.v1+json."
		want{code: 200, headers: map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}}.check(t, path, r)
		var ix index
		if err := json.Unmarshal(r.body, &ix); err != nil {
			t.Fatalf("%s: %v", r.body, err)
		}
		if ix.SchemaVersion != 2 || ix.MediaType != "application/vnd.oci.image.index.v1+json" || ix.Manifests == nil {
			t.Errorf("not an image index: %s", r.body)
		}
		return ix, r
	}
	ix, _ := list("/v2/app/referrers/" + subject)
	got := map[string]string{}
	for _, m := range ix.Manifests {
		got[m.Digest] = m.ArtifactType + "/" + m.Annotations["k"]
	}
	wantRefs := map[string]string{
		sbomD:         "application/vnd.example.sbom/sbom", // the manifest's artifactType
		sigD:          "application/vnd.example.sig/sig",   // else the config's mediaType
		sha256Of(idx): "/",                                 // an index without one: omitted
	}
	if fmt.Sprint(got) != fmt.Sprint(wantRefs) {
		t.Errorf("referrers = %v, want %v", got, wantRefs)
	}

	ix, r := list("/v2/app/referrers/" + subject + "?artifactType=application/vnd.example.sig")
	if len(ix.Manifests) != 1 || ix.Manifests[0].Digest != sigD || ix.Manifests[0].Size != int64(len(sig)) {
		t.Errorf("filtered referrers = %+v", ix.Manifests)
	}
	if r.h.Get("OCI-Filters-Applied") != "artifactType" {
		t.Errorf("OCI-Filters-Applied = %q", r.h.Get("OCI-Filters-Applied"))
	}
	// "If a query results in no matching referrers, an empty manifest list MUST be returned."
	if ix, _ := list("/v2/app/referrers/" + sha256Of([]byte("hello world"))); len(ix.Manifests) != 0 {
		t.Errorf("referrers of an unknown digest: %+v", ix.Manifests)
	}
	if ix, _ := list("/v2/nothing/referrers/" + subject); len(ix.Manifests) != 0 {
		t.Errorf("referrers in an unknown repository: %+v", ix.Manifests)
	}
	// "If the request is invalid, such as a <digest> with an invalid syntax, a 400 Bad Request MUST be returned."
	want{code: 400, errCode: "DIGEST_INVALID"}.check(t, "invalid digest", c.do("GET", "/v2/app/referrers/sha256:abc", nil))
	// A deleted referrer leaves the list.
	want{code: 202}.check(t, "delete a referrer", c.do("DELETE", "/v2/app/manifests/"+sbomD, nil))
	if ix, _ := list("/v2/app/referrers/" + subject); len(ix.Manifests) != 2 {
		t.Errorf("after deleting one, %d referrers", len(ix.Manifests))
	}
}

func TestDelete(t *testing.T) {
	_, c := newRegistry(t, registry.Config{})
	m, md := c.pushImage("app", "v1", nil)
	c.do("PUT", "/v2/app/manifests/v2", m, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	blob := c.pushBlob("app", []byte("to delete"))
	c.do("POST", with("/v2/other/blobs/uploads/", "mount", blob, "from", "app"), nil)
	for _, tc := range []struct {
		name, method, path string
		want               want
	}{
		// Deleting tags: "Upon success, the registry MUST respond with a 202 Accepted code."
		{"delete a tag", "DELETE", "/v2/app/manifests/v1", want{code: 202}},
		{"the tag is gone", "GET", "/v2/app/manifests/v1", want{code: 404, errCode: "MANIFEST_UNKNOWN"}},
		{"the manifest stays", "GET", "/v2/app/manifests/" + md, want{code: 200}},
		{"the other tag stays", "GET", "/v2/app/manifests/v2", want{code: 200}},
		{"delete the manifest", "DELETE", "/v2/app/manifests/" + md, want{code: 202}},
		// "Once deleted, a GET to /v2/<name>/manifests/<digest> and any tag pointing to that digest will return a 404."
		{"the manifest is gone", "GET", "/v2/app/manifests/" + md, want{code: 404, errCode: "MANIFEST_UNKNOWN"}},
		{"its tags are gone", "HEAD", "/v2/app/manifests/v2", want{code: 404}},
		{"delete it again", "DELETE", "/v2/app/manifests/" + md, want{code: 404, errCode: "MANIFEST_UNKNOWN"}},
		{"delete in an unknown repository", "DELETE", "/v2/nothing/manifests/" + md, want{code: 404, errCode: "NAME_UNKNOWN"}},
		// Deleting blobs: 202, then 404; other repositories keep theirs.
		{"delete a blob", "DELETE", "/v2/app/blobs/" + blob, want{code: 202}},
		{"the blob is gone", "GET", "/v2/app/blobs/" + blob, want{code: 404, errCode: "BLOB_UNKNOWN"}},
		{"a mount of it stays", "GET", "/v2/other/blobs/" + blob, want{code: 200}},
		{"delete an unknown blob", "DELETE", "/v2/app/blobs/" + blob, want{code: 404, errCode: "BLOB_UNKNOWN"}},
		{"delete the tag list", "DELETE", "/v2/app/tags/list", want{code: 405, errCode: "UNSUPPORTED"}},
		{"delete referrers", "DELETE", "/v2/app/referrers/" + md, want{code: 405, errCode: "UNSUPPORTED"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.check(t, tc.name, c.do(tc.method, tc.path, nil))
		})
	}
	// "GET request to tags list should reflect manifest deletion"
	if r := c.do("GET", "/v2/app/tags/list", nil); !strings.Contains(string(r.body), `"tags":[]`) {
		t.Errorf("tags after deleting: %s", r.body)
	}
}

// What survives a restart: blobs in their repositories, manifests, tags
// and referrers; not upload sessions.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	_, c := newRegistry(t, registry.Config{Dir: dir})
	_, subject := c.pushImage("app", "v1", nil)
	blob := c.pushBlob("app", []byte("loose blob"))
	empty := c.pushBlob("app", []byte("{}"))
	ref := imageManifest(empty, 2, nil, map[string]any{"artifactType": "x/y",
		"subject": map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1}})
	c.do("PUT", "/v2/app/manifests/"+sha256Of(ref), ref, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	loc := c.do("POST", "/v2/app/blobs/uploads/", nil).h.Get("Location")
	c.do("PATCH", loc, []byte("half"))

	_, c2 := newRegistry(t, registry.Config{Dir: dir})
	want{code: 200}.check(t, "tag", c2.do("GET", "/v2/app/manifests/v1", nil))
	want{code: 200, body: []byte("loose blob")}.check(t, "blob", c2.do("GET", "/v2/app/blobs/"+blob, nil))
	want{code: 404}.check(t, "blob in another repository", c2.do("GET", "/v2/other/blobs/"+blob, nil))
	want{code: 404, errCode: "BLOB_UPLOAD_UNKNOWN"}.check(t, "upload", c2.do("GET", loc, nil))
	if r := c2.do("GET", "/v2/app/referrers/"+subject, nil); !strings.Contains(string(r.body), sha256Of(ref)) {
		t.Errorf("referrers after restart: %s", r.body)
	}
}

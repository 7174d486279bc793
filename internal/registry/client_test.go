package registry_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/internal/registry"
)

// requestLog records what a client sent and what it got, as
// "METHOD kind status" lines.
type requestLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *requestLog) has(line string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.lines, line)
}

type codeWriter struct {
	http.ResponseWriter
	code int
}

func (w *codeWriter) WriteHeader(code int) { w.code = code; w.ResponseWriter.WriteHeader(code) }

// A standard client (go-containerregistry's crane and remote packages)
// pushes and pulls over HTTP on loopback: streamed uploads, a
// cross-repository mount, a chunked push by hand read back by the client,
// a referrer, paged tag lists and a delete.
func TestStandardClient(t *testing.T) {
	reg, err := registry.New(registry.Config{Dir: t.TempDir(), Authorize: tokenAuth})
	if err != nil {
		t.Fatal(err)
	}
	log := &requestLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &codeWriter{ResponseWriter: w, code: 200}
		reg.ServeHTTP(cw, r)
		kind := "other"
		switch {
		case r.URL.Query().Get("mount") != "":
			kind = "mount"
		case r.Method == "PATCH" && r.Header.Get("Content-Range") == "":
			kind = "stream"
		case r.Method == "PATCH":
			kind = "chunk"
		}
		log.mu.Lock()
		log.lines = append(log.lines, fmt.Sprintf("%s %s %d", r.Method, kind, cw.code))
		log.mu.Unlock()
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	auth := authn.FromConfig(authn.AuthConfig{Username: "slipway", Password: token})
	opts := []crane.Option{crane.Insecure, crane.WithAuth(auth)}
	ropts := []remote.Option{remote.WithAuth(auth)}

	// Push and pull back.
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := crane.Push(img, host+"/team/app:v1", opts...); err != nil {
		t.Fatalf("crane push: %v", err)
	}
	if !log.has("PATCH stream 202") {
		t.Errorf("the push did not stream its layers: %v", log.lines)
	}
	pulled, err := crane.Pull(host+"/team/app:v1", opts...)
	if err != nil {
		t.Fatalf("crane pull: %v", err)
	}
	readLayers(t, pulled)
	if digest(t, pulled) != digest(t, img) {
		t.Errorf("pulled %s, pushed %s", digest(t, pulled), digest(t, img))
	}

	// A copy within the registry mounts the layers.
	if err := crane.Copy(host+"/team/app:v1", host+"/team/copy:v1", opts...); err != nil {
		t.Fatalf("crane copy: %v", err)
	}
	if !log.has("POST mount 201") {
		t.Errorf("the copy did not mount: %v", log.lines)
	}
	readLayers(t, mustPull(t, host+"/team/copy:v1", opts))

	// A layer pushed in chunks with Content-Range, then an image using it
	// pushed and pulled by the client, which verifies every layer's digest.
	chunked, err := random.Image(10000, 1)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := chunked.Layers()
	rc, _ := layers[0].Compressed()
	blob, _ := io.ReadAll(rc)
	rc.Close()
	c := client{t: t, base: srv.URL, user: token}
	loc := c.do("POST", "/v2/team/chunked/blobs/uploads/", nil, "Content-Length", "0").h.Get("Location")
	for i := 0; i < len(blob); i += 1024 {
		end := min(i+1024, len(blob))
		r := c.do("PATCH", loc, blob[i:end], "Content-Range", fmt.Sprintf("%d-%d", i, end-1))
		if r.code != 202 {
			t.Fatalf("chunk at %d: %d %s", i, r.code, r.body)
		}
		loc = r.h.Get("Location")
	}
	if r := c.do("PUT", with(loc, "digest", digest(t, layers[0]).String()), nil); r.code != 201 {
		t.Fatalf("closing the chunked upload: %d %s", r.code, r.body)
	}
	if err := crane.Push(chunked, host+"/team/chunked:v1", opts...); err != nil {
		t.Fatalf("pushing over the chunked layer: %v", err)
	}
	readLayers(t, mustPull(t, host+"/team/chunked:v1", opts))

	// A referrer: the registry answers OCI-Subject, so the client writes
	// no fallback tag, and the referrers API lists it.
	subject, err := partialDescriptor(pulled)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	sig = mutate.ConfigMediaType(sig, "application/vnd.example.signature")
	sigImg := mutate.Subject(sig, subject).(v1.Image)
	sigRef, _ := name.NewDigest(host+"/team/app@"+digest(t, sigImg).String(), name.Insecure)
	if err := remote.Write(sigRef, sigImg, ropts...); err != nil {
		t.Fatalf("pushing a referrer: %v", err)
	}
	idx, err := remote.Referrers(mustDigest(t, host+"/team/app@"+subject.Digest.String()), ropts...)
	if err != nil {
		t.Fatalf("referrers: %v", err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != digest(t, sigImg) || im.Manifests[0].ArtifactType != "application/vnd.example.signature" {
		t.Errorf("referrers = %+v", im.Manifests)
	}

	// Tags, five of them, listed two per page by following Link headers.
	for _, tag := range []string{"a", "b", "c", "d"} {
		if err := crane.Tag(host+"/team/app:v1", tag, opts...); err != nil {
			t.Fatalf("tag: %v", err)
		}
	}
	repo, _ := name.NewRepository(host+"/team/app", name.Insecure)
	tags, err := remote.List(repo, append(ropts, remote.WithPageSize(2))...)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if strings.Join(tags, ",") != "a,b,c,d,v1" {
		t.Errorf("tags = %v (a fallback tag would show here)", tags)
	}

	// Delete by digest: the manifest and its tags go.
	if err := crane.Delete(host+"/team/copy@"+digest(t, img).String(), opts...); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := crane.Digest(host+"/team/copy:v1", opts...); !isStatus(err, http.StatusNotFound) {
		t.Errorf("deleted image: %v", err)
	}
}

func readLayers(t *testing.T, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("reading layer: %v", err)
		}
		if err := rc.Close(); err != nil { // the digest is verified here
			t.Fatalf("layer: %v", err)
		}
	}
}

func mustPull(t *testing.T, ref string, opts []crane.Option) v1.Image {
	t.Helper()
	img, err := crane.Pull(ref, opts...)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return img
}

func mustDigest(t *testing.T, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func partialDescriptor(img v1.Image) (v1.Descriptor, error) {
	d, err := img.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := img.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: size}, nil
}

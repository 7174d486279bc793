// Package registry is Slipway's embedded OCI registry.
//
// It serves the distribution API under /v2/ with go-containerregistry's
// registry handler, blobs stored on disk. That handler keeps manifests in
// memory only, so the Registry wraps it: every manifest it accepts is also
// written under Config.Dir, every manifest it deletes is removed there, and
// New replays the stored manifests into a fresh handler, so a restarted
// server serves everything it had.
//
// The layers, outermost first:
//
//	auth       401 + WWW-Authenticate unless Authorize allows (anonymous pulls of library/*)
//	names      rejects repository names and references that are not valid
//	persist    writes accepted manifest PUTs and DELETEs to disk
//	ggcr       go-containerregistry's registry (manifests in memory, blobs on disk)
//
// Repositories under library/ hold the stand-ins for the official base
// images (see package baseimage) and may be pulled without credentials, so
// BuildKit can use the registry as an anonymous mirror of docker.io.
package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Config configures a Registry. Only Dir is required.
type Config struct {
	// Dir holds the registry's data: blobs in Dir/blobs, manifests in
	// Dir/manifests. It is created if missing. Required.
	Dir string

	// Authorize reports whether a request carries valid credentials (for
	// Slipway, an API token as the basic-auth password or as a bearer
	// token). If nil, every request is allowed.
	//
	// Pulls (GET and HEAD) from repositories under library/ never need
	// credentials; every other request does.
	Authorize func(r *http.Request) bool

	// Logger receives one debug record per request and warnings about
	// stored manifests that could not be restored. If nil, nothing is
	// logged.
	Logger *slog.Logger
}

// Registry is an http.Handler serving the distribution API under /v2/. Mount
// it at /v2/ without stripping the prefix.
type Registry struct {
	handler http.Handler
	persist *persister
	blobs   statBlobs
	log     *slog.Logger
	grants  *grants
}

// New opens (or creates) the registry stored in cfg.Dir and restores its
// manifests.
func New(cfg Config) (*Registry, error) {
	if cfg.Dir == "" {
		return nil, errors.New("registry: Config.Dir is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	blobDir := filepath.Join(cfg.Dir, "blobs")
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating registry blob directory: %w", err)
	}
	blobs := statBlobs{BlobHandler: ggcr.NewDiskBlobHandler(blobDir), dir: blobDir}
	inner := ggcr.New(
		ggcr.WithBlobHandler(blobs),
		ggcr.Logger(log.New(io.Discard, "", 0)),
	)
	p := &persister{
		next:   inner,
		dir:    filepath.Join(cfg.Dir, "manifests"),
		public: newDigestSet(),
		refs:   newRepoRefs(),
		log:    logger,
	}
	if err := p.restore(); err != nil {
		return nil, err
	}
	r := &Registry{persist: p, blobs: blobs, log: logger, grants: &grants{m: map[string]Grant{}}}
	var h http.Handler = p
	h = validateNames(h)
	h = authorize(h, cfg.Authorize, p.public, r.grants, p.refs)
	h = logRequests(h, logger)
	r.handler = h
	return r, nil
}

// ServeHTTP serves the distribution API.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.handler.ServeHTTP(w, req)
}

// Import stores img in the registry under ref, a repository with a tag
// ("library/golang:1.23") or a digest ("library/golang@sha256:…"), without
// going through HTTP or authorization. Blobs already present are not
// copied again.
func (r *Registry) Import(ctx context.Context, ref string, img v1.Image) error {
	repo, target, err := splitRef(ref)
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("importing %s: reading layers: %w", ref, err)
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("importing %s: layer digest: %w", ref, err)
		}
		if err := r.putBlob(ctx, d, l.Compressed); err != nil {
			return fmt.Errorf("importing %s: %w", ref, err)
		}
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("importing %s: config digest: %w", ref, err)
	}
	if err := r.putBlob(ctx, cfgName, func() (io.ReadCloser, error) {
		b, err := img.RawConfigFile()
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}); err != nil {
		return fmt.Errorf("importing %s: %w", ref, err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("importing %s: manifest: %w", ref, err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return fmt.Errorf("importing %s: media type: %w", ref, err)
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+target, bytes.NewReader(raw))
	req.Header.Set("Content-Type", string(mt))
	rec := httptest.NewRecorder()
	r.persist.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		return fmt.Errorf("importing %s: storing manifest: %d %s", ref, rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	return nil
}

// putBlob stores the blob d unless present, verifying its digest.
func (r *Registry) putBlob(ctx context.Context, d v1.Hash, open func() (io.ReadCloser, error)) error {
	if _, err := r.blobs.Stat(ctx, "", d); err == nil {
		return nil
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("opening blob %s: %w", d, err)
	}
	defer rc.Close()
	vr, err := newVerifyingReader(rc, d)
	if err != nil {
		return err
	}
	if err := r.blobs.Put(ctx, "", d, io.NopCloser(vr)); err != nil {
		return fmt.Errorf("storing blob %s: %w", d, err)
	}
	return nil
}

// splitRef splits "repo:tag" or "repo@digest" and validates both parts.
func splitRef(ref string) (repo, target string, err error) {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		repo, target = ref[:i], ref[i+1:]
	} else if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo, target = ref[:i], ref[i+1:]
	} else {
		repo, target = ref, "latest"
	}
	if !validRepo(repo) {
		return "", "", fmt.Errorf("invalid repository name %q", repo)
	}
	if !validReference(target) {
		return "", "", fmt.Errorf("invalid tag or digest %q", target)
	}
	return repo, target, nil
}

var _ http.Handler = (*Registry)(nil)

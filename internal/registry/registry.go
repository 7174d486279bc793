// Package registry is Slipway's embedded OCI registry.
//
// It serves the OCI distribution API 1.1 under /v2/: pulls (manifests by
// tag or digest, blobs with range requests), pushes (a single POST, POST
// then PUT, chunked and streamed PATCHes), cross-repository mounts, tag
// lists, the referrers API, and deletion of tags, manifests and blobs,
// with sha256 and sha512 digests. Everything is stored on disk under
// Config.Dir (see store) and survives a restart; uploads are staged in
// files, bounded in size and expire when abandoned.
//
// The layers, outermost first:
//
//	log        one debug record per request; the API version header
//	auth       401 + WWW-Authenticate unless Authorize allows (anonymous pulls of library/*);
//	           403 for what a grant's token does not allow
//	names      rejects repository names outside the grammar
//	handlers   the endpoints (manifests.go, blobs.go, uploads.go) over the store
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
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Config configures a Registry. Only Dir is required.
type Config struct {
	// Dir holds the registry's data (see store for the layout). It is
	// created if missing. Required.
	Dir string

	// Authorize reports whether a request carries valid credentials (for
	// Slipway, an API token as the basic-auth password or as a bearer
	// token). If nil, every request is allowed.
	//
	// Pulls (GET and HEAD) from repositories under library/ never need
	// credentials; every other request does.
	Authorize func(r *http.Request) bool

	// Logger receives one debug record per request and warnings about
	// stored content that could not be restored. If nil, nothing is
	// logged.
	Logger *slog.Logger

	// MaxBlobSize bounds one blob upload, in bytes. If zero, 10 GiB.
	MaxBlobSize int64

	// MaxUploads bounds the upload sessions open at once; more are
	// answered 429 TOOMANYREQUESTS. If zero, 256.
	MaxUploads int

	// UploadTimeout is how long an upload session may stay idle before it
	// is removed with what it received. If zero, 1 hour.
	UploadTimeout time.Duration
}

// Registry is an http.Handler serving the distribution API under /v2/. Mount
// it at /v2/ without stripping the prefix.
type Registry struct {
	handler http.Handler
	store   *store
	uploads *uploads
	log     *slog.Logger
	grants  *grants
}

// New opens (or creates) the registry stored in cfg.Dir.
func New(cfg Config) (*Registry, error) {
	if cfg.Dir == "" {
		return nil, errors.New("registry: Config.Dir is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st, err := openStore(cfg.Dir, logger)
	if err != nil {
		return nil, err
	}
	up := &uploads{
		dir:         st.uploadDir,
		maxSize:     orDefault(cfg.MaxBlobSize, 10<<30),
		maxSessions: int(orDefault(int64(cfg.MaxUploads), 256)),
		timeout:     time.Duration(orDefault(int64(cfg.UploadTimeout), int64(time.Hour))),
		log:         logger,
		m:           map[string]*session{},
	}
	r := &Registry{store: st, uploads: up, log: logger, grants: &grants{m: map[string]Grant{}}}
	var h http.Handler = http.HandlerFunc(r.serve)
	h = validateNames(h)
	h = authorize(h, cfg.Authorize, r.grants)
	h = logRequests(h, logger)
	r.handler = h
	return r, nil
}

// orDefault returns v, or def when v is zero or negative.
func orDefault(v, def int64) int64 {
	if v <= 0 {
		return def
	}
	return v
}

// ServeHTTP serves the distribution API.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.handler.ServeHTTP(w, req)
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	rt := parseRoute(req.URL.Path)
	switch rt.kind {
	case kindBase:
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		writeJSON(w, req, "application/json", struct{}{})
	case kindCatalog:
		r.serveCatalog(w, req)
	case kindManifest:
		r.serveManifest(w, req, rt)
	case kindBlob:
		r.serveBlob(w, req, rt)
	case kindUpload:
		r.serveUpload(w, req, rt)
	case kindTags:
		r.serveTags(w, req, rt)
	case kindReferrers:
		r.serveReferrers(w, req, rt)
	default:
		writeError(w, http.StatusNotFound, codeUnsupported, "no such endpoint in the distribution API")
	}
}

// internalError logs err and answers 500 without its detail.
func (r *Registry) internalError(w http.ResponseWriter, what string, err error) {
	r.log.Error("registry: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, codeUnknown, what+" failed")
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
		h, err := l.Digest()
		if err != nil {
			return fmt.Errorf("importing %s: layer digest: %w", ref, err)
		}
		if err := r.importBlob(ctx, repo, h, l.Compressed); err != nil {
			return fmt.Errorf("importing %s: %w", ref, err)
		}
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("importing %s: config digest: %w", ref, err)
	}
	if err := r.importBlob(ctx, repo, cfgName, func() (io.ReadCloser, error) {
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+target, bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("importing %s: %w", ref, err)
	}
	req.Header.Set("Content-Type", string(mt))
	rec := &recorder{header: http.Header{}}
	r.putManifest(rec, req, route{kind: kindManifest, name: repo, target: target})
	if rec.code != http.StatusCreated {
		return fmt.Errorf("importing %s: storing manifest: %d %s", ref, rec.code, strings.TrimSpace(rec.body.String()))
	}
	return nil
}

// importBlob puts the blob h in repo, storing it unless present and
// verifying its digest.
func (r *Registry) importBlob(_ context.Context, repo string, h v1.Hash, open func() (io.ReadCloser, error)) error {
	d, err := parseDigest(h.String())
	if err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	if r.store.blobStored(d) {
		return r.store.mountBlob(repo, d)
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("opening blob %s: %w", d, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(r.store.uploadDir, "import-*")
	if err != nil {
		return fmt.Errorf("staging blob %s: %w", d, err)
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, newVerifyingReader(rc, d))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("storing blob %s: %w", d, err)
	}
	return r.store.commitBlob(repo, d, f.Name())
}

// recorder is a minimal http.ResponseWriter for Import.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (rec *recorder) Header() http.Header { return rec.header }
func (rec *recorder) WriteHeader(code int) {
	if rec.code == 0 {
		rec.code = code
	}
}

func (rec *recorder) Write(b []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	return rec.body.Write(b)
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

package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxManifestSize bounds a manifest body, as distribution does.
const maxManifestSize = 4 << 20

// refsDir is the directory, inside a repository's directory, holding one
// file per tag or digest. Repository path components cannot start with
// "_", so it never collides with a nested repository.
const refsDir = "_manifests"

// storedManifest is one tag or digest of a repository on disk.
type storedManifest struct {
	ContentType string `json:"contentType"`
	Digest      string `json:"digest"`
	Manifest    []byte `json:"manifest"`
}

// persister writes every manifest the inner handler accepts to disk and
// removes deleted ones, serialising manifest writes so that memory and disk
// agree. Layout: dir/<repository>/_manifests/<tag or digest>.json.
type persister struct {
	next   http.Handler
	dir    string
	public *digestSet
	refs   *repoRefs // every repository's referenced blobs
	log    *slog.Logger
	mu     sync.Mutex
}

func (p *persister) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := parseRoute(r.URL.Path)
	if rt.kind != kindManifest || (r.Method != http.MethodPut && r.Method != http.MethodDelete) {
		p.next.ServeHTTP(w, r)
		return
	}
	if r.Method == http.MethodDelete {
		p.delete(w, r, rt)
		return
	}
	p.put(w, r, rt)
}

func (p *persister) put(w http.ResponseWriter, r *http.Request, rt route) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", "reading manifest: "+err.Error())
		return
	}
	if len(body) > maxManifestSize {
		writeError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", "manifest too large")
		return
	}
	if isDigest(rt.target) {
		if d, _, _ := v1.SHA256(bytes.NewReader(body)); d.String() != rt.target {
			writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "manifest digest does not match reference")
			return
		}
	}
	inner := r.Clone(r.Context())
	inner.Body = io.NopCloser(bytes.NewReader(body))
	inner.ContentLength = int64(len(body))

	p.mu.Lock()
	defer p.mu.Unlock()
	rec := httptest.NewRecorder()
	p.next.ServeHTTP(rec, inner)
	if rec.Code == http.StatusCreated {
		m := storedManifest{
			ContentType: r.Header.Get("Content-Type"),
			Digest:      rec.Header().Get("Docker-Content-Digest"),
			Manifest:    body,
		}
		err := p.write(rt.name, rt.target, m)
		if err == nil && m.Digest != rt.target {
			err = p.write(rt.name, m.Digest, m)
		}
		if err != nil {
			p.log.Error("registry: persisting manifest", "repository", rt.name, "reference", rt.target, "err", err)
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "storing manifest failed")
			return
		}
		p.notePublic(rt.name, m)
	}
	copyRecorded(w, rec)
}

func (p *persister) delete(w http.ResponseWriter, r *http.Request, rt route) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rec := httptest.NewRecorder()
	p.next.ServeHTTP(rec, r)
	if rec.Code == http.StatusAccepted {
		if err := os.Remove(p.refPath(rt.name, rt.target)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.log.Error("registry: removing manifest", "repository", rt.name, "reference", rt.target, "err", err)
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "deleting manifest failed")
			return
		}
	}
	copyRecorded(w, rec)
}

func (p *persister) refPath(repo, ref string) string {
	return filepath.Join(p.dir, filepath.FromSlash(repo), refsDir, ref+".json")
}

// write stores m atomically (temporary file, fsync, rename).
func (p *persister) write(repo, ref string, m storedManifest) error {
	path := p.refPath(repo, ref)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating manifest directory: %w", err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding manifest: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing manifest: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing manifest: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

// notePublic records the blobs an image manifest references: for its
// repository (what a grant may pull through it) and, in a public
// repository, for anonymous pulls.
func (p *persister) notePublic(repo string, m storedManifest) {
	if types.MediaType(m.ContentType).IsIndex() {
		return
	}
	mf, err := v1.ParseManifest(bytes.NewReader(m.Manifest))
	if err != nil {
		return
	}
	digests := []string{mf.Config.Digest.String()}
	for _, l := range mf.Layers {
		digests = append(digests, l.Digest.String())
	}
	if p.refs != nil {
		p.refs.add(repo, digests...)
	}
	if publicRepo(repo) {
		for _, d := range digests {
			p.public.add(d)
		}
	}
}

// restore replays the stored manifests into the inner handler: image
// manifests first, then indexes (whose children must already exist), then
// it removes the digest entries the inner handler adds on its own for a tag
// when that digest itself had been deleted.
func (p *persister) restore() error {
	type ref struct {
		repo, target string
		m            storedManifest
	}
	var refs []ref
	persisted := map[string]bool{} // repo + "@" + target
	err := filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == p.dir {
			return filepath.SkipAll
		}
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".json") || filepath.Base(filepath.Dir(path)) != refsDir {
			return nil
		}
		rel, err := filepath.Rel(p.dir, filepath.Dir(filepath.Dir(path)))
		if err != nil {
			return err
		}
		repo := filepath.ToSlash(rel)
		target := strings.TrimSuffix(filepath.Base(path), ".json")
		if !validRepo(repo) || !validReference(target) {
			p.log.Warn("registry: ignoring stored manifest with invalid name", "path", path)
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading stored manifest: %w", err)
		}
		var m storedManifest
		if err := json.Unmarshal(b, &m); err != nil {
			p.log.Warn("registry: ignoring corrupt stored manifest", "path", path, "err", err)
			return nil
		}
		refs = append(refs, ref{repo, target, m})
		persisted[repo+"@"+target] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("restoring manifests: %w", err)
	}
	// Images before indexes; indexes of indexes are retried until no
	// further one succeeds.
	sort.SliceStable(refs, func(i, j int) bool {
		return !types.MediaType(refs[i].m.ContentType).IsIndex() && types.MediaType(refs[j].m.ContentType).IsIndex()
	})
	for pending := refs; len(pending) > 0; {
		var failed []ref
		var lastErr string
		for _, rf := range pending {
			rec := p.replay(http.MethodPut, rf.repo, rf.target, rf.m)
			if rec.Code != http.StatusCreated {
				failed = append(failed, rf)
				lastErr = strings.TrimSpace(rec.Body.String())
				continue
			}
			p.notePublic(rf.repo, rf.m)
		}
		if len(failed) == len(pending) {
			for _, rf := range failed {
				p.log.Warn("registry: could not restore manifest", "repository", rf.repo, "reference", rf.target, "err", lastErr)
			}
			break
		}
		pending = failed
	}
	for _, rf := range refs {
		if rf.m.Digest != "" && !persisted[rf.repo+"@"+rf.m.Digest] {
			p.replay(http.MethodDelete, rf.repo, rf.m.Digest, storedManifest{})
			persisted[rf.repo+"@"+rf.m.Digest] = true // delete once
		}
	}
	return nil
}

func (p *persister) replay(method, repo, target string, m storedManifest) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/v2/"+repo+"/manifests/"+target, bytes.NewReader(m.Manifest))
	if m.ContentType != "" {
		req.Header.Set("Content-Type", m.ContentType)
	}
	rec := httptest.NewRecorder()
	p.next.ServeHTTP(rec, req)
	return rec
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// digestSet is a concurrency-safe set of digests.
type digestSet struct {
	mu sync.RWMutex
	m  map[string]struct{}
}

func newDigestSet() *digestSet { return &digestSet{m: map[string]struct{}{}} }

func (s *digestSet) add(d string) {
	s.mu.Lock()
	s.m[d] = struct{}{}
	s.mu.Unlock()
}

func (s *digestSet) has(d string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.m[d]
	return ok
}

var _ http.Handler = (*persister)(nil)

package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// uploads holds the open blob upload sessions. A session stages its bytes
// in a file of the store's upload directory, never in memory, holds at
// most maxSize bytes, and is removed with its file when idle for timeout.
type uploads struct {
	dir         string
	maxSize     int64
	maxSessions int
	timeout     time.Duration
	log         *slog.Logger

	mu sync.Mutex
	m  map[string]*session
}

// session is one upload. Its fields are guarded by mu, held for the whole
// of each request on the session.
type session struct {
	id, repo, path string

	mu     sync.Mutex
	size   int64     // bytes received
	sha256 hash.Hash // of those bytes; nil after a failed write (the file is hashed again)
	gen    int       // bumped by every request, so a stale expiry does nothing
	timer  *time.Timer
	closed bool
}

var (
	errUploadUnknown  = errors.New("blob upload unknown to registry")
	errTooManyUploads = errors.New("too many open uploads")
	errTooLarge       = errors.New("upload too large")
	errSizeMismatch   = errors.New("body length does not match Content-Length or Content-Range")
	errDigestMismatch = errors.New("content does not match digest")
)

// start opens a session for repo.
func (u *uploads) start(repo string) (*session, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.m) >= u.maxSessions {
		return nil, errTooManyUploads
	}
	id := newUUID()
	s := &session{id: id, repo: repo, path: filepath.Join(u.dir, id), sha256: sha256.New()}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating upload: %w", err)
	}
	f.Close()
	u.m[id] = s
	s.mu.Lock()
	u.arm(s)
	s.mu.Unlock()
	return s, nil
}

// acquire returns repo's session id, locked; release it with release.
func (u *uploads) acquire(repo, id string) (*session, error) {
	u.mu.Lock()
	s := u.m[id]
	u.mu.Unlock()
	if s == nil || s.repo != repo {
		return nil, errUploadUnknown
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errUploadUnknown
	}
	return s, nil
}

func (u *uploads) release(s *session) {
	if !s.closed {
		u.arm(s)
	}
	s.mu.Unlock()
}

// arm (re)starts s's expiry. s.mu is held.
func (u *uploads) arm(s *session) {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.gen++
	gen := s.gen
	s.timer = time.AfterFunc(u.timeout, func() { u.expire(s, gen) })
}

func (u *uploads) expire(s *session, gen int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.gen != gen {
		return
	}
	u.log.Info("registry: upload expired", "repository", s.repo, "upload", s.id, "bytes", s.size)
	u.close(s, true)
}

// close ends s (s.mu held), removing its file if remove.
func (u *uploads) close(s *session, remove bool) {
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	u.mu.Lock()
	delete(u.m, s.id)
	u.mu.Unlock()
	if remove {
		os.Remove(s.path)
	}
}

// write appends body to s (s.mu held); want is the length announced, or
// -1. On failure the file is cut back to its former size.
func (u *uploads) write(s *session, body io.Reader, want int64) (err error) {
	if want > u.maxSize-s.size {
		return errTooLarge
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening upload: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(s.size, io.SeekStart); err != nil {
		return fmt.Errorf("opening upload: %w", err)
	}
	var w io.Writer = f
	if s.sha256 != nil {
		w = io.MultiWriter(f, s.sha256)
	}
	limit := u.maxSize - s.size
	n, err := io.Copy(w, io.LimitReader(body, limit+1))
	switch {
	case err != nil:
	case n > limit:
		err = errTooLarge
	case want >= 0 && n != want:
		err = errSizeMismatch
	}
	if err != nil {
		if n > 0 {
			s.sha256 = nil
			if terr := f.Truncate(s.size); terr != nil {
				u.log.Error("registry: truncating upload", "upload", s.id, "err", terr)
			}
		}
		return err
	}
	s.size += n
	return nil
}

// finish checks s's content against d and ends s (s.mu held), returning
// the file to commit when it matches.
func (u *uploads) finish(s *session, d digest) (string, error) {
	ok := false
	if d.alg == "sha256" && s.sha256 != nil {
		ok = d.matches(s.sha256)
	} else {
		f, err := os.Open(s.path)
		if err != nil {
			return "", fmt.Errorf("reading upload: %w", err)
		}
		h := d.newHash()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("reading upload: %w", err)
		}
		ok = d.matches(h)
	}
	u.close(s, !ok)
	if !ok {
		return "", errDigestMismatch
	}
	return s.path, nil
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

var contentRangeRE = regexp.MustCompile(`^([0-9]+)-([0-9]+)$`)

// parseContentRange reads a chunk's Content-Range ("<start>-<end>",
// inclusive; "bytes=" or "bytes " before it and "/<total>" after it are
// tolerated).
func parseContentRange(s string) (start, end int64, ok bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "bytes="), "bytes ")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	m := contentRangeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(m[1], 10, 64)
	end, err2 := strconv.ParseInt(m[2], 10, 64)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, false
	}
	return start, end, true
}

func (r *Registry) serveUpload(w http.ResponseWriter, req *http.Request, rt route) {
	if rt.target == "" {
		if req.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		r.startUpload(w, req, rt.name)
		return
	}
	switch req.Method {
	case http.MethodGet, http.MethodPatch, http.MethodPut, http.MethodDelete:
	default:
		methodNotAllowed(w, "GET, PATCH, PUT, DELETE")
		return
	}
	s, err := r.uploads.acquire(rt.name, rt.target)
	if err != nil {
		writeError(w, http.StatusNotFound, codeBlobUploadUnknown, "upload unknown: "+rt.target)
		return
	}
	defer r.uploads.release(s)
	switch req.Method {
	case http.MethodGet:
		uploadHeaders(w, s)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		r.uploads.close(s, true)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPatch:
		if r.receive(w, req, s) {
			uploadHeaders(w, s)
			w.WriteHeader(http.StatusAccepted)
		}
	case http.MethodPut:
		r.finishUpload(w, req, s)
	}
}

// startUpload answers POST /v2/<name>/blobs/uploads/: a mount, a whole
// blob (?digest=), or a new session.
func (r *Registry) startUpload(w http.ResponseWriter, req *http.Request, repo string) {
	q := req.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		if r.mount(w, req, repo, mount, q.Get("from")) { // from is optional
			return
		}
	} else if ds := q.Get("digest"); ds != "" {
		r.monolithic(w, req, repo, ds)
		return
	}
	s, err := r.uploads.start(repo)
	if errors.Is(err, errTooManyUploads) {
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusTooManyRequests, codeTooManyRequests,
			fmt.Sprintf("%d uploads are open; finish or cancel one", r.uploads.maxSessions))
		return
	}
	if err != nil {
		r.internalError(w, "starting upload", err)
		return
	}
	uploadHeaders(w, s)
	w.WriteHeader(http.StatusAccepted)
}

// mount links a blob of repository from into repo when the client may
// pull from it and it holds the blob; without from, of any repository the
// client may pull from. Otherwise it answers nothing and returns false,
// and the caller starts an ordinary upload session.
func (r *Registry) mount(w http.ResponseWriter, req *http.Request, repo, mount, from string) bool {
	d, err := parseDigest(mount)
	if err != nil {
		return false
	}
	if from == "" {
		if !slices.ContainsFunc(r.store.holders(d), func(h string) bool { return mayPull(req.Context(), h) }) {
			return false
		}
	} else if !validRepo(from) || !mayPull(req.Context(), from) || !r.store.hasBlob(from, d) {
		return false
	}
	if err := r.store.mountBlob(repo, d); err != nil {
		return false
	}
	blobCreated(w, repo, d)
	return true
}

// monolithic stores a blob sent whole in the POST body.
func (r *Registry) monolithic(w http.ResponseWriter, req *http.Request, repo, ds string) {
	d, err := parseDigest(ds)
	if err != nil {
		badDigest(w, ds, err)
		return
	}
	max := r.uploads.maxSize
	if req.ContentLength > max {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("blob larger than %d bytes", max))
		return
	}
	f, err := os.CreateTemp(r.uploads.dir, "post-*")
	if err != nil {
		r.internalError(w, "staging blob", err)
		return
	}
	defer os.Remove(f.Name()) // after a commit, a no-op
	h := d.newHash()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(req.Body, max+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, codeBlobUploadInvalid, "reading blob: "+err.Error())
	case n > max:
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("blob larger than %d bytes", max))
	case req.ContentLength >= 0 && n != req.ContentLength:
		writeError(w, http.StatusBadRequest, codeSizeInvalid, "body length does not match Content-Length")
	case !d.matches(h):
		writeError(w, http.StatusBadRequest, codeDigestInvalid, "content does not match digest "+d.String())
	default:
		if err := r.store.commitBlob(repo, d, f.Name()); err != nil {
			r.internalError(w, "storing blob", err)
			return
		}
		blobCreated(w, repo, d)
	}
}

// receive appends a PATCH or PUT body to s, answering and returning false
// when it can't.
func (r *Registry) receive(w http.ResponseWriter, req *http.Request, s *session) bool {
	want := req.ContentLength
	if cr := req.Header.Get("Content-Range"); cr != "" {
		start, end, ok := parseContentRange(cr)
		if !ok {
			writeError(w, http.StatusBadRequest, codeBlobUploadInvalid, "invalid Content-Range "+strconv.Quote(cr))
			return false
		}
		if start != s.size {
			uploadHeaders(w, s)
			writeError(w, http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid,
				fmt.Sprintf("chunk starts at %d, the upload holds %d bytes", start, s.size))
			return false
		}
		if want >= 0 && want != end-start+1 {
			writeError(w, http.StatusBadRequest, codeSizeInvalid, "Content-Length does not match Content-Range")
			return false
		}
		want = end - start + 1
	}
	switch err := r.uploads.write(s, req.Body, want); {
	case err == nil:
		return true
	case errors.Is(err, errTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("blob larger than %d bytes", r.uploads.maxSize))
	case errors.Is(err, errSizeMismatch):
		writeError(w, http.StatusBadRequest, codeSizeInvalid, err.Error())
	default:
		writeError(w, http.StatusBadRequest, codeBlobUploadInvalid, "reading chunk: "+err.Error())
	}
	return false
}

// finishUpload closes a session with PUT ?digest=, with or without a last
// chunk.
func (r *Registry) finishUpload(w http.ResponseWriter, req *http.Request, s *session) {
	ds := req.URL.Query().Get("digest")
	if ds == "" {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, "the digest query parameter is required")
		return
	}
	d, err := parseDigest(ds)
	if err != nil {
		badDigest(w, ds, err)
		return
	}
	if !r.receive(w, req, s) {
		return
	}
	path, err := r.uploads.finish(s, d)
	if errors.Is(err, errDigestMismatch) {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, "content does not match digest "+d.String())
		return
	}
	if err != nil {
		r.internalError(w, "finishing upload", err)
		return
	}
	if err := r.store.commitBlob(s.repo, d, path); err != nil {
		os.Remove(path)
		r.internalError(w, "storing blob", err)
		return
	}
	blobCreated(w, s.repo, d)
}

func uploadHeaders(w http.ResponseWriter, s *session) {
	h := w.Header()
	h.Set("Location", "/v2/"+s.repo+"/blobs/uploads/"+s.id)
	h.Set("Range", fmt.Sprintf("0-%d", max(s.size-1, 0)))
	h.Set("Docker-Upload-UUID", s.id)
	h.Set("Content-Length", "0")
}

func blobCreated(w http.ResponseWriter, repo string, d digest) {
	h := w.Header()
	h.Set("Location", "/v2/"+repo+"/blobs/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

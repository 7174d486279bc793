package registry

import (
	"log/slog"
	"net/http"
	"time"
)

// authorize lets a request through when allow reports valid credentials,
// or when it is an anonymous pull from a public (library/) repository. A
// blob is pulled anonymously only if a manifest in a public repository
// references it: blobs are stored once for all repositories, so the
// repository in a blob URL alone proves nothing.
//
// Everything else is answered 401 with a Basic challenge; clients (docker,
// BuildKit, go-containerregistry) then retry with their credentials. The
// API version check (/v2/) is challenged too, which is how clients that
// ping first learn that they must authenticate.
//
// A grant's token (Registry.Grant) is judged by its grant alone.
func authorize(next http.Handler, allow func(*http.Request) bool, public *digestSet, gs *grants, refs *repoRefs) http.Handler {
	if allow == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := anonymousPull(r, public)
		if !ok {
			if g, granted := gs.lookup(r); granted {
				ok = g.allows(r, refs)
			} else {
				ok = allow(r)
			}
		}
		if ok {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="slipway"`)
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	})
}

func anonymousPull(r *http.Request, public *digestSet) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	rt := parseRoute(r.URL.Path)
	if !publicRepo(rt.name) {
		return false
	}
	switch rt.kind {
	case kindManifest, kindTags:
		return true
	case kindBlob:
		return public.has(rt.target)
	}
	return false
}

// validateNames rejects repository names and manifest references outside
// the distribution grammar before they reach the handlers, which use them
// as map keys and file names.
func validateNames(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := parseRoute(r.URL.Path)
		switch rt.kind {
		case kindManifest, kindBlob, kindUpload, kindTags:
			if !validRepo(rt.name) {
				writeError(w, http.StatusBadRequest, "NAME_INVALID", "invalid repository name")
				return
			}
		}
		if rt.kind == kindManifest && !validReference(rt.target) {
			writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", "invalid tag or digest")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// logRequests logs one debug record per request.
func logRequests(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		log.LogAttrs(r.Context(), slog.LevelDebug, "registry request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", sw.status), slog.Duration("duration", time.Since(start)))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

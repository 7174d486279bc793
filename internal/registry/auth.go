package registry

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// authorize lets a request through when allow reports valid credentials,
// or when it is an anonymous pull from a public (library/) repository
// (manifests, tags, referrers and the blobs of that repository).
//
// A grant's token (Registry.Grant) is judged by its grant alone: what it
// does not allow is answered 403 DENIED. A request without valid
// credentials is answered 401 with a Basic challenge; clients (docker,
// BuildKit, go-containerregistry) then retry with their credentials. The
// API version check (/v2/) is challenged too, which is how clients that
// ping first learn that they must authenticate.
//
// The request's context carries what the client may pull (mayPull), for
// the checks that depend on a second repository: a mount's from.
func authorize(next http.Handler, allow func(*http.Request) bool, gs *grants) http.Handler {
	if allow == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if anonymousPull(r) {
			next.ServeHTTP(w, r)
			return
		}
		if g, granted := gs.lookup(r); granted {
			if !g.allows(r) {
				writeError(w, http.StatusForbidden, codeDenied, "this token may not do that")
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), pullerKey{}, puller(g.pulls))))
			return
		}
		if allow(r) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="slipway"`)
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "authentication required")
	})
}

type (
	pullerKey struct{}
	puller    func(repo string) bool
)

// mayPull reports whether the request's credentials may pull from repo:
// any repository unless authorize narrowed it.
func mayPull(ctx context.Context, repo string) bool {
	p, ok := ctx.Value(pullerKey{}).(puller)
	return !ok || p(repo)
}

func anonymousPull(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	rt := parseRoute(r.URL.Path)
	switch rt.kind {
	case kindManifest, kindTags, kindReferrers, kindBlob:
		return publicRepo(rt.name)
	}
	return false
}

// validateNames rejects repository names outside the distribution grammar
// before they reach the handlers, which use them as map keys and file
// names. References and digests are checked by each handler, whose
// answers differ (an unknown manifest is a 404 whatever its name).
func validateNames(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := parseRoute(r.URL.Path)
		switch rt.kind {
		case kindManifest, kindBlob, kindUpload, kindTags, kindReferrers:
			if !validRepo(rt.name) {
				writeError(w, http.StatusBadRequest, codeNameInvalid, "invalid repository name")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// logRequests logs one debug record per request, and sets the API version
// header every answer carries.
func logRequests(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
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

package registry

import (
	"errors"
	"net/http"
)

func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, rt route) {
	d, err := parseDigest(rt.target)
	if err != nil {
		badDigest(w, rt.target, err)
		return
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		r.getBlob(w, req, rt.name, d)
	case http.MethodDelete:
		switch err := r.store.deleteBlob(rt.name, d); {
		case errors.Is(err, errBlobUnknown):
			writeError(w, http.StatusNotFound, codeBlobUnknown, "blob unknown: "+d.String())
		case err != nil:
			r.internalError(w, "deleting blob", err)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	default:
		methodNotAllowed(w, "GET, HEAD, DELETE")
	}
}

// getBlob serves a blob, with range requests (RFC 9110) through
// http.ServeContent.
func (r *Registry) getBlob(w http.ResponseWriter, req *http.Request, repo string, d digest) {
	f, err := r.store.openBlob(repo, d)
	if errors.Is(err, errBlobUnknown) {
		writeError(w, http.StatusNotFound, codeBlobUnknown, "blob unknown: "+d.String())
		return
	}
	if err != nil {
		r.internalError(w, "opening blob", err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		r.internalError(w, "opening blob", err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	http.ServeContent(w, req, "", fi.ModTime(), f)
}

// badDigest answers a digest that does not parse.
func badDigest(w http.ResponseWriter, s string, err error) {
	if errors.Is(err, errDigestUnsupported) {
		writeError(w, http.StatusBadRequest, codeUnsupported, "unsupported digest algorithm (sha256 and sha512 are): "+s)
		return
	}
	writeError(w, http.StatusBadRequest, codeDigestInvalid, "invalid digest: "+s)
}

package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxManifestSize bounds a manifest body; the spec asks registries to
// accept at least 4 MB.
const maxManifestSize = 8 << 20

// The manifest media types the registry accepts.
const (
	mediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

func isIndexType(mt string) bool { return mt == mediaOCIIndex || mt == mediaDockerList }

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// manifestDoc is the union of the image manifest and index fields the
// registry reads.
type manifestDoc struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *descriptor       `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Manifests     []descriptor      `json:"manifests"`
	Subject       *descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// parsedManifest is what the registry keeps of a manifest's content.
type parsedManifest struct {
	mediaType    string
	subject      string
	artifactType string
	annotations  map[string]string
	blobs        []string // config and layers, which must be blobs of the repository
	children     []string // an index's manifests, which must be manifests of the repository
}

func (p *parsedManifest) info(digest, mediaType string, size int64) manifestInfo {
	m := manifestInfo{digest: digest, mediaType: mediaType, size: size, subject: p.subject}
	if p.subject != "" {
		m.artifactType = p.artifactType
		m.annotations = p.annotations
	}
	return m
}

// parseManifest checks a manifest pushed with contentType (parameters
// ignored) and returns what the registry keeps of it. Errors describe the
// problem for a MANIFEST_INVALID answer.
func parseManifest(body []byte, contentType string) (*parsedManifest, error) {
	var doc manifestDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON: %v", err)
	}
	mt := contentType
	if parsed, _, err := mime.ParseMediaType(contentType); err == nil {
		mt = parsed
	}
	if mt == "" {
		mt = doc.MediaType
	}
	if mt == "" {
		mt = mediaOCIManifest
		if doc.Manifests != nil {
			mt = mediaOCIIndex
		}
	}
	if doc.MediaType != "" && doc.MediaType != mt {
		return nil, fmt.Errorf("mediaType %q does not match Content-Type %q", doc.MediaType, mt)
	}
	if doc.SchemaVersion != 2 {
		return nil, fmt.Errorf("schemaVersion must be 2")
	}
	p := &parsedManifest{mediaType: mt, annotations: doc.Annotations}
	switch mt {
	case mediaOCIManifest, mediaDockerManifest:
		if doc.Config == nil {
			return nil, fmt.Errorf("an image manifest needs a config")
		}
		for _, d := range append([]descriptor{*doc.Config}, doc.Layers...) {
			if !isDigest(d.Digest) {
				return nil, fmt.Errorf("invalid digest %q", d.Digest)
			}
			if !distributable(d) {
				continue
			}
			p.blobs = append(p.blobs, d.Digest)
		}
		p.artifactType = doc.ArtifactType
		if p.artifactType == "" {
			p.artifactType = doc.Config.MediaType
		}
	case mediaOCIIndex, mediaDockerList:
		for _, d := range doc.Manifests {
			if !isDigest(d.Digest) {
				return nil, fmt.Errorf("invalid digest %q", d.Digest)
			}
			p.children = append(p.children, d.Digest)
		}
		p.artifactType = doc.ArtifactType
	default:
		return nil, fmt.Errorf("unsupported manifest media type %q", mt)
	}
	if doc.Subject != nil {
		if !isDigest(doc.Subject.Digest) {
			return nil, fmt.Errorf("invalid subject digest %q", doc.Subject.Digest)
		}
		p.subject = doc.Subject.Digest
	}
	return p, nil
}

// distributable reports whether a layer's content is pushed to
// registries: foreign and non-distributable layers are fetched from their
// URLs instead, so the registry does not require them.
func distributable(d descriptor) bool {
	return len(d.URLs) == 0 && !strings.Contains(d.MediaType, "nondistributable") && !strings.Contains(d.MediaType, "foreign")
}

func (r *Registry) serveManifest(w http.ResponseWriter, req *http.Request, rt route) {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		r.getManifest(w, req, rt)
	case http.MethodPut:
		r.putManifest(w, req, rt)
	case http.MethodDelete:
		r.deleteManifest(w, rt)
	default:
		methodNotAllowed(w, "GET, HEAD, PUT, DELETE")
	}
}

func (r *Registry) getManifest(w http.ResponseWriter, req *http.Request, rt route) {
	m, err := r.store.manifest(rt.name, rt.target)
	var body []byte
	if err == nil && req.Method == http.MethodGet {
		body, err = r.store.readManifest(rt.name, m)
	}
	if errors.Is(err, errManifestUnknown) {
		writeError(w, http.StatusNotFound, codeManifestUnknown, "manifest unknown: "+rt.target)
		return
	}
	if err != nil {
		r.internalError(w, "reading manifest", err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", m.mediaType)
	h.Set("Content-Length", strconv.FormatInt(m.size, 10))
	h.Set("Docker-Content-Digest", m.digest)
	h.Set("ETag", `"`+m.digest+`"`)
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, rt route) {
	if !validReference(rt.target) {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, "invalid tag or digest: "+rt.target)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxManifestSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, "reading manifest: "+err.Error())
		return
	}
	if len(body) > maxManifestSize {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid,
			fmt.Sprintf("manifest larger than %d bytes", maxManifestSize))
		return
	}
	if req.ContentLength >= 0 && req.ContentLength != int64(len(body)) {
		writeError(w, http.StatusBadRequest, codeSizeInvalid, "Content-Length does not match the body")
		return
	}
	p, err := parseManifest(body, req.Header.Get("Content-Type"))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, err.Error())
		return
	}
	put := manifestPut{repo: rt.name, body: body, blobs: p.blobs, children: p.children}
	d := digestOf("sha256", body)
	if want, err := parseDigest(rt.target); err == nil {
		if d = digestOf(want.alg, body); d != want {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, "manifest content does not match digest "+rt.target)
			return
		}
	} else {
		put.tag = rt.target
	}
	put.info = p.info(d.String(), p.mediaType, int64(len(body)))
	missing, err := r.store.putManifest(put)
	if err != nil {
		r.internalError(w, "storing manifest", err)
		return
	}
	if len(missing) > 0 {
		errs := make([]apiError, len(missing))
		for i, m := range missing {
			errs[i] = apiError{Code: codeManifestBlobUnknown, Message: "manifest references unknown blob or manifest " + m,
				Detail: map[string]string{"digest": m}}
		}
		writeErrors(w, http.StatusBadRequest, errs...)
		return
	}
	h := w.Header()
	h.Set("Location", "/v2/"+rt.name+"/manifests/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	if p.subject != "" {
		h.Set("OCI-Subject", p.subject)
	}
	w.WriteHeader(http.StatusCreated)
}

func (r *Registry) deleteManifest(w http.ResponseWriter, rt route) {
	err := r.store.deleteManifest(rt.name, rt.target)
	switch {
	case errors.Is(err, errNameUnknown):
		writeError(w, http.StatusNotFound, codeNameUnknown, "repository unknown: "+rt.name)
	case errors.Is(err, errManifestUnknown):
		writeError(w, http.StatusNotFound, codeManifestUnknown, "manifest unknown: "+rt.target)
	case err != nil:
		r.internalError(w, "deleting manifest", err)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// maxPage bounds a page of tags or repositories; a longer list is paged
// with a Link header.
const maxPage = 1000

// page returns the part of the sorted list that the n and last query
// parameters ask for, and the last entry when more follow.
func page(list []string, q url.Values, less func(a, b string) int) (out []string, more bool, err error) {
	n := maxPage
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return nil, false, fmt.Errorf("n must be a non-negative integer")
		}
		n = min(v, maxPage)
	}
	if n == 0 {
		return []string{}, false, nil
	}
	if last := q.Get("last"); last != "" {
		i := 0
		for i < len(list) && less(list[i], last) <= 0 {
			i++
		}
		list = list[i:]
	}
	if len(list) > n {
		return list[:n], true, nil
	}
	return list, false, nil
}

func (r *Registry) serveTags(w http.ResponseWriter, req *http.Request, rt route) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	tags, err := r.store.tags(rt.name)
	if err != nil {
		writeError(w, http.StatusNotFound, codeNameUnknown, "repository unknown: "+rt.name)
		return
	}
	out, more, err := page(tags, req.URL.Query(), compareLexical)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeUnsupported, err.Error())
		return
	}
	if more {
		setNextLink(w, "/v2/"+rt.name+"/tags/list", len(out), out[len(out)-1])
	}
	writeJSON(w, req, "application/json", map[string]any{"name": rt.name, "tags": out})
}

func (r *Registry) serveCatalog(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	out, more, err := page(r.store.repositories(), req.URL.Query(), strings.Compare)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeUnsupported, err.Error())
		return
	}
	if more {
		setNextLink(w, "/v2/_catalog", len(out), out[len(out)-1])
	}
	writeJSON(w, req, "application/json", map[string]any{"repositories": out})
}

func setNextLink(w http.ResponseWriter, path string, n int, last string) {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	w.Header().Set("Link", "<"+path+"?"+q.Encode()+`>; rel="next"`)
}

// serveReferrers answers the referrers API: an image index of the
// repository's manifests whose subject is the digest, never a 404.
func (r *Registry) serveReferrers(w http.ResponseWriter, req *http.Request, rt route) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	if _, err := parseDigest(rt.target); err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, "invalid digest: "+rt.target)
		return
	}
	filter := req.URL.Query().Get("artifactType")
	manifests := []descriptor{}
	for _, m := range r.store.referrers(rt.name, rt.target) {
		if filter != "" && m.artifactType != filter {
			continue
		}
		manifests = append(manifests, descriptor{MediaType: m.mediaType, Digest: m.digest, Size: m.size,
			ArtifactType: m.artifactType, Annotations: m.annotations})
	}
	if filter != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	writeJSON(w, req, mediaOCIIndex, map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaOCIIndex,
		"manifests":     manifests,
	})
}

func writeJSON(w http.ResponseWriter, req *http.Request, contentType string, v any) {
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(v)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

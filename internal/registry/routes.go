package registry

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
)

// kind is what a /v2/ request addresses.
type kind int

const (
	kindOther    kind = iota // /v2/ (the API version check) or an unknown path
	kindCatalog              // /v2/_catalog
	kindManifest             // /v2/<name>/manifests/<reference>
	kindBlob                 // /v2/<name>/blobs/<digest>
	kindUpload               // /v2/<name>/blobs/uploads/<id>
	kindTags                 // /v2/<name>/tags/list
)

// route is a parsed /v2/ request path.
type route struct {
	kind   kind
	name   string // repository; empty for kindOther and kindCatalog
	target string // reference, digest or upload id
}

// parseRoute classifies a request path exactly as go-containerregistry's
// registry dispatches it (blobs, then manifests, tags and catalog), so that
// the checks made here apply to the handler that will serve the request.
func parseRoute(path string) route {
	elem := strings.Split(path, "/")[1:]
	// Blobs: the inner handler ignores one trailing slash.
	be := elem
	if len(be) > 0 && be[len(be)-1] == "" {
		be = be[:len(be)-1]
	}
	if n := len(be); n >= 3 {
		if be[n-2] == "blobs" {
			return route{kind: kindBlob, name: strings.Join(be[1:n-2], "/"), target: be[n-1]}
		}
		if be[n-3] == "blobs" && be[n-2] == "uploads" {
			return route{kind: kindUpload, name: strings.Join(be[1:n-3], "/"), target: be[n-1]}
		}
	}
	n := len(elem)
	if n >= 4 && elem[n-2] == "manifests" {
		return route{kind: kindManifest, name: strings.Join(elem[1:n-2], "/"), target: elem[n-1]}
	}
	if n >= 4 && elem[n-2] == "tags" {
		return route{kind: kindTags, name: strings.Join(elem[1:n-2], "/"), target: elem[n-1]}
	}
	if n >= 2 && elem[n-1] == "_catalog" {
		return route{kind: kindCatalog}
	}
	return route{kind: kindOther}
}

var (
	// repoRE is the distribution spec's repository name grammar.
	repoRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	// digestRE accepts the sha256 digests the inner handler can store.
	digestRE = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

func validRepo(name string) bool { return len(name) <= 255 && repoRE.MatchString(name) }

func validReference(ref string) bool { return tagRE.MatchString(ref) || digestRE.MatchString(ref) }

func isDigest(ref string) bool { return digestRE.MatchString(ref) }

// publicRepo reports whether anonymous pulls from repo are allowed.
func publicRepo(repo string) bool { return strings.HasPrefix(repo, "library/") }

// writeError writes a distribution-spec error response.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": message}},
	})
}

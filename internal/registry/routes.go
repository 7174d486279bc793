package registry

import (
	"regexp"
	"strings"
)

// kind is what a /v2/ request addresses.
type kind int

const (
	kindOther     kind = iota // a path the API does not define
	kindBase                  // /v2/ (the API version check)
	kindCatalog               // /v2/_catalog
	kindManifest              // /v2/<name>/manifests/<reference>
	kindBlob                  // /v2/<name>/blobs/<digest>
	kindUpload                // /v2/<name>/blobs/uploads/ and /v2/<name>/blobs/uploads/<id>
	kindTags                  // /v2/<name>/tags/list
	kindReferrers             // /v2/<name>/referrers/<digest>
)

// route is a parsed /v2/ request path.
type route struct {
	kind   kind
	name   string // repository; empty for kindOther, kindBase and kindCatalog
	target string // reference, digest or upload id (empty when starting an upload)
}

// parseRoute classifies a request path. Repository names contain slashes,
// so a path is read from its end: the last elements say what is addressed
// and everything between /v2/ and them is the name.
func parseRoute(path string) route {
	if path == "/v2/" || path == "/v2" {
		return route{kind: kindBase}
	}
	if path == "/v2/_catalog" {
		return route{kind: kindCatalog}
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return route{kind: kindOther}
	}
	elem := strings.Split(rest, "/")
	n := len(elem)
	name := func(k int) string { return strings.Join(elem[:n-k], "/") }
	switch {
	case n >= 3 && elem[n-3] == "blobs" && elem[n-2] == "uploads":
		return route{kind: kindUpload, name: name(3), target: elem[n-1]}
	case n >= 3 && elem[n-2] == "blobs" && elem[n-1] == "uploads": // POST without the trailing slash
		return route{kind: kindUpload, name: name(2)}
	case n >= 3 && elem[n-2] == "tags" && elem[n-1] == "list":
		return route{kind: kindTags, name: name(2)}
	case n >= 3 && elem[n-2] == "blobs":
		return route{kind: kindBlob, name: name(2), target: elem[n-1]}
	case n >= 3 && elem[n-2] == "manifests":
		return route{kind: kindManifest, name: name(2), target: elem[n-1]}
	case n >= 3 && elem[n-2] == "referrers":
		return route{kind: kindReferrers, name: name(2), target: elem[n-1]}
	}
	return route{kind: kindOther}
}

var (
	// repoRE is the distribution spec's repository name grammar.
	repoRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$`)
	// tagRE is the spec's tag grammar (at most 128 characters).
	tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

func validRepo(name string) bool { return len(name) <= 255 && repoRE.MatchString(name) }

func validTag(ref string) bool { return tagRE.MatchString(ref) }

func validReference(ref string) bool { return validTag(ref) || isDigest(ref) }

// publicRepo reports whether anonymous pulls from repo are allowed.
func publicRepo(repo string) bool { return strings.HasPrefix(repo, "library/") }

package registry

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
)

// Grant is what a token handed to one client (a build) may do: pull from
// some repositories and push to one. A build of project p gets
// Grant{Pull: []string{"library/"}, Push: p}: it pulls base images and its
// own project's images, and no other project's.
type Grant struct {
	// Pull lists the repositories it may pull from: exact names, or
	// prefixes ending in "/". Push is pullable too.
	Pull []string
	// Push is the one repository it may push to. If empty, none.
	Push string
}

func (g Grant) pulls(repo string) bool {
	if repo == "" {
		return false
	}
	if repo == g.Push {
		return true
	}
	for _, p := range g.Pull {
		if repo == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(repo, p)) {
			return true
		}
	}
	return false
}

// grants holds the live tokens.
type grants struct {
	mu sync.RWMutex
	m  map[string]Grant
}

// Grant returns a token (the password of HTTP basic auth, any user name)
// that can do what g allows until revoke is called.
func (r *Registry) Grant(g Grant) (token string, revoke func()) {
	var b [24]byte
	rand.Read(b[:])
	token = "swg_" + hex.EncodeToString(b[:])
	r.grants.mu.Lock()
	r.grants.m[token] = g
	r.grants.mu.Unlock()
	return token, func() {
		r.grants.mu.Lock()
		delete(r.grants.m, token)
		r.grants.mu.Unlock()
	}
}

// lookup returns the grant r's basic-auth password names, if any.
func (gs *grants) lookup(r *http.Request) (Grant, bool) {
	_, pw, ok := r.BasicAuth()
	if !ok || !strings.HasPrefix(pw, "swg_") {
		return Grant{}, false
	}
	gs.mu.RLock()
	defer gs.mu.RUnlock()
	for tok, g := range gs.m {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(pw)) == 1 {
			return g, true
		}
	}
	return Grant{}, false
}

// allows reports whether g lets r through. Blobs are stored once for all
// repositories, so a blob is pulled through a repository only if one of
// that repository's manifests references it (refs); a HEAD in the pushed
// repository, which a client sends to learn whether to upload, is the
// exception (it reveals that a digest exists, not its content).
func (g Grant) allows(r *http.Request, refs *repoRefs) bool {
	rt := parseRoute(r.URL.Path)
	if rt.kind == kindBlob && rt.target == "uploads" { // POST .../blobs/uploads/ starts one
		rt.kind = kindUpload
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch rt.kind {
	case kindOther:
		return read // the API version check
	case kindManifest, kindTags:
		if read {
			return g.pulls(rt.name)
		}
		return r.Method == http.MethodPut && rt.kind == kindManifest && rt.name == g.Push
	case kindBlob:
		if !read || !g.pulls(rt.name) {
			return false
		}
		return refs.has(rt.name, rt.target) || (r.Method == http.MethodHead && rt.name == g.Push)
	case kindUpload:
		if rt.name != g.Push || g.Push == "" {
			return false
		}
		if from := r.URL.Query().Get("from"); from != "" && !g.pulls(from) {
			return false // a cross-repository mount from elsewhere
		}
		return true
	}
	return false
}

// repoRefs records, per repository, the blobs its image manifests
// reference.
type repoRefs struct {
	mu sync.RWMutex
	m  map[string]map[string]struct{}
}

func newRepoRefs() *repoRefs { return &repoRefs{m: map[string]map[string]struct{}{}} }

func (rr *repoRefs) add(repo string, digests ...string) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	s := rr.m[repo]
	if s == nil {
		s = map[string]struct{}{}
		rr.m[repo] = s
	}
	for _, d := range digests {
		s[d] = struct{}{}
	}
}

func (rr *repoRefs) has(repo, digest string) bool {
	rr.mu.RLock()
	defer rr.mu.RUnlock()
	_, ok := rr.m[repo][digest]
	return ok
}

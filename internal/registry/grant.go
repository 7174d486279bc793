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

// allows reports whether g lets r through: reads (manifests, tags,
// referrers, blobs) of the repositories it pulls, and pushes (uploads,
// manifest PUTs) to the one it pushes to. It never deletes. A blob is read
// through a repository only if it is in that repository (the store's rule),
// and a mount's from is checked against Pull by the upload handler.
func (g Grant) allows(r *http.Request) bool {
	rt := parseRoute(r.URL.Path)
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch rt.kind {
	case kindBase:
		return read
	case kindManifest:
		if read {
			return g.pulls(rt.name)
		}
		return r.Method == http.MethodPut && g.Push != "" && rt.name == g.Push
	case kindTags, kindReferrers, kindBlob:
		return read && g.pulls(rt.name)
	case kindUpload:
		return g.Push != "" && rt.name == g.Push
	}
	return false
}

package registry_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/internal/registry"
)

// A build's grant pulls base images and its own project's images, pushes
// only to its own repository, and can't read another project's image by
// tag, by digest, or through its own repository by the other image's blob
// digests.
func TestGrantScopesABuild(t *testing.T) {
	reg, host := start(t, t.TempDir(), tokenAuth)
	admin := remote.WithAuth(&authn.Basic{Username: "slipway", Password: token})
	victim, base := randomImage(t), randomImage(t)
	if err := remote.Write(ref(t, host, "victim:v1"), victim, admin); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(t, host, "library/debian:12"), base, admin); err != nil {
		t.Fatal(err)
	}
	tok, revoke := reg.Grant(registry.Grant{Pull: []string{"library/"}, Push: "thief"})
	build := remote.WithAuth(&authn.Basic{Username: "slipway", Password: tok})

	if _, err := remote.Image(ref(t, host, "library/debian:12"), build); err != nil {
		t.Errorf("a base image: %v", err)
	}
	if _, err := remote.Image(ref(t, host, "victim:v1"), build); err == nil {
		t.Error("the grant pulled another project's image by tag")
	}
	vd := digest(t, victim)
	if _, err := remote.Image(ref(t, host, "victim@"+vd.String()), build); err == nil {
		t.Error("the grant pulled another project's image by digest")
	}
	layers, _ := victim.Layers()
	ld := digest(t, layers[0])
	if _, err := pullLayer(ref(t, host, "thief@"+ld.String()).Context().Digest(ld.String()), build); err == nil {
		t.Error("the grant read another project's layer through its own repository")
	}
	if err := remote.Write(ref(t, host, "victim:v2"), randomImage(t), build); err == nil {
		t.Error("the grant pushed to another project's repository")
	}
	own := randomImage(t)
	if err := remote.Write(ref(t, host, "thief:d1"), own, build); err != nil {
		t.Fatalf("pushing its own image: %v", err)
	}
	if got, err := pullAll(t, ref(t, host, "thief:d1"), build); err != nil || got != digest(t, own) {
		t.Errorf("pulled back %s, %v; want %s", got, err, digest(t, own))
	}

	revoke()
	if _, err := remote.Image(ref(t, host, "thief:d1"), build); err == nil {
		t.Error("a revoked grant still pulls")
	}
	// The grant changes nothing for other credentials.
	req, _ := http.NewRequest("GET", "http://"+host+"/v2/victim/manifests/v1", nil)
	req.SetBasicAuth("slipway", token)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("the admin token: %v %v", resp, err)
	}
}

// pullLayer reads a whole blob.
func pullLayer(d name.Digest, opts ...remote.Option) (int64, error) {
	l, err := remote.Layer(d, opts...)
	if err != nil {
		return 0, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(io.Discard, rc)
}

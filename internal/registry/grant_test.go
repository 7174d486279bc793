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

// The grant's scope holds on every endpoint: referrers, tag lists, mounts
// (whose from must be pullable too), manifests naming other repositories'
// blobs, deletes.
func TestGrantScopesEveryEndpoint(t *testing.T) {
	reg, admin := newRegistry(t, registry.Config{Authorize: tokenAuth})
	admin.user = token
	_, victim := admin.pushImage("victim", "v1", nil)
	victimBlob := admin.pushBlob("victim", []byte("victim's layer"))
	_, base := admin.pushImage("library/debian", "12", nil)
	baseBlob := admin.pushBlob("library/debian", []byte("base layer"))
	tok, revoke := reg.Grant(registry.Grant{Pull: []string{"library/"}, Push: "thief"})
	defer revoke()
	build := admin
	build.user = tok
	anon := admin
	anon.user = ""

	cfg := []byte(`{}`)
	cd := build.pushBlob("thief", cfg)
	stolen := imageManifest(cd, len(cfg), []string{victimBlob}, nil)

	for _, tc := range []struct {
		name   string
		c      client
		method string
		path   string
		body   []byte
		want   want
	}{
		{"referrers of another project", build, "GET", "/v2/victim/referrers/" + victim, nil, want{code: 403, errCode: "DENIED"}},
		{"referrers of a base image", build, "GET", "/v2/library/debian/referrers/" + base, nil, want{code: 200}},
		{"tags of another project", build, "GET", "/v2/victim/tags/list", nil, want{code: 403, errCode: "DENIED"}},
		{"catalog", build, "GET", "/v2/_catalog", nil, want{code: 403, errCode: "DENIED"}},
		{"mount from another project opens an upload instead", build, "POST", "/v2/thief/blobs/uploads/?mount=" + victimBlob + "&from=victim", nil, want{code: 202}},
		{"nor without from", build, "POST", "/v2/thief/blobs/uploads/?mount=" + victimBlob, nil, want{code: 202}},
		{"so the blob is not there", build, "HEAD", "/v2/thief/blobs/" + victimBlob, nil, want{code: 404}},
		{"a base image's blob is in every repository", build, "HEAD", "/v2/thief/blobs/" + baseBlob, nil, want{code: 200}},
		{"a manifest over a base image's layer", build, "PUT", "/v2/thief/manifests/v0", imageManifest(cd, len(cfg), []string{baseBlob}, nil), want{code: 201}},
		{"mount from a base image", build, "POST", "/v2/thief/blobs/uploads/?mount=" + baseBlob + "&from=library/debian", nil, want{code: 201}},
		{"a manifest naming another project's layer", build, "PUT", "/v2/thief/manifests/v1", stolen, want{code: 400, errCode: "MANIFEST_BLOB_UNKNOWN"}},
		{"upload to another project", build, "POST", "/v2/victim/blobs/uploads/", nil, want{code: 403, errCode: "DENIED"}},
		{"delete a manifest", build, "DELETE", "/v2/library/debian/manifests/12", nil, want{code: 403, errCode: "DENIED"}},
		{"delete a blob", build, "DELETE", "/v2/thief/blobs/" + cd, nil, want{code: 403, errCode: "DENIED"}},
		{"anonymous referrers of a base image", anon, "GET", "/v2/library/debian/referrers/" + base, nil, want{code: 200}},
		{"anonymous referrers of a project", anon, "GET", "/v2/victim/referrers/" + victim, nil,
			want{code: 401, errCode: "UNAUTHORIZED", headers: map[string]string{"WWW-Authenticate": `Basic realm="slipway"`}}},
		{"anonymous mount into library/", anon, "POST", "/v2/library/x/blobs/uploads/?mount=" + baseBlob + "&from=library/debian", nil, want{code: 401}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h []string
			if tc.method == "PUT" {
				h = []string{"Content-Type", "application/vnd.oci.image.manifest.v1+json"}
			}
			tc.want.check(t, tc.name, tc.c.do(tc.method, tc.path, tc.body, h...))
		})
	}
}

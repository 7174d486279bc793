package registry_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/internal/registry"
)

// onBase returns base with one random layer more, as a build makes it.
func onBase(t *testing.T, base v1.Image) v1.Image {
	t.Helper()
	l, err := random.Layer(2048, "application/vnd.oci.image.layer.v1.tar+gzip")
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func blobFile(dir string, h v1.Hash) string { return filepath.Join(dir, "blobs", h.Algorithm, h.Hex) }

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func TestCollectGarbageKeepsWhatIsKept(t *testing.T) {
	dir := t.TempDir()
	reg, host := start(t, dir, tokenAuth)
	ctx := context.Background()
	auth := remote.WithAuth(&authn.Basic{Username: "x", Password: token})

	base := randomImage(t)
	if err := reg.Import(ctx, "library/debian:12", base); err != nil {
		t.Fatal(err)
	}
	imgs := map[string]v1.Image{}
	for _, tag := range []string{"running", "rollback", "retired"} {
		imgs[tag] = onBase(t, base)
		if err := remote.Write(ref(t, host, "web:"+tag), imgs[tag], auth); err != nil {
			t.Fatal(err)
		}
	}
	// An index whose image only it names: kept through the index.
	idxImg := onBase(t, base)
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: idxImg})
	if err := remote.WriteIndex(ref(t, host, "web:multi"), idx, auth); err != nil {
		t.Fatal(err)
	}
	top := func(img v1.Image) v1.Hash {
		ls, _ := img.Layers()
		return digest(t, ls[len(ls)-1])
	}
	kept := map[string]bool{
		digest(t, imgs["running"]).String():  true,
		digest(t, imgs["rollback"]).String(): true,
		digest(t, idx).String():              true,
	}
	keep := func(repo, d string) bool { return repo == "web" && kept[d] }

	// Everything was written just now: within the grace, nothing goes.
	st, err := reg.CollectGarbage(keep, time.Now().Add(-time.Hour))
	if err != nil || st != (registry.GCStats{}) {
		t.Fatalf("collect within the grace period = %+v, %v; want nothing deleted", st, err)
	}

	// A repository skipped (keep(repo, "")) is left whole.
	skip := func(repo, d string) bool { return d == "" }
	if st, err := reg.CollectGarbage(skip, time.Now().Add(time.Minute)); err != nil || st != (registry.GCStats{}) {
		t.Fatalf("collect with the repository skipped = %+v, %v; want nothing deleted", st, err)
	}

	st, err = reg.CollectGarbage(keep, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if st.Manifests != 1 || st.Blobs != 2 || st.Files != 2 || st.Bytes <= 0 {
		t.Errorf("stats = %+v, want the retired manifest and its config and top layer", st)
	}
	if exists(blobFile(dir, top(imgs["retired"]))) {
		t.Error("the retired image's own layer is still on disk")
	}
	if _, err := pullAll(t, ref(t, host, "web:retired"), auth); err == nil {
		t.Error("the retired image still pulls")
	}
	for _, tag := range []string{"running", "rollback", "multi"} {
		if _, err := pullAll(t, ref(t, host, "web:"+tag), auth); err != nil {
			t.Errorf("kept image %s: %v", tag, err)
		}
	}
	if _, err := pullAll(t, ref(t, host, "web@"+digest(t, idxImg).String()), auth); err != nil {
		t.Errorf("the image of a kept index: %v", err)
	}
	if _, err := pullAll(t, ref(t, host, "library/debian:12")); err != nil {
		t.Errorf("base image: %v", err)
	}

	// With nothing kept, the project's repository empties, but base
	// images stay, even their layers that every project image shares.
	if _, err := reg.CollectGarbage(func(string, string) bool { return false }, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := pullAll(t, ref(t, host, "web:running"), auth); err == nil {
		t.Error("an image no one keeps still pulls")
	}
	if _, err := pullAll(t, ref(t, host, "library/debian:12")); err != nil {
		t.Errorf("base image after collecting everything: %v", err)
	}
	if exists(filepath.Join(dir, "manifests", "web")) {
		t.Error("the emptied repository's directory is left")
	}

	// What is left after a restart is what the collection left.
	reg2, host2 := start(t, dir, tokenAuth)
	_ = reg2
	if _, err := pullAll(t, ref(t, host2, "web:rollback"), auth); err == nil || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") && !strings.Contains(err.Error(), "NAME_UNKNOWN") {
		t.Errorf("after restart, collected image: %v", err)
	}
}

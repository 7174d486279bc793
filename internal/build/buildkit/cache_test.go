package buildkit

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/slipwayhq/slipway/internal/build"
)

// TestCacheMountsAreNamespaced: a cache mount id names the same cache only
// within one Request.CacheNamespace, for a Dockerfile's own ids and the
// generated plans' alike, so one project's build can't leave something in
// a cache for another's to run; and a "# syntax=" line can't hand the
// build to a frontend that would pick its own cache ids.
func TestCacheMountsAreNamespaced(t *testing.T) {
	_, host := sharedEnv(t)
	base := seedDebian(t, host)
	b := newBuilder(t, map[string]Credential{host: {Secret: testSecret}})
	nonce := time.Now().Format("150405.000000000")
	run := func(ns, tag, step string) string {
		t.Helper()
		df := "# syntax=registry.invalid/evil/frontend:1\nFROM " + base + "\n" +
			"RUN --mount=type=cache,id=slipway-pip,target=/cache " + step + " # " + nonce + " " + tag + "\n"
		rec := &logRecorder{}
		res, err := b.Build(buildCtx(t), build.Request{ContextDir: source(t, map[string]string{"Dockerfile": df}),
			Image: host + "/apps/cachens:" + tag, Log: rec.log, CacheNamespace: ns})
		if err != nil {
			t.Fatalf("build %s: %v\n%s", tag, err, rec.text())
		}
		img, err := crane.Pull(res.Image, crane.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		seen, _ := fileInImage(t, img, "seen")
		return strings.TrimSpace(seen)
	}
	poison := "poison-" + nonce
	step := "(cat /cache/marker 2>/dev/null || true) > /seen && echo " + poison + " > /cache/marker"
	if got := run("slipway-project-a", "a1", step); got != "" {
		t.Fatalf("project a's first build found %q in a fresh cache", got)
	}
	if got := run("slipway-project-b", "b1", step); got != "" {
		t.Errorf("project b's build found %q, which project a's build left in the cache of the same id", got)
	}
	if got := run("slipway-project-a", "a2", step); got != poison {
		t.Errorf("project a's second build found %q in its cache, want %q", got, poison)
	}
}

package deploy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipwayhq/slipway/internal/registry"
	"github.com/slipwayhq/slipway/internal/runtime"
	"github.com/slipwayhq/slipway/internal/store"
)

// releases records the images the controller releases.
type releases struct {
	runtime.Driver
	mu   sync.Mutex
	list []string
}

func (r *releases) RemoveImage(digest string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, digest)
	return nil
}

func TestCollectKeepsRunningAndRollbackImages(t *testing.T) {
	ctx := context.Background()
	regDir := t.TempDir()
	reg, err := registry.New(registry.Config{Dir: regDir})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	pull := func(ref string) error {
		r, err := name.ParseReference(host+"/"+ref, name.Insecure)
		if err != nil {
			return err
		}
		img, err := remote.Image(r)
		if err != nil {
			return err
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				return err
			}
			rc.Close()
		}
		return nil
	}

	e := newEnv(t)
	e.ctl.Close()
	rel := &releases{}
	e.wrap = func(d runtime.Driver) runtime.Driver { rel.Driver = d; return rel }
	e.retention = Retention{
		StoppedFor: time.Nanosecond, Grace: time.Nanosecond,
		CollectImages: func(keep func(repo, digest string) bool, before time.Time) (int, int64, error) {
			st, err := reg.CollectGarbage(keep, before)
			return st.Manifests, st.Bytes, err
		},
	}
	e.start()

	// Three deployments: the oldest is retired, the middle one is a
	// rollback target, the newest is current.
	var ds []store.Deployment
	for range 3 {
		ds = append(ds, e.waitFor(e.deploy().ID, settled))
	}
	retired, rollback, running := ds[0], ds[1], ds[2]
	if _, err := e.ctl.Stop(ctx, retired.ID); err != nil {
		t.Fatal(err)
	}
	// Each has its own image in the registry, on a shared base image.
	base, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Import(ctx, "library/debian:12", base); err != nil {
		t.Fatal(err)
	}
	top := map[string]v1.Hash{}
	for _, d := range ds {
		l, _ := random.Layer(2048, "application/vnd.oci.image.layer.v1.tar+gzip")
		img, _ := mutate.AppendLayers(base, l)
		if err := reg.Import(ctx, "web:"+d.ID, img); err != nil {
			t.Fatal(err)
		}
		dg, _ := img.Digest()
		top[d.ID], _ = l.Digest()
		image, digest := "127.0.0.1:7300/web:"+d.ID, dg.String()
		if _, err := e.store.UpdateDeployment(ctx, d.ID, "", store.DeploymentPatch{Image: &image, ImageDigest: &digest}); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(e.data, "logs", d.ID), 0o700)
		os.WriteFile(filepath.Join(e.data, "logs", d.ID, "i.stdout"), []byte("hello\n"), 0o600)
		e.store.AppendLogs(ctx, []store.LogLine{{DeploymentID: d.ID, Kind: store.LogRuntime, Time: time.Now(), Text: "hello"}})
	}
	retiredDigest := func() string { d, _ := e.store.GetDeployment(ctx, retired.ID); return d.ImageDigest }()
	time.Sleep(10 * time.Millisecond) // past the grace

	f, err := e.ctl.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.Deployments != 1 || f.Sources != 1 || f.Manifests != 1 || f.Images != 1 || f.Bytes <= 0 {
		t.Errorf("freed %+v; want the retired deployment's source, logs, image and manifest", f)
	}
	if err := pull("web:" + retired.ID); err == nil {
		t.Error("the retired deployment's image still pulls")
	}
	if _, err := os.Stat(filepath.Join(regDir, "blobs", "sha256", top[retired.ID].Hex)); err == nil {
		t.Error("the retired image's own layer is still on disk")
	}
	for _, d := range []store.Deployment{rollback, running} {
		if err := pull("web:" + d.ID); err != nil {
			t.Errorf("kept image of %s: %v", d.ID, err)
		}
		if _, err := os.Stat(e.ctl.sourcePath(d.ID)); err != nil {
			t.Errorf("kept deployment's source: %v", err)
		}
		if !e.logHas(d.ID, store.LogRuntime, "hello") {
			t.Errorf("kept deployment %s lost its runtime log", d.ID)
		}
	}
	if err := pull("library/debian:12"); err != nil {
		t.Errorf("base image: %v", err)
	}
	if _, err := os.Stat(e.ctl.sourcePath(retired.ID)); err == nil {
		t.Error("the retired deployment's source is kept")
	}
	if _, err := os.Stat(filepath.Join(e.data, "logs", retired.ID)); err == nil {
		t.Error("the retired deployment's log files are kept")
	}
	if e.logHas(retired.ID, store.LogRuntime, "hello") {
		t.Error("the retired deployment's runtime log is kept")
	}
	if !e.logHas(retired.ID, store.LogBuild, "queued") {
		t.Error("the retired deployment's build log was deleted")
	}
	rel.mu.Lock()
	if len(rel.list) != 1 || rel.list[0] != retiredDigest {
		t.Errorf("released unpacked images %v, want only %s", rel.list, retiredDigest)
	}
	rel.mu.Unlock()
	if code, _ := e.get(running.ID + ".slipway.localhost"); code != http.StatusOK {
		t.Errorf("the running deployment answers %d after a collection", code)
	}
	if _, err := e.ctl.Redeploy(ctx, retired.ID, false); err == nil {
		t.Error("a pruned deployment was redeployed without its source")
	}

	// A second collection finds nothing more.
	if f, err := e.ctl.Collect(ctx); err != nil || f.Deployments != 0 || f.Manifests != 0 {
		t.Errorf("second collection: %+v, %v", f, err)
	}
}

func TestCollectAppliesProjectLogRetention(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	d := e.waitFor(e.deploy().ID, settled)
	old := time.Now().Add(-2 * time.Hour)
	e.store.AppendLogs(ctx, []store.LogLine{
		{DeploymentID: d.ID, Kind: store.LogRuntime, Time: old, Text: "two hours ago"},
		{DeploymentID: d.ID, Kind: store.LogRuntime, Time: time.Now(), Text: "just now"},
	})
	// The default (7 days) keeps both.
	if _, err := e.ctl.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if !e.logHas(d.ID, store.LogRuntime, "two hours ago") {
		t.Fatal("the default retention dropped a line two hours old")
	}
	p, _ := e.store.GetProject(ctx, "web")
	p.Settings.LogMaxAge = "1h"
	if err := e.store.UpdateProjectSettings(ctx, p.ID, p.Settings); err != nil {
		t.Fatal(err)
	}
	f, err := e.ctl.Collect(ctx)
	if err != nil || f.LogLines != 1 {
		t.Fatalf("collect = %+v, %v; want one line deleted", f, err)
	}
	if e.logHas(d.ID, store.LogRuntime, "two hours ago") || !e.logHas(d.ID, store.LogRuntime, "just now") {
		t.Error("logMaxAge 1h: want only the line of just now kept")
	}
}

func TestLowDiskRefusesBuilds(t *testing.T) {
	e := newEnv(t)
	e.ctl.Close()
	var free atomic.Int64
	free.Store(10 << 30)
	e.retention = Retention{MinFreeDisk: 2 << 30, FreeDisk: func(dir string) (int64, error) {
		if dir != e.data {
			t.Errorf("free space asked of %s, want the data directory", dir)
		}
		return free.Load(), nil
	}}
	e.start()
	first := e.waitFor(e.deploy().ID, settled)
	if first.Status != string(Running) {
		t.Fatalf("with space enough: %s %s", first.Status, first.FailureReason)
	}
	free.Store(1536 << 20)
	d := e.waitFor(e.deploy().ID, settled)
	if d.Status != string(Failed) || !strings.Contains(d.FailureReason, "1.5 GiB free") || !strings.Contains(d.FailureReason, "minimum of 2 GiB") {
		t.Errorf("with 1.5 GiB free: %s %q; want FAILED naming the free space and the minimum", d.Status, d.FailureReason)
	}
	if code, _ := e.get("web.slipway.localhost"); code != http.StatusOK {
		t.Errorf("the running app answers %d while disk is short", code)
	}
	if e.builder.Builds() != 1 {
		t.Errorf("%d builds ran; want the refused one not built", e.builder.Builds())
	}
	free.Store(3 << 30)
	if d := e.waitFor(e.deploy().ID, settled); d.Status != string(Running) {
		t.Errorf("with space again: %s %s", d.Status, d.FailureReason)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 2 << 30: "2 GiB", 1536 << 20: "1.5 GiB", 100 << 20: "100 MiB", 1 << 40: "1 TiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCollectRemovesCopiedLogFilesOfGoneInstances(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	d := e.waitFor(e.deploy().ID, settled)
	dir := filepath.Join(e.data, "logs", d.ID)
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// An instance that went idle, copied whole; one whose stderr was not
	// copied whole yet; and the running one's files stay in any case.
	copied := store.Instance{DeploymentID: d.ID, Driver: "fake", Status: "idle",
		StdoutPath: file("a.stdout", "hello\n"), StderrPath: file("a.stderr", ""), StdoutOffset: 6}
	partial := store.Instance{DeploymentID: d.ID, Driver: "fake", Status: "exited",
		StdoutPath: file("b.stdout", "x\n"), StderrPath: file("b.stderr", "oops\n"), StdoutOffset: 2, StderrOffset: 1}
	for _, in := range []store.Instance{copied, partial} {
		if _, err := e.store.CreateInstance(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.ctl.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{copied.StdoutPath: false, copied.StderrPath: false,
		partial.StdoutPath: false, partial.StderrPath: true} {
		if _, err := os.Stat(path); (err == nil) != want {
			t.Errorf("%s: kept = %t, want %t", filepath.Base(path), err == nil, want)
		}
	}
	if code, _ := e.get(d.ID + ".slipway.localhost"); code != http.StatusOK {
		t.Errorf("the deployment answers %d after its old files went", code)
	}
}

// Package buildkit implements build.Builder with BuildKit, and supervises
// the buildkitd that Slipway runs when no BUILDKIT_HOST is given.
//
// A Builder solves a Dockerfile with BuildKit's built-in Dockerfile frontend
// and pushes the image to a registry (the embedded one, over plain HTTP),
// streaming BuildKit's progress as plain, timestamped lines like
// `buildctl --progress=plain`. A Daemon starts buildkitd with a generated
// buildkitd.toml (plain-HTTP registries, docker.io mirrors), waits until it
// answers, restarts it with backoff when it exits and stops it on Close.
package buildkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/tonistiigi/fsutil"

	"github.com/slipwayhq/slipway/internal/build"
)

// Config configures a Builder. Its zero value works.
type Config struct {
	// Credentials maps a registry host ("127.0.0.1:7300") to what BuildKit
	// presents to it when pushing or pulling. If nil, BuildKit connects to
	// every registry anonymously.
	Credentials map[string]Credential
}

// Builder builds Dockerfiles with a BuildKit daemon and pushes the result.
// It is safe for concurrent use.
type Builder struct {
	c    *bkclient.Client
	auth *authProvider
}

// New returns a Builder that talks to the buildkitd at addr (for example
// Daemon.Addr(), or BUILDKIT_HOST such as "unix:///run/buildkit/buildkitd.sock"
// or "tcp://host:1234"). It does not connect until the first build.
func New(addr string, cfg Config) (*Builder, error) {
	if addr == "" {
		return nil, errors.New("buildkit address is empty")
	}
	c, err := bkclient.New(context.Background(), addr)
	if err != nil {
		return nil, fmt.Errorf("buildkit client for %s: %w", addr, err)
	}
	creds := make(map[string]Credential, len(cfg.Credentials))
	for h, c := range cfg.Credentials {
		creds[h] = c
	}
	return &Builder{c: c, auth: &authProvider{creds: creds}}, nil
}

// Close releases the connection to buildkitd.
func (b *Builder) Close() error { return b.c.Close() }

// Build builds req.Dockerfile in req.ContextDir and pushes the image to
// req.Image. Errors caused by the Dockerfile or the source are *build.Error.
func (b *Builder) Build(ctx context.Context, req build.Request) (build.Result, error) {
	dockerfile := req.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if !filepath.IsLocal(dockerfile) {
		return build.Result{}, &build.Error{Message: fmt.Sprintf("Dockerfile path %q is outside the source tree", dockerfile)}
	}
	if req.Image == "" {
		return build.Result{}, errors.New("build request has no image reference")
	}
	repo, host := repository(req.Image)
	if st, err := os.Stat(req.ContextDir); err != nil || !st.IsDir() {
		return build.Result{}, fmt.Errorf("build context %s is not a directory", req.ContextDir)
	}
	dfPath := filepath.Join(req.ContextDir, dockerfile)
	if req.DockerfileContent != nil {
		// A generated Dockerfile lives outside the source tree.
		dir, err := os.MkdirTemp("", "slipway-dockerfile-")
		if err != nil {
			return build.Result{}, err
		}
		defer os.RemoveAll(dir)
		dfPath = filepath.Join(dir, "Dockerfile")
		if err := os.WriteFile(dfPath, req.DockerfileContent, 0o644); err != nil {
			return build.Result{}, err
		}
	}
	if st, err := os.Stat(dfPath); err != nil || st.IsDir() {
		return build.Result{}, &build.Error{Message: fmt.Sprintf("Dockerfile %q not found in the source", dockerfile)}
	}
	contextFS, err := fsutil.NewFS(req.ContextDir)
	if err != nil {
		return build.Result{}, fmt.Errorf("opening build context: %w", err)
	}
	dockerfileFS, err := fsutil.NewFS(filepath.Dir(dfPath))
	if err != nil {
		return build.Result{}, fmt.Errorf("opening Dockerfile directory: %w", err)
	}

	opt := bkclient.SolveOpt{
		Frontend: "dockerfile.v0",
		FrontendAttrs: map[string]string{
			"filename": filepath.Base(dfPath),
			// The Dockerfile frontend prefixes every cache mount id with
			// this namespace ("<ns>/<id>"); a Dockerfile cannot change it.
			"build-arg:BUILDKIT_CACHE_MOUNT_NS": req.CacheNamespace,
			// Set, this keeps the built-in frontend from handing the build
			// to the one a "# syntax=" line names: such a frontend makes
			// its own LLB and could name any cache (another project's).
			// Nothing else reads it (it is the command line BuildKit gives
			// a frontend it forwards to).
			"cmdline": "slipway",
		},
		LocalMounts: map[string]fsutil.FS{
			"context":    contextFS,
			"dockerfile": dockerfileFS,
		},
		Exports: []bkclient.ExportEntry{{
			Type: bkclient.ExporterImage,
			Attrs: map[string]string{
				"name":              req.Image,
				"push":              "true",
				"registry.insecure": "true",
				// OCI media types: a layer that BuildKit keeps zstd
				// compressed (the base images' are) has no Docker media
				// type, and containerd (a Kubernetes node's runtime)
				// skips the layer of a Docker manifest whose type it
				// does not know ("number of layers and diffIDs don't
				// match").
				"oci-mediatypes": "true",
			},
		}},
		Session: []session.Attachable{b.auth.with(req.RegistryAuth)},
	}

	p := newPrinter(req.Log)
	ch := make(chan *bkclient.SolveStatus)
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for s := range ch {
			p.update(s)
		}
		p.finish()
	}()
	resp, err := b.c.Solve(ctx, nil, opt, ch) // closes ch
	<-printed
	if err != nil {
		return build.Result{}, classify(ctx, err, p, host)
	}
	dgst := resp.ExporterResponse["containerimage.digest"]
	if dgst == "" {
		return build.Result{}, errors.New("buildkit returned no image digest")
	}
	return build.Result{Image: repo + "@" + dgst, Digest: dgst, Steps: p.done, Cached: p.cached}, nil
}

// repository strips the tag or digest from ref ("host/name:tag" →
// "host/name") and returns it with the registry host.
func repository(ref string) (repo, host string) {
	repo = ref
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	host, _, _ = strings.Cut(repo, "/")
	return repo, host
}

var _ build.Builder = (*Builder)(nil)

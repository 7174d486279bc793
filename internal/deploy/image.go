package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/slipwayhq/slipway/internal/project"
	"github.com/slipwayhq/slipway/internal/store"
)

// A deployment of a prebuilt image (store.Deployment.SourceImage) goes
// through the same phases as a source, with nothing to build: INITIALIZING
// checks the reference, BUILDING resolves its digest and copies the image
// into the project's repository of Slipway's registry (so the runtime
// always pulls from there, and a rollback keeps working when the tag
// moves elsewhere), and DEPLOYING starts it as any other.

// ImageRef is a reference given to deploy a prebuilt image.
type ImageRef struct {
	// Ref is the reference to pull, resolved against Slipway's registry
	// when Own.
	Ref name.Reference
	// Own reports an image in Slipway's registry.
	Own bool
}

// ParseImageRef reads ref as `slipway deploy --image` takes it, for
// project. A name without a registry host ("web:v2", "web/api@sha256:…",
// "library/node:22") and a name on Slipway's registry (registryHost) are
// in Slipway's registry, where a project may deploy only its own
// repositories (project, or project/…) and public ones (library/…). A name
// on any other host ("ghcr.io/org/app:1", "docker.io/library/nginx") is
// pulled from that registry. A missing tag means "latest".
func ParseImageRef(project, ref, registryHost string) (ImageRef, error) {
	ref = strings.TrimSpace(ref)
	bad := func(why string) (ImageRef, error) {
		return ImageRef{}, fmt.Errorf("invalid image reference %q: %s", ref, why)
	}
	if ref == "" {
		return bad("empty")
	}
	if strings.Contains(ref, "://") {
		return bad("write it without a scheme, as HOST/REPOSITORY:TAG")
	}
	host, rest := "", ref
	if i := strings.IndexByte(ref, '/'); i > 0 {
		first := ref[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			host, rest = first, ref[i+1:]
		}
	}
	own := host == "" || sameHost(host, registryHost)
	if !own {
		r, err := name.ParseReference(ref, name.StrictValidation)
		if err != nil {
			if r2, err2 := name.ParseReference(ref); err2 == nil {
				r = r2 // a tag may be left out: latest
			} else {
				return bad(err.Error())
			}
		}
		return ImageRef{Ref: r}, nil
	}
	r, err := name.ParseReference(registryHost+"/"+rest, name.Insecure)
	if err != nil {
		return bad(strings.TrimPrefix(err.Error(), registryHost+"/"))
	}
	repo := r.Context().RepositoryStr()
	if repo != project && !strings.HasPrefix(repo, project+"/") && !strings.HasPrefix(repo, "library/") {
		return bad(fmt.Sprintf("project %s may deploy from Slipway's registry only its own repositories (%s, %s/…) and public ones (library/…); to pull from another registry, name its host", project, project, project))
	}
	return ImageRef{Ref: r, Own: true}, nil
}

// sameHost reports whether host names registryHost, also as localhost for
// a loopback address.
func sameHost(host, registryHost string) bool {
	if strings.EqualFold(host, registryHost) {
		return true
	}
	h1, p1, err1 := net.SplitHostPort(host)
	h2, p2, err2 := net.SplitHostPort(registryHost)
	if err1 != nil || err2 != nil || p1 != p2 {
		return false
	}
	loopback := func(h string) bool {
		if strings.EqualFold(h, "localhost") {
			return true
		}
		ip := net.ParseIP(h)
		return ip != nil && ip.IsLoopback()
	}
	return loopback(h1) && loopback(h2)
}

// initializeImage runs an image deployment through INITIALIZING and
// BUILDING, as initializeAndBuild does a source. It reports whether the
// deployment is ready for the deploy phase.
func (c *Controller) initializeImage(ctx context.Context, d *store.Deployment, st store.ProjectSettings) bool {
	ref, err := ParseImageRef(d.ProjectName, d.SourceImage, c.cfg.Registry)
	if err != nil {
		c.fail(ctx, d, err.Error())
		return false
	}
	if Status(d.Status) == Initializing {
		// The start command is the project's custom one if saved, else
		// the image's own entrypoint and command.
		start, builder := st.StartCommand, "image"
		if err := c.transition(ctx, d, Building, store.DeploymentPatch{StartCommand: &start, Builder: &builder}); err != nil {
			return false
		}
	}
	if d.ImageDigest != "" {
		c.event(d.ID, store.LogBuild, "reusing image %s; nothing to pull", d.Image)
		image, digest := d.Image, d.ImageDigest
		return c.transition(ctx, d, Deploying, store.DeploymentPatch{Image: &image, ImageDigest: &digest}) == nil
	}

	// Slipway's registry is reached with a grant of the project's own
	// repositories; another registry with the project's credentials for
	// it, if any, and never with Slipway's.
	var ownAuth authn.Authenticator = authn.Anonymous
	if c.cfg.RegistryGrant != nil {
		pw, revoke := c.cfg.RegistryGrant(d.ProjectName)
		defer revoke()
		ownAuth = &authn.Basic{Username: "slipway", Password: pw}
	}
	srcAuth := ownAuth
	if !ref.Own {
		srcAuth, err = c.registryAuth(ctx, d.ProjectID, ref.Ref)
		if err != nil {
			c.fail(ctx, d, err.Error())
			return false
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	c.event(d.ID, store.LogBuild, "resolving image %s", d.SourceImage)
	platform := v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}
	img, err := remote.Image(ref.Ref, remote.WithContext(ctx), remote.WithAuth(srcAuth), remote.WithPlatform(platform))
	if err != nil {
		if c.ctx.Err() != nil {
			return false
		}
		c.fail(ctx, d, pullFailure(d.SourceImage, err))
		return false
	}
	digest, err := img.Digest()
	if err != nil {
		c.fail(ctx, d, pullFailure(d.SourceImage, err))
		return false
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		c.fail(ctx, d, pullFailure(d.SourceImage, err))
		return false
	}
	c.event(d.ID, store.LogBuild, "image %s is %s", d.SourceImage, digest)
	dst, err := name.ParseReference(fmt.Sprintf("%s/%s:%s", c.cfg.Registry, d.ProjectName, d.ID), name.Insecure)
	if err != nil {
		c.fail(ctx, d, "internal error: "+err.Error())
		return false
	}
	if err := remote.Write(dst, img, remote.WithContext(ctx), remote.WithAuth(ownAuth)); err != nil {
		if c.ctx.Err() != nil || ctx.Err() == context.Canceled {
			return false
		}
		c.fail(ctx, d, pullFailure(d.SourceImage, err))
		return false
	}
	image := dst.Context().Digest(digest.String()).String()
	c.event(d.ID, store.LogBuild, "copied to %s", image)
	dig := digest.String()
	detected := imageCommand(cfg)
	return c.transition(ctx, d, Deploying, store.DeploymentPatch{Image: &image, ImageDigest: &dig, DetectedStartCommand: &detected}) == nil
}

// registryAuth returns the project's credentials for ref's registry, or
// anonymous access.
func (c *Controller) registryAuth(ctx context.Context, projectID string, ref name.Reference) (authn.Authenticator, error) {
	p, err := c.store.GetProjectByID(ctx, projectID)
	if err != nil {
		return nil, fmt.Errorf("internal error: %v", err)
	}
	creds, err := project.UnsealRegistryCredentials(c.cfg.Secrets, p.RegistryAuth)
	if err != nil {
		return nil, fmt.Errorf("reading the project's registry credentials: %v", err)
	}
	if cr, ok := creds.For(ref.Context().Registry); ok {
		return &authn.Basic{Username: cr.Username, Password: cr.Password}, nil
	}
	return authn.Anonymous, nil
}

// pullFailure says why an image could not be had, naming its reference.
func pullFailure(ref string, err error) string {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			return fmt.Sprintf("image %s not found: no such repository or tag (%v)", ref, err)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Sprintf("access to image %s denied: check the project's registry credentials (%v)", ref, err)
		}
		return fmt.Sprintf("pulling image %s: %v", ref, err)
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &oe) || errors.As(err, &ne) {
		return fmt.Sprintf("the registry of image %s is unreachable: %v", ref, err)
	}
	return fmt.Sprintf("pulling image %s: %v", ref, err)
}

// imageCommand is the image's own entrypoint and command, as a shell would
// read them, for display.
func imageCommand(cfg *v1.ConfigFile) string {
	if cfg == nil {
		return ""
	}
	var words []string
	for _, w := range append(append([]string{}, cfg.Config.Entrypoint...), cfg.Config.Cmd...) {
		if w == "" || strings.ContainsAny(w, " \t\n'\"\\$`;&|<>()*?[]#~") {
			w = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
		words = append(words, w)
	}
	return strings.Join(words, " ")
}

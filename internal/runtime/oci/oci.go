// Package oci is the image layer that every runtime driver and the
// benchmarks share: pulling an image from its registry (Pull), unpacking
// its layers into a directory (Unpack) or into a cache that holds each
// digest unpacked once (Cache), resolving the user its process runs as
// against the image's own /etc/passwd and /etc/group (ResolveUser), and the
// process's command line and environment from the image config (Args,
// Env). Images are go-containerregistry's v1.Image.
package oci

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Pull fetches the image ref names from its registry, passing opts to
// go-containerregistry's remote.Image (authentication, transport; if none,
// anonymously). Its layers are fetched when read, by Unpack for instance.
// References are parsed with name.Insecure: plain HTTP is allowed, as the
// embedded registry on loopback speaks it.
func Pull(ctx context.Context, ref string, opts ...remote.Option) (v1.Image, error) {
	r, err := parse(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, pullOptions(ctx, opts)...)
	if err != nil {
		return nil, fmt.Errorf("pulling image %s: %w", ref, err)
	}
	return img, nil
}

// parse parses an image reference as Pull and Cache do.
func parse(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, fmt.Errorf("parsing image reference %q: %w", ref, err)
	}
	return r, nil
}

// pullOptions are the options of remote.Image: opts and ctx.
func pullOptions(ctx context.Context, opts []remote.Option) []remote.Option {
	return append(append([]remote.Option{}, opts...), remote.WithContext(ctx))
}

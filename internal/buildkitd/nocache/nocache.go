// Package nocache takes the place of BuildKit's cache backends that Slipway
// does not use — s3, azblob and gha
// (github.com/moby/buildkit/cache/remotecache/{s3,azblob,gha}) — in the
// buildkitd that scripts/install-buildkit.sh builds. The script compiles
// BuildKit's own cmd/buildkitd from a copy of BuildKit's module in which
// each of those packages' files are replaced by this file, its package
// clause renamed. buildkitd then links neither the AWS nor the
// Azure SDK nor the GitHub Actions cache client: the first run's cold
// compile of slipway and buildkitd took 320-327 CPU-seconds instead of 395,
// while the registry, local and inline caches Slipway uses are BuildKit's
// own.
//
// Its functions have the signatures buildkitd's main calls; compiling this
// package (go build ./..., go vet) checks them against go.mod's BuildKit.
package nocache

import (
	"context"
	"errors"

	"github.com/moby/buildkit/cache/remotecache"
	"github.com/moby/buildkit/session"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

var errNotBuiltIn = errors.New("this cache backend is not built into Slipway's buildkitd " +
	"(it has BuildKit's registry, local and inline caches; see scripts/install-buildkit.sh)")

// ResolveCacheExporterFunc refuses every export to this backend.
func ResolveCacheExporterFunc() remotecache.ResolveCacheExporterFunc {
	return func(context.Context, session.Group, map[string]string) (remotecache.Exporter, error) {
		return nil, errNotBuiltIn
	}
}

// ResolveCacheImporterFunc refuses every import from this backend.
func ResolveCacheImporterFunc() remotecache.ResolveCacheImporterFunc {
	return func(context.Context, session.Group, map[string]string) (remotecache.Importer, ocispecs.Descriptor, error) {
		return nil, ocispecs.Descriptor{}, errNotBuiltIn
	}
}

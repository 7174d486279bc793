// Package build turns a source tree into an OCI image in the embedded
// registry.
//
// A Builder receives a Request (the extracted source, which Dockerfile, the
// reference to push to) and reports every line of build output, with its
// timestamp, through Request.Log while it builds. Errors caused by the
// user's input (a malformed Dockerfile, a failing RUN step, a missing
// Dockerfile) are returned as *Error with a message safe to show; other
// errors (the builder unreachable, the push refused, a missing ContextDir)
// are infrastructure failures that may be retried.
//
// Package buildertest holds the conformance suite every Builder passes.
package build

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Request describes one build.
type Request struct {
	// ContextDir is the directory holding the source tree (the build context).
	ContextDir string
	// Dockerfile is the Dockerfile's path relative to ContextDir.
	// If empty, "Dockerfile". A path outside ContextDir, or one where there
	// is no file, fails the build with an *Error.
	Dockerfile string
	// DockerfileContent, if set, is the Dockerfile to build (one generated
	// from a build plan); Dockerfile is then ignored and the source tree is
	// left untouched.
	DockerfileContent []byte
	// Image is the reference to push the result to, e.g.
	// "127.0.0.1:7300/myproject:d0123456789a".
	Image string
	// RegistryAuth, if set, maps registry hosts ("127.0.0.1:7300") to the
	// password this build presents there (HTTP basic auth) for its pulls
	// and its push, in place of the builder's own credentials for those
	// hosts: a token scoped to this build. If nil, the builder's.
	RegistryAuth map[string]string
	// CacheNamespace, if set, scopes the build's cache mounts
	// (RUN --mount=type=cache, the generated plans' and the Dockerfile's
	// own): a cache id names the same cache only within one namespace, so
	// builds of one project never see what another's wrote. Slipway uses
	// one namespace per project. If empty, the builder's global one.
	CacheNamespace string
	// Log receives each line of build output, without its newline, as it
	// is produced, with the time it was produced; a step's lines come in
	// the order the step printed them. It may be called from several
	// goroutines, but never concurrently, and not after Build returns.
	// If nil, the output is discarded.
	Log func(t time.Time, line string)
}

// Result describes a built and pushed image.
type Result struct {
	// Image is the pushed reference, by digest: "host/name@sha256:...".
	Image string
	// Digest is the manifest digest, "sha256:...".
	Digest string
	// Steps is how many steps (BuildKit's vertices: each instruction,
	// the context transfer, the base image's resolution) the build
	// completed, and Cached how many of those came from the build cache.
	// Both zero if the builder does not tell.
	Steps, Cached int
}

// Builder builds images. It is safe for concurrent use: builds running at
// once each report only their own output to their own Request.Log.
//
// Build builds req, pushes the image to req.Image and returns it by
// digest; images of different content have different digests. A build the
// user's input fails returns an *Error. If ctx is done before the build
// completes, Build stops it promptly and returns an error that wraps
// context.Cause(ctx) (ctx.Err() unless a cause was given), never an *Error.
type Builder interface {
	Build(ctx context.Context, req Request) (Result, error)
}

// Error is a build failure caused by the user's input. Message is safe to
// show to users; Step names the failing step when one is known, as the
// build log names it ("[2/3] RUN make"), or for a malformed Dockerfile the
// line at fault ("Dockerfile:2").
type Error struct {
	Step    string
	Message string
}

func (e *Error) Error() string {
	if e.Step != "" {
		return fmt.Sprintf("%s: %s", e.Step, e.Message)
	}
	return e.Message
}

// IsUserError reports whether err is (or wraps) an *Error.
func IsUserError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

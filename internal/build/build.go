// Package build turns a source tree into an OCI image in the embedded
// registry.
//
// A Builder receives a Request (the extracted source, which Dockerfile, the
// reference to push to) and reports every line of build output, with its
// timestamp, through Request.Log while it builds. Errors caused by the
// user's input (a malformed Dockerfile, a failing RUN step) are returned as
// *Error with a message safe to show; other errors are infrastructure
// failures that may be retried.
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
	// If empty, "Dockerfile".
	Dockerfile string
	// DockerfileContent, if set, is the Dockerfile to build (one generated
	// from a build plan); Dockerfile is then ignored and the source tree is
	// left untouched.
	DockerfileContent []byte
	// Image is the reference to push the result to, e.g.
	// "127.0.0.1:7300/myproject:d0123456789a".
	Image string
	// Log receives each line of build output as it is produced. It may be
	// called from several goroutines, but never concurrently.
	Log func(t time.Time, line string)
}

// Result describes a built and pushed image.
type Result struct {
	// Image is the pushed reference, by digest: "host/name@sha256:...".
	Image string
	// Digest is the manifest digest, "sha256:...".
	Digest string
}

// Builder builds images.
type Builder interface {
	Build(ctx context.Context, req Request) (Result, error)
}

// Error is a build failure caused by the user's input. Message is safe to
// show to users; Step names the failing step when one is known.
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

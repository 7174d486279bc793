package buildkit

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/util/grpcerrors"
	"google.golang.org/grpc/codes"

	"github.com/slipwayhq/slipway/internal/build"
)

// classify turns a failed solve into a *build.Error when the user's input
// caused it (a failing step, a malformed Dockerfile, a missing file), and
// into a wrapped infrastructure error otherwise (daemon unreachable,
// registry refusing the push, cancellation).
func classify(ctx context.Context, err error, p *printer, registryHost string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("building: %w", context.Cause(ctx))
	}
	switch grpcerrors.Code(err) {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Internal, codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("buildkit: %w", err)
	}

	// The step that failed: the vertex the error names, else the first
	// vertex that reported an error.
	var step *vertex
	var ve *errdefs.VertexError
	if errors.As(err, &ve) && ve.Vertex != nil {
		for d, v := range p.vertices {
			if d.String() == ve.Digest {
				step = v
			}
		}
	}
	if step == nil {
		for _, v := range p.failed {
			if !canceled(v.err) {
				step = v
				break
			}
		}
	}
	if step != nil && infraStep(step.name) {
		return fmt.Errorf("buildkit: %s: %w", step.name, err)
	}

	srcs := errdefs.Sources(err)
	if step == nil && len(srcs) == 0 {
		return fmt.Errorf("buildkit: %w", err)
	}
	e := &build.Error{Message: rootCause(err, step)}
	if step != nil {
		e.Step = step.name
	}
	if len(srcs) > 0 {
		if loc := location(srcs[len(srcs)-1]); loc != "" && e.Step == "" {
			e.Step = loc
		}
	}
	return e
}

// infraStep reports whether a failure in the named vertex is the
// platform's (exporting and pushing the image), not the user's.
func infraStep(name string) bool {
	return strings.HasPrefix(name, "exporting ") || strings.HasPrefix(name, "pushing ")
}

func canceled(msg string) bool {
	return strings.Contains(msg, "context canceled")
}

// rootCause is the message to show: the failing vertex's own error when
// there is one, else the solve error without gRPC and solver prefixes.
func rootCause(err error, step *vertex) string {
	msg := ""
	if step != nil && step.err != "" {
		msg = step.err
	} else {
		msg = err.Error()
	}
	for _, prefix := range []string{"rpc error: code = Unknown desc = ", "failed to solve: ", "failed to solve with frontend dockerfile.v0: ", "failed to create LLB definition: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	// A COPY of a missing file: `failed to calculate checksum of ref
	// ID::ID: "/nope.txt": not found` → `"/nope.txt": not found`.
	if m := checksumRef.FindStringSubmatch(msg); m != nil {
		msg = m[1]
	}
	// A RUN whose process could not even start (no shell in the image)
	// exits 1; the reason is in runc's output.
	if step != nil && step.runcErr != "" {
		msg += ": " + step.runcErr
	}
	return strings.TrimSpace(msg)
}

var checksumRef = regexp.MustCompile(`^failed to calculate checksum of ref \S+: (.*)$`)

// location renders an error's source position as "Dockerfile:2".
func location(s *errdefs.Source) string {
	if s == nil || s.Info == nil || len(s.Ranges) == 0 || s.Ranges[0].Start == nil {
		return ""
	}
	name := s.Info.Filename
	if name == "" {
		name = "Dockerfile"
	}
	return fmt.Sprintf("%s:%d", name, s.Ranges[0].Start.Line)
}

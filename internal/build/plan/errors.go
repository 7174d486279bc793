package plan

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a detection failure caused by the source tree: a manifest that
// does not parse, a missing entry point, a project root that does not
// exist. Its message is safe to show to users.
type Error struct {
	// File is the file at fault, relative to the source tree (the project
	// root included), or empty.
	File string
	// Line and Column locate the fault in File, from 1; 0 when unknown.
	Line, Column int
	// Message says what is wrong.
	Message string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// NotDetectedError is returned when no provider recognised the project.
type NotDetectedError struct {
	// Root is the project root that was searched, relative to the source
	// tree ("." for the whole tree).
	Root string
	// LookedFor lists, per provider, what would have been recognised.
	LookedFor []string
}

func (e *NotDetectedError) Error() string {
	where := "the source tree"
	if e.Root != "" && e.Root != "." {
		where = e.Root
	}
	return fmt.Sprintf("nothing to build in %s: looked for %s; add a Dockerfile, or set the project root to the directory that holds the app",
		where, strings.Join(e.LookedFor, "; "))
}

// ErrUsesDockerfile is returned by Plan.Dockerfile for plans of provider
// "dockerfile": build Plan.DockerfilePath instead.
var ErrUsesDockerfile = errors.New("plan uses the project's own Dockerfile")

// IsUserError reports whether err is (or wraps) an *Error, a
// *NotDetectedError or an *AmbiguousRootError: a failure the user fixes in
// the source or the project's settings, not one to retry.
func IsUserError(err error) bool {
	var e *Error
	var n *NotDetectedError
	var a *AmbiguousRootError
	return errors.As(err, &e) || errors.As(err, &n) || errors.As(err, &a)
}

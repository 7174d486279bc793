// Package source moves a project's source tree from the developer's machine
// to the server.
//
// The CLI packs a directory with Pack: a gzip-compressed tar that honours
// .gitignore files and a root .slipwayignore, never contains .git, and is
// byte-for-byte the same for the same tree (so builds can be cached). The
// server unpacks it with Extract, which treats the upload as hostile: it
// refuses anything that could write outside the target directory, any entry
// that is not a regular file, directory or symbolic link, and archives that
// exceed its Limits. GitInfo reads the branch, commit and author of a
// checkout so a deployment can record where its source came from; Push is
// one ref a git push updated, as the git server and GitHub's webhook report
// it.
//
// Typical use:
//
//	// client
//	err := source.Pack(dir, body)
//	// server
//	st, err := source.Extract(r, workDir, source.Limits{})
//	var rej *source.Error
//	if errors.As(err, &rej) { /* show rej.Error() to the user */ }
package source

import (
	"fmt"
	"strconv"
)

// Kind classifies why an upload was rejected.
type Kind int

const (
	// KindInvalid: the upload is not a well-formed gzip-compressed tar
	// (garbage, truncated, corrupt, or an entry conflicts with another).
	KindInvalid Kind = iota + 1
	// KindUnsafe: an entry could reach outside the source directory or is of
	// a type that is not allowed (device, fifo, absolute path, escaping link).
	KindUnsafe
	// KindTooLarge: the upload exceeds one of the Limits.
	KindTooLarge
)

func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindUnsafe:
		return "unsafe"
	case KindTooLarge:
		return "too large"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Error is an upload that Extract rejected because of its content. Its
// message is meant for the user who uploaded it, e.g.
//
//	upload rejected: "../../etc/passwd" escapes the source directory
//
// Errors that are not the upload's fault (a full disk, a failing reader)
// are never an *Error.
type Error struct {
	// Kind says why the upload was rejected.
	Kind Kind
	// Path is the offending entry's name as it appears in the archive, or
	// empty when the problem is not one entry's (e.g. a truncated stream).
	Path string
	// Reason completes the sentence "upload rejected: <Path> <Reason>".
	Reason string
	// Err is the underlying cause, if any (e.g. from archive/tar).
	Err error
}

func (e *Error) Error() string {
	if e.Path == "" {
		return "upload rejected: " + e.Reason
	}
	return fmt.Sprintf("upload rejected: %s %s", quoteShort(e.Path), e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// quoteShort quotes p for a message, eliding the middle of very long names
// so one hostile entry cannot flood a log line.
func quoteShort(p string) string {
	const max = 200
	if len(p) > max {
		p = p[:max/2] + "…" + p[len(p)-max/2:]
	}
	return strconv.Quote(p)
}

// FormatBytes renders n in the largest binary unit that divides it evenly
// enough to read well ("1 GiB", "512 MiB", "1.5 KiB", "17 bytes").
func FormatBytes(n int64) string {
	units := []struct {
		size int64
		name string
	}{{1 << 40, "TiB"}, {1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}}
	for _, u := range units {
		if n >= u.size {
			if n%u.size == 0 {
				return fmt.Sprintf("%d %s", n/u.size, u.name)
			}
			return fmt.Sprintf("%.1f %s", float64(n)/float64(u.size), u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

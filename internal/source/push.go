package source

import "strings"

// Push is one ref a git push updated, with the commit it now points to:
// what the git server (package gitserver) and GitHub's push webhook
// (package github) both report, and what a deployment is made from.
type Push struct {
	// Project is the project the push was for.
	Project string
	// Ref is the full ref name, e.g. "refs/heads/main".
	Ref string
	// Branch is Ref without "refs/heads/", or empty when Ref is not a
	// branch (a tag, a note).
	Branch string
	// OldSHA is what Ref pointed to before the push and NewSHA what it
	// points to now; all zeros for "none" (a created or deleted ref).
	OldSHA string
	NewSHA string
	// Created reports a ref that did not exist before the push.
	Created bool
	// Deleted reports a ref the push deleted. There is nothing to deploy.
	Deleted bool
	// Forced reports a non-fast-forward update: OldSHA is not an ancestor
	// of NewSHA (git push --force). It is deployed like any other push.
	Forced bool
	// Message is NewSHA's commit message without trailing newlines, and
	// Author its author as "Name <email>"; both empty when Deleted or when
	// nothing is known of the commit.
	Message string
	Author  string
}

// NewPush returns the push of project's ref from oldSHA to newSHA: Branch
// is derived from ref, Created and Deleted from the all-zero object name
// git uses for "none". Forced, Message and Author are left to the caller.
func NewPush(project, ref, oldSHA, newSHA string) Push {
	p := Push{
		Project: project, Ref: ref, OldSHA: oldSHA, NewSHA: newSHA,
		Created: isZeroSHA(oldSHA), Deleted: isZeroSHA(newSHA),
	}
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok && b != "" {
		p.Branch = b
	}
	return p
}

func isZeroSHA(sha string) bool {
	return strings.Trim(sha, "0") == ""
}

// ShortSHA abbreviates an object name to its first 12 hex digits for
// messages.
func ShortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

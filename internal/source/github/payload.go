package github

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/slipwayhq/slipway/internal/source"
)

// pushPayload is the part of GitHub's push event payload Slipway reads
// (https://docs.github.com/en/webhooks/webhook-events-and-payloads#push).
type pushPayload struct {
	Ref        *string `json:"ref"`
	Before     string  `json:"before"`
	After      string  `json:"after"`
	Created    bool    `json:"created"`
	Deleted    bool    `json:"deleted"`
	Forced     bool    `json:"forced"`
	HeadCommit *struct {
		ID      string `json:"id"`
		Message string `json:"message"`
		Author  struct {
			Name  string `json:"name"`
			Email string `json:"email"`
		} `json:"author"`
	} `json:"head_commit"`
	Repository *struct {
		FullName      string `json:"full_name"`
		CloneURL      string `json:"clone_url"`
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
}

var sha = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// maxRefLen bounds a ref name (git's own limit is the file system's).
const maxRefLen = 1024

// ParsePush reads a push event payload. It fails unless the payload has a
// ref ("refs/…"), before and after as full object names, and a repository
// with a full name. DeliveryID and Project are left empty.
func ParsePush(payload []byte) (PushEvent, error) {
	var p pushPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return PushEvent{}, fmt.Errorf("parsing push payload: %w", err)
	}
	switch {
	case p.Ref == nil:
		return PushEvent{}, errors.New("push payload has no ref")
	case !strings.HasPrefix(*p.Ref, "refs/") || len(*p.Ref) > maxRefLen || !utf8.ValidString(*p.Ref) ||
		strings.ContainsAny(*p.Ref, "\x00\n\r"):
		return PushEvent{}, fmt.Errorf("push payload has an invalid ref %.100q", *p.Ref)
	case !sha.MatchString(p.Before) || !sha.MatchString(p.After):
		return PushEvent{}, errors.New("push payload's before and after are not full commit ids")
	case p.Repository == nil || p.Repository.FullName == "":
		return PushEvent{}, errors.New("push payload has no repository full_name")
	}
	ev := PushEvent{
		Push:       source.NewPush("", *p.Ref, p.Before, p.After),
		Repository: p.Repository.FullName,
		CloneURL:   p.Repository.CloneURL,
	}
	if b := p.Repository.DefaultBranch; len(b) <= maxRefLen && utf8.ValidString(b) && !strings.ContainsAny(b, "\x00\n\r") {
		ev.DefaultBranch = b
	}
	// GitHub's own flags say what the push did; an all-zero after is a
	// deletion whatever the flag says.
	ev.Created = p.Created
	ev.Deleted = p.Deleted || ev.Deleted
	ev.Forced = p.Forced
	if hc := p.HeadCommit; hc != nil && !ev.Deleted {
		ev.Message = strings.TrimRight(hc.Message, "\n")
		switch a := hc.Author; {
		case a.Name != "" && a.Email != "":
			ev.Author = a.Name + " <" + a.Email + ">"
		case a.Name != "":
			ev.Author = a.Name
		case a.Email != "":
			ev.Author = "<" + a.Email + ">"
		}
	}
	return ev, nil
}

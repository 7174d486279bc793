package github

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// PullRequestEvent is a verified pull_request event
// (https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request).
type PullRequestEvent struct {
	// Project is the project the delivery was for; DeliveryID its
	// X-GitHub-Delivery header (both empty from ParsePullRequest).
	Project    string
	DeliveryID string
	// Action is what happened: opened, synchronize (new commits),
	// reopened, closed, and others Slipway ignores (edited, labeled, …).
	Action string
	Number int
	Title  string
	// Author is the login of the pull request's author.
	Author string
	// HeadSHA and HeadRef are the commit and branch the pull request
	// proposes; HeadRepository is the "owner/name" they live in (another
	// repository for a fork; "" when the fork was deleted).
	HeadSHA        string
	HeadRef        string
	HeadRepository string
	// Repository is the base repository's "owner/name" (the one the
	// webhook belongs to); CloneURL its clone URL.
	Repository string
	CloneURL   string
	// Merged reports a closed pull request that was merged.
	Merged bool
	// UpdatedAt is the pull request's updated_at as the payload has it:
	// it tells a second close (after a reopen) from a redelivery.
	UpdatedAt string
}

// Fork reports whether the pull request's commits come from another
// repository than the one it is made to: their author may have no access
// to the project, so its previews never get the project's secrets.
func (e PullRequestEvent) Fork() bool {
	return e.HeadRepository == "" || !SameRepository(e.HeadRepository, e.Repository)
}

type pullRequestPayload struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest *struct {
		Number    int    `json:"number"`
		Title     string `json:"title"`
		Merged    bool   `json:"merged"`
		UpdatedAt string `json:"updated_at"`
		User      struct {
			Login string `json:"login"`
		} `json:"user"`
		Head struct {
			SHA  string `json:"sha"`
			Ref  string `json:"ref"`
			Repo *struct {
				FullName string `json:"full_name"`
			} `json:"repo"`
		} `json:"head"`
	} `json:"pull_request"`
	Repository *struct {
		FullName string `json:"full_name"`
		CloneURL string `json:"clone_url"`
	} `json:"repository"`
}

// maxTitle bounds the title kept from a payload.
const maxTitle = 256

// ParsePullRequest reads a pull_request event payload. It fails unless the
// payload has an action, a positive number, a head commit as a full object
// name and a base repository with a full name.
func ParsePullRequest(payload []byte) (PullRequestEvent, error) {
	var p pullRequestPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return PullRequestEvent{}, fmt.Errorf("parsing pull_request payload: %w", err)
	}
	switch {
	case p.Action == "" || len(p.Action) > 64:
		return PullRequestEvent{}, errors.New("pull_request payload has no action")
	case p.PullRequest == nil:
		return PullRequestEvent{}, errors.New("pull_request payload has no pull_request")
	case p.Repository == nil || p.Repository.FullName == "":
		return PullRequestEvent{}, errors.New("pull_request payload has no repository full_name")
	case !sha.MatchString(p.PullRequest.Head.SHA):
		return PullRequestEvent{}, errors.New("pull_request payload's head sha is not a full commit id")
	}
	n := p.Number
	if n == 0 {
		n = p.PullRequest.Number
	}
	if n <= 0 || n > 1<<30 {
		return PullRequestEvent{}, fmt.Errorf("pull_request payload has an invalid number %d", n)
	}
	ev := PullRequestEvent{
		Action: p.Action, Number: n, HeadSHA: p.PullRequest.Head.SHA,
		Title:      clean(p.PullRequest.Title, maxTitle),
		Author:     clean(p.PullRequest.User.Login, 100),
		HeadRef:    clean(p.PullRequest.Head.Ref, maxRefLen),
		Repository: p.Repository.FullName, CloneURL: p.Repository.CloneURL,
		Merged: p.PullRequest.Merged, UpdatedAt: clean(p.PullRequest.UpdatedAt, 64),
	}
	if r := p.PullRequest.Head.Repo; r != nil {
		ev.HeadRepository = r.FullName
	}
	return ev, nil
}

// clean keeps the first line of s, valid UTF-8, at most max bytes.
func clean(s string, max int) string {
	s, _, _ = strings.Cut(s, "\n")
	s = strings.ToValidUTF8(strings.TrimSpace(strings.ReplaceAll(s, "\x00", "")), "")
	for len(s) > max {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// PullRequestKey identifies a pull_request delivery by what its signature
// covers, for deduplication: the project, the repository, the pull
// request, the action, the head commit and when the pull request was
// updated (a pull request closed, reopened and closed again at the same
// commit is closed twice).
func PullRequestKey(ev PullRequestEvent) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{ev.Project, strings.ToLower(ev.Repository),
		strconv.Itoa(ev.Number), ev.Action, ev.HeadSHA, ev.UpdatedAt}, "\x00")))
	return "pr:" + hex.EncodeToString(sum[:16])
}

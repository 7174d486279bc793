package project

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/slipwayhq/slipway/internal/secrets"
	"github.com/slipwayhq/slipway/internal/store"
)

// A project's repository link: the repository a GitHub push webhook
// deploys from (cloned at the pushed commit, with the clone token when
// one is set) and the secret that signs those webhooks. Both secrets are
// sealed with Config.Secrets; the webhook secret is handed back only when
// it is generated, the clone token never.

// RepoLink is what LinkRepository is asked to do.
type RepoLink struct {
	// URL is the repository: an http(s) or file URL, or an SSH address
	// (git@host:owner/repo, ssh://git@host/owner/repo) that is stored as
	// its https equivalent, since the server clones over https.
	URL string
	// Token, if not empty, replaces the clone token.
	Token string
	// RotateSecret generates a new webhook secret even if one exists.
	RotateSecret bool
}

// Linked is the outcome of LinkRepository.
type Linked struct {
	// URL is the repository URL as stored.
	URL string
	// Converted reports that URL was an SSH address turned into https.
	Converted bool
	// Secret is the webhook secret if this call generated it, else empty.
	Secret string
	// DefaultBranch is the repository's default branch when the host
	// told it (Config.DefaultBranch), else empty.
	DefaultBranch string
}

// LinkRepository links p to a repository, or changes its link. The first
// link (or RotateSecret) generates the webhook secret; the clone token is
// kept unless l.Token replaces it.
func (s *Service) LinkRepository(ctx context.Context, p store.Project, l RepoLink) (Linked, error) {
	if err := s.canSeal(); err != nil {
		return Linked{}, err
	}
	u, converted, err := RepositoryURL(l.URL)
	if err != nil {
		return Linked{}, err
	}
	token, err := cloneToken(l.Token)
	if err != nil {
		return Linked{}, err
	}
	sealedToken := p.RepoToken
	if token != "" {
		sealedToken = s.box.Seal([]byte(token))
	}
	out := Linked{URL: u, Converted: converted}
	secret := p.WebhookSecret
	if secret == nil || l.RotateSecret {
		out.Secret = newWebhookSecret()
		secret = s.box.Seal([]byte(out.Secret))
	}
	if err := s.store.SetProjectRepo(ctx, p.ID, u, secret, sealedToken); err != nil {
		return Linked{}, err
	}
	if s.branchOf != nil {
		// Best effort: the first push's payload says it too.
		clear := token
		if clear == "" && sealedToken != nil {
			if b, err := s.box.Unseal(sealedToken); err == nil {
				clear = string(b)
			}
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		branch, err := s.branchOf(lctx, u, clear)
		cancel()
		if err == nil {
			if err := s.SetDefaultBranch(ctx, p.ID, u, branch); err == nil {
				out.DefaultBranch = branch
			}
		}
	}
	return out, nil
}

// SetDefaultBranch records branch as the default branch of repoURL, the
// repository linked to the project with id projectID (nothing changes if
// the link changed meanwhile). Production deploys pushes to it unless it
// is mapped to an environment.
func (s *Service) SetDefaultBranch(ctx context.Context, projectID, repoURL, branch string) error {
	if _, err := validBranches([]string{branch}); err != nil {
		return err
	}
	_, err := s.store.SetRepoDefaultBranch(ctx, projectID, repoURL, branch)
	return err
}

// UnlinkRepository removes p's link with its webhook secret and clone
// token: webhook deliveries for p are refused from then on.
func (s *Service) UnlinkRepository(ctx context.Context, p store.Project) error {
	if p.RepoURL == "" && p.WebhookSecret == nil && p.RepoToken == nil {
		return fmt.Errorf("project %s is not linked to a repository: %w", p.Name, ErrInvalid)
	}
	return s.store.SetProjectRepo(ctx, p.ID, "", nil, nil)
}

// SetCloneToken replaces the clone token of p's linked repository, or
// removes it when token is empty.
func (s *Service) SetCloneToken(ctx context.Context, p store.Project, token string) error {
	if err := s.needLink(p, "the clone token is used to clone it"); err != nil {
		return err
	}
	token, err := cloneToken(token)
	if err != nil {
		return err
	}
	var sealed []byte
	if token != "" {
		sealed = s.box.Seal([]byte(token))
	}
	return s.store.SetProjectRepo(ctx, p.ID, p.RepoURL, p.WebhookSecret, sealed)
}

// RotateWebhookSecret gives p's link a new webhook secret and returns it;
// deliveries signed with the old one are refused from then on.
func (s *Service) RotateWebhookSecret(ctx context.Context, p store.Project) (string, error) {
	if err := s.needLink(p, "the webhook secret belongs to the link"); err != nil {
		return "", err
	}
	secret := newWebhookSecret()
	if err := s.store.SetProjectRepo(ctx, p.ID, p.RepoURL, s.box.Seal([]byte(secret)), p.RepoToken); err != nil {
		return "", err
	}
	return secret, nil
}

// CanLinkRepositories reports whether the service can store the
// secrets of a repository link (it has Config.Secrets).
func (s *Service) CanLinkRepositories() bool { return s.box != nil }

func (s *Service) canSeal() error {
	if s.box == nil {
		return fmt.Errorf("this server has no key to encrypt secrets with, so it cannot link repositories: %w", ErrInvalid)
	}
	return nil
}

// needLink refuses to change a part of p's link (saying why it needs one)
// when p is not linked.
func (s *Service) needLink(p store.Project, why string) error {
	if err := s.canSeal(); err != nil {
		return err
	}
	if p.RepoURL == "" {
		return fmt.Errorf("link a repository first; %s: %w", why, ErrInvalid)
	}
	return nil
}

// newWebhookSecret is 24 random bytes in hex.
func newWebhookSecret() string {
	var b [24]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// scpAddress is git's SSH shorthand, user@host:owner/repo.
var scpAddress = regexp.MustCompile(`^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):(.+)$`)

const repoExample = "such as https://github.com/you/app or git@github.com:you/app.git"

// RepositoryURL checks a repository address and returns the URL to clone:
// an http(s) or file URL as it is, an SSH address as its https equivalent
// (converted). Credentials in the URL are refused: they belong in the
// clone token, stored sealed.
func RepositoryURL(s string) (u string, converted bool, err error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", false, fmt.Errorf("enter the repository's address, %s: %w", repoExample, ErrInvalid)
	case len(s) > 2000:
		return "", false, fmt.Errorf("the repository URL is longer than 2000 characters: %w", ErrInvalid)
	case strings.IndexFunc(s, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) >= 0:
		return "", false, fmt.Errorf("the repository URL cannot contain spaces: %w", ErrInvalid)
	}
	if m := scpAddress.FindStringSubmatch(s); m != nil && !strings.Contains(s, "://") {
		s, converted = "https://"+m[1]+"/"+strings.TrimPrefix(m[2], "/"), true
	}
	parsed, perr := url.Parse(s)
	if perr == nil && parsed.Scheme == "ssh" && parsed.Host != "" {
		parsed.Scheme, parsed.User, parsed.Host, converted = "https", nil, parsed.Hostname(), true
	}
	web := perr == nil && (parsed.Scheme == "https" || parsed.Scheme == "http") && parsed.Host != ""
	file := perr == nil && parsed.Scheme == "file" && parsed.Host == "" && parsed.Path != ""
	switch {
	case !web && !file:
		return "", false, fmt.Errorf("%q is not a repository address: use its https URL or SSH address, %s: %w", s, repoExample, ErrInvalid)
	case parsed.User != nil:
		return "", false, fmt.Errorf("leave the credentials out of the URL: put a token in the clone token instead (it is stored encrypted): %w", ErrInvalid)
	case strings.Trim(parsed.Path, "/") == "":
		return "", false, fmt.Errorf("%q names a server, not a repository: add the owner and name, %s: %w", s, repoExample, ErrInvalid)
	case parsed.RawQuery != "" || parsed.ForceQuery || parsed.Fragment != "" || strings.HasSuffix(s, "#"):
		return "", false, fmt.Errorf("the repository URL cannot have a ? or # part; use the address GitHub shows under Code, %s: %w", repoExample, ErrInvalid)
	}
	return parsed.String(), converted, nil
}

// cloneToken checks a clone token ("" when none was given).
func cloneToken(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case len(s) > 1000:
		return "", fmt.Errorf("the clone token is longer than 1000 characters; paste the token alone: %w", ErrInvalid)
	case strings.IndexFunc(s, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) >= 0:
		return "", fmt.Errorf("a clone token has no spaces; paste the token alone: %w", ErrInvalid)
	}
	return s, nil
}

// Link is a project's repository link with its secrets in the clear, for
// the webhook receiver and the fetcher.
type Link struct {
	Project store.Project
	// URL is the linked repository ("" when none).
	URL string
	// WebhookSecret is nil when none is set: every delivery is refused.
	WebhookSecret []byte
	// CloneToken is "" for a public repository.
	CloneToken string
}

// LinkOf returns the repository link of the project with the given id, or
// name when id is empty, its secrets unsealed with box. It needs no
// Service, so that the lifecycle's fetcher, built before the Service, can
// use it too.
func LinkOf(ctx context.Context, st store.Reader, box *secrets.Box, id, name string) (Link, error) {
	var p store.Project
	var err error
	if id != "" {
		p, err = st.GetProjectByID(ctx, id)
	} else {
		p, err = st.GetProject(ctx, name)
	}
	if err != nil {
		return Link{}, err
	}
	l := Link{Project: p, URL: p.RepoURL}
	if p.WebhookSecret == nil && p.RepoToken == nil {
		return l, nil
	}
	if box == nil {
		return Link{}, fmt.Errorf("project %s has repository secrets but this server has no key to decrypt them", p.Name)
	}
	if p.WebhookSecret != nil {
		if l.WebhookSecret, err = box.Unseal(p.WebhookSecret); err != nil {
			return Link{}, fmt.Errorf("project %s webhook secret: %w", p.Name, err)
		}
	}
	if p.RepoToken != nil {
		tok, err := box.Unseal(p.RepoToken)
		if err != nil {
			return Link{}, fmt.Errorf("project %s clone token: %w", p.Name, err)
		}
		l.CloneToken = string(tok)
	}
	return l, nil
}

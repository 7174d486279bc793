package github

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// PublicAPI is the REST API of github.com.
const PublicAPI = "https://api.github.com"

// Client calls GitHub's REST API with a repository's token (the project's
// clone token): commit statuses, pull-request comments and the default
// branch. Its zero value works.
type Client struct {
	// BaseURL is the REST API's root, such as https://api.github.com or
	// https://ghe.example.com/api/v3 (GitHub Enterprise Server), used for
	// every repository. If empty, it is told from each repository's URL:
	// PublicAPI for github.com (and URLs without a host, such as file:),
	// SCHEME://HOST/api/v3 for other http(s) hosts.
	BaseURL string
	// HTTP sends the requests. If nil, a client with a 15 s timeout that
	// follows redirects on the same host only (the token stays home).
	HTTP *http.Client
}

// APIError is an answer of GitHub's API other than a success.
type APIError struct {
	StatusCode int
	Message    string // GitHub's "message", or the status text
	// RetryAfter is how long GitHub asks to wait (Retry-After, or until
	// X-RateLimit-Reset when the rate limit is exhausted); zero if it
	// does not say.
	RetryAfter time.Duration
	rateLimit  bool
}

func (e *APIError) Error() string {
	return fmt.Sprintf("GitHub answered %d: %s", e.StatusCode, e.Message)
}

// Temporary reports whether the same request may succeed later: GitHub's
// server errors and rate limits. Other 4xx answers (bad credentials, no
// permission, not found, invalid) are final.
func (e *APIError) Temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.rateLimit
}

// Temporary reports whether err, returned by a Client, may go away when
// the request is sent again: an APIError that says so, or a failure to
// reach GitHub at all.
func Temporary(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Temporary()
	}
	return err != nil
}

// Repo names a repository for the API: its "owner/name" and, to tell
// the API's host when Client.BaseURL is empty, its clone URL.
type Repo struct {
	FullName string
	URL      string
}

// root returns the API root for a repository URL.
func (c *Client) root(repoURL string) string {
	if c.BaseURL != "" {
		return strings.TrimRight(c.BaseURL, "/")
	}
	u, err := url.Parse(repoURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		strings.EqualFold(u.Hostname(), "github.com") || strings.EqualFold(u.Hostname(), "www.github.com") {
		return PublicAPI
	}
	return u.Scheme + "://" + u.Host + "/api/v3"
}

// repoAPI returns the API address of r.
func (c *Client) repoAPI(r Repo) (string, error) {
	name := r.FullName
	if name == "" {
		name = repoPath(r.URL)
	}
	owner, repo, ok := strings.Cut(name, "/")
	if !ok || owner == "" || repo == "" || strings.Contains(repo, "/") {
		return "", fmt.Errorf("%q does not name a repository as OWNER/NAME", redactURL(name))
	}
	return c.root(r.URL) + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo), nil
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 15 * time.Second, CheckRedirect: sameHostRedirects}
}

func sameHostRedirects(r *http.Request, via []*http.Request) error {
	if len(via) > 0 && r.URL.Host != via[0].URL.Host {
		return errors.New("redirected to another host") // keep the token at home
	}
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	return nil
}

// do sends a request with token as the bearer token and decodes a JSON
// answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, addr, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, addr, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "slipway")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		e := &APIError{StatusCode: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
		var m struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &m) == nil && m.Message != "" {
			e.Message = m.Message
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			e.RetryAfter, e.rateLimit = time.Duration(s)*time.Second, true
		}
		if resp.Header.Get("X-RateLimit-Remaining") == "0" {
			e.rateLimit = true
			if reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil && e.RetryAfter == 0 {
				e.RetryAfter = time.Until(time.Unix(reset, 0))
			}
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("reading GitHub's answer: %w", err)
		}
	}
	return nil
}

// Commit status states (the Commit Status API's).
const (
	StatePending = "pending"
	StateSuccess = "success"
	StateFailure = "failure"
	StateError   = "error"
)

// Status is a commit status.
type Status struct {
	State       string `json:"state"`
	TargetURL   string `json:"target_url,omitempty"`
	Description string `json:"description,omitempty"`
	Context     string `json:"context"`
}

// MaxDescription is the longest status description GitHub accepts.
const MaxDescription = 140

// CreateStatus sets a status of commit sha: POST
// /repos/OWNER/NAME/statuses/SHA. A description longer than GitHub
// accepts is cut.
func (c *Client) CreateStatus(ctx context.Context, r Repo, token, sha string, st Status) error {
	if !objectName.MatchString(sha) {
		return fmt.Errorf("%q is not a full commit id", sha)
	}
	api, err := c.repoAPI(r)
	if err != nil {
		return err
	}
	if n := []rune(st.Description); len(n) > MaxDescription {
		st.Description = string(n[:MaxDescription-1]) + "…"
	}
	return c.do(ctx, http.MethodPost, api+"/statuses/"+sha, token, st, nil)
}

// CreateComment comments on pull request (or issue) number and returns the
// comment's id: POST /repos/OWNER/NAME/issues/NUMBER/comments.
func (c *Client) CreateComment(ctx context.Context, r Repo, token string, number int, body string) (int64, error) {
	api, err := c.repoAPI(r)
	if err != nil {
		return 0, err
	}
	var out struct {
		ID int64 `json:"id"`
	}
	if err := c.do(ctx, http.MethodPost, fmt.Sprintf("%s/issues/%d/comments", api, number), token, map[string]string{"body": body}, &out); err != nil {
		return 0, err
	}
	if out.ID == 0 {
		return 0, errors.New("GitHub's answer has no comment id")
	}
	return out.ID, nil
}

// UpdateComment replaces the body of comment id: PATCH
// /repos/OWNER/NAME/issues/comments/ID. A comment deleted on GitHub
// answers an APIError with StatusCode 404.
func (c *Client) UpdateComment(ctx context.Context, r Repo, token string, id int64, body string) error {
	api, err := c.repoAPI(r)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPatch, fmt.Sprintf("%s/issues/comments/%d", api, id), token, map[string]string{"body": body}, nil)
}

// DefaultBranch asks the API for the default branch of the repository at
// repoURL (its owner/name is read from the URL), with token ("" for none).
// It gives up after 10 s, whatever ctx allows.
func (c *Client) DefaultBranch(ctx context.Context, repoURL, token string) (string, error) {
	if _, err := APIURL(repoURL); err != nil {
		return "", err
	}
	api, err := c.repoAPI(Repo{URL: repoURL})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var repo struct {
		DefaultBranch string `json:"default_branch"`
	}
	if err := c.do(ctx, http.MethodGet, api, token, nil, &repo); err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			return "", fmt.Errorf("asking %s for the default branch: %d %s", redactURL(repoURL), ae.StatusCode, ae.Message)
		}
		return "", fmt.Errorf("asking %s for the default branch: %w", redactURL(repoURL), err)
	}
	if repo.DefaultBranch == "" {
		return "", fmt.Errorf("%s reported no default branch", redactURL(repoURL))
	}
	return repo.DefaultBranch, nil
}

package github

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// APIURL returns the REST API address of a repository given by its clone
// or web URL: https://api.github.com/repos/OWNER/NAME for github.com, and
// SCHEME://HOST/api/v3/repos/OWNER/NAME for any other host (GitHub
// Enterprise Server's layout). file: and SSH URLs have no API.
func APIURL(repoURL string) (string, error) {
	u, err := url.Parse(repoURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) repository URL", redactURL(repoURL))
	}
	owner, name, ok := strings.Cut(strings.TrimSuffix(strings.Trim(u.Path, "/"), ".git"), "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("%q does not name a repository as OWNER/NAME", redactURL(repoURL))
	}
	repo := url.PathEscape(owner) + "/" + url.PathEscape(name)
	if strings.EqualFold(u.Hostname(), "github.com") || strings.EqualFold(u.Hostname(), "www.github.com") {
		return "https://api.github.com/repos/" + repo, nil
	}
	return u.Scheme + "://" + u.Host + "/api/v3/repos/" + repo, nil
}

// DefaultBranch asks the repository's host (APIURL) for its default branch,
// with token (a clone token; "" for none) as the bearer token. It gives up
// after 10 s, whatever ctx allows. A Client with a BaseURL asks another
// API.
func DefaultBranch(ctx context.Context, repoURL, token string) (string, error) {
	return (&Client{}).DefaultBranch(ctx, repoURL, token)
}

package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
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
// after 10 s, whatever ctx allows.
func DefaultBranch(ctx context.Context, repoURL, token string) (string, error) {
	api, err := APIURL(repoURL)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if len(via) > 0 && r.URL.Host != via[0].URL.Host {
			return errors.New("redirected to another host") // keep the token at home
		}
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		return nil
	}}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking %s for the default branch: %w", redactURL(repoURL), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("asking %s for the default branch: %s", redactURL(repoURL), resp.Status)
	}
	var repo struct {
		DefaultBranch string `json:"default_branch"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&repo); err != nil {
		return "", fmt.Errorf("reading the default branch of %s: %w", redactURL(repoURL), err)
	}
	if repo.DefaultBranch == "" {
		return "", fmt.Errorf("%s reported no default branch", redactURL(repoURL))
	}
	return repo.DefaultBranch, nil
}

package github

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Credentials authenticate fetches over HTTP(S).
type Credentials struct {
	// Username for HTTP basic auth. If empty, "x-access-token", which
	// GitHub accepts with an access token as the password.
	Username string
	// Password is the password or access token.
	Password string
}

// Fetch checks out commit sha (a full object name) of the repository at
// cloneURL into dir, which must be empty or not exist. The checkout keeps
// its .git directory (HEAD detached at sha), so source.GitInfo can read the
// commit's message and author and source.Pack leaves .git out.
//
// It runs git init, then `git fetch --depth 1 origin <sha>`: one commit's
// tree, no history. Servers that refuse to fetch an object by name (git's
// protocol v0 without uploadpack.allowReachableSHA1InWant) get a full fetch
// of their branches and tags instead, from which sha is checked out.
// Submodules and LFS objects are not fetched.
//
// creds, if not nil, are handed to git by a credential helper that reads
// them from its environment: they appear in no URL, command line, log or
// file (.git/config holds cloneURL as given). Git sends them only to a
// server that asks (401). SSH URLs use the server user's SSH setup.
// Only the file, git, http, https and ssh transports are allowed. Error
// messages show cloneURL without any user information in it.
func Fetch(ctx context.Context, cloneURL, sha string, creds *Credentials, dir string) (err error) {
	safeURL := redactURL(cloneURL)
	if !objectName.MatchString(sha) {
		return fmt.Errorf("fetching %s: %q is not a full commit id", safeURL, sha)
	}
	if cloneURL == "" || strings.HasPrefix(cloneURL, "-") || strings.ContainsAny(cloneURL, "\x00\n\r") {
		return fmt.Errorf("fetching: invalid repository URL %q", safeURL)
	}
	bin, err := exec.LookPath("git")
	if err != nil {
		return fmt.Errorf("fetching %s: %w", safeURL, err)
	}
	env, err := fetchEnv(creds)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", safeURL, err)
	}
	created, err := prepareDir(dir)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", safeURL, err)
	}
	defer func() {
		if err != nil {
			cleanDir(dir, created)
		}
	}()

	var secrets []string
	if creds != nil && creds.Password != "" {
		secrets = append(secrets, creds.Password)
	}
	if u, perr := url.Parse(cloneURL); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			secrets = append(secrets, u.User.String(), pw)
		} else if name := u.User.Username(); name != "" {
			secrets = append(secrets, name) // a token as the user name
		}
	}
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, bin, append([]string{"-C", dir}, args...)...)
		cmd.Env = env
		cmd.WaitDelay = 5 * time.Second
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(out.String())
			if len(msg) > 2000 {
				msg = msg[:2000] + "…"
			}
			for _, s := range secrets {
				msg = strings.ReplaceAll(msg, s, "REDACTED")
			}
			if msg == "" {
				msg = err.Error()
			}
			return fmt.Errorf("git %s: %s", args[0], msg)
		}
		return nil
	}

	if err := git("init", "--quiet", "--template="); err != nil {
		return fmt.Errorf("fetching %s: %w", safeURL, err)
	}
	if err := git("remote", "add", "origin", cloneURL); err != nil {
		return fmt.Errorf("fetching %s: %w", safeURL, err)
	}
	if ferr := git("fetch", "--quiet", "--no-tags", "--depth=1", "origin", sha); ferr != nil {
		// The server may refuse an object that is not a ref's tip.
		err := git("fetch", "--quiet", "--no-tags", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
		if err != nil && err.Error() == ferr.Error() {
			return fmt.Errorf("fetching %s: %w", safeURL, err) // e.g. authentication failed, twice
		}
		if err != nil {
			return fmt.Errorf("fetching %s: %w (after %v)", safeURL, err, ferr)
		}
		if git("cat-file", "-e", sha+"^{commit}") != nil {
			return fmt.Errorf("fetching %s: commit %s not found (fetching it by id: %v)", safeURL, sha, ferr)
		}
	}
	if err := git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", sha); err != nil {
		return fmt.Errorf("checking out %s of %s: %w", sha, safeURL, err)
	}
	return nil
}

var objectName = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// fetchEnv is the environment of Fetch's git runs: the process's, without
// variables that would redirect git to other repositories, configuration
// or prompts (GIT_SSH* is kept for SSH setups), and with the credential
// helper.
func fetchEnv(creds *Credentials) ([]string, error) {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "GIT_SSH"):
		case strings.HasPrefix(name, "GIT_"), name == "SSH_ASKPASS":
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_ALLOW_PROTOCOL=file:git:http:https:ssh",
	)
	if creds == nil {
		return append(env, "GIT_CONFIG_COUNT=0"), nil
	}
	user := creds.Username
	if user == "" {
		user = "x-access-token"
	}
	if strings.ContainsAny(user+creds.Password, "\x00\n\r") {
		return nil, errors.New("credentials contain a line break or NUL")
	}
	// An empty helper first clears any configured helper; the second one
	// answers "get" from the environment and ignores "store" and "erase".
	helper := `!f() { test "$1" = get || exit 0; printf 'username=%s\npassword=%s\n' "$SLIPWAY_GIT_USERNAME" "$SLIPWAY_GIT_PASSWORD"; }; f`
	return append(env,
		"SLIPWAY_GIT_USERNAME="+user,
		"SLIPWAY_GIT_PASSWORD="+creds.Password,
		"GIT_CONFIG_COUNT=2",
		"GIT_CONFIG_KEY_0=credential.helper", "GIT_CONFIG_VALUE_0=",
		"GIT_CONFIG_KEY_1=credential.helper", "GIT_CONFIG_VALUE_1="+helper,
	), nil
}

// redactURL returns u without user information, for messages.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		if i := strings.Index(u, "@"); i >= 0 && strings.Contains(u[:i], "://") {
			return u[:strings.Index(u, "://")+3] + "…@" + u[i+1:]
		}
		return u
	}
	p.User = nil
	return p.String()
}

// prepareDir makes sure dir exists and is empty, and says whether it
// created it.
func prepareDir(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true, os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return false, err
	}
	if len(entries) > 0 {
		return false, fmt.Errorf("%s is not empty", dir)
	}
	return false, nil
}

// cleanDir removes what Fetch put into dir (and dir if Fetch created it).
func cleanDir(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

package secrets

import (
	"net/url"
	"strings"
)

// Hint shows a URL that may carry credentials (in its user info, path or
// query, as webhook and log drain URLs do) without them: its scheme and
// host, and the last 4 characters of the rest if it is longer than 8.
func Hint(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return "…"
	}
	hint := u.Scheme + "://"
	if u.User != nil {
		hint += "…@"
	}
	hint += u.Host
	rest := u.RequestURI()
	if len(rest) > 8 {
		hint += "/…" + rest[len(rest)-4:]
	} else if rest != "/" {
		hint += "/…"
	}
	return hint
}

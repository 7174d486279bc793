package router

import "strings"

// maxHostLen is the longest DNS name (RFC 1035), without the trailing dot.
const maxHostLen = 253

// CanonicalHost returns the form of a Host header (or a configured
// hostname) that the Table matches on: lowercase, without a port and without
// a trailing dot. "App.Example.COM.:8080" becomes "app.example.com"; an
// IPv6 literal keeps its brackets ("[::1]:80" becomes "[::1]").
//
// It reports false when host is empty or not a syntactically valid
// hostname, IPv4 address or bracketed IPv6 literal; the router answers such
// requests with 400 Bad Request. Letters, digits, '-' and '_' are accepted in
// labels (underscores appear in real-world names); labels may not be empty
// or longer than 63 bytes.
//
// It allocates only when host contains upper-case letters.
func CanonicalHost(host string) (string, bool) {
	if host == "" {
		return "", false
	}
	if host[0] == '[' {
		return canonicalIPv6(host)
	}
	if i := strings.IndexByte(host, ':'); i >= 0 {
		if !validPort(host[i+1:]) {
			return "", false
		}
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if host == "" || len(host) > maxHostLen {
		return "", false
	}
	upper := false
	label := 0 // length of the current label
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			label++
		case c >= 'A' && c <= 'Z':
			upper = true
			label++
		case c == '.':
			if label == 0 {
				return "", false
			}
			label = 0
			continue
		default:
			return "", false
		}
		if label > 63 {
			return "", false
		}
	}
	if label == 0 {
		return "", false
	}
	if upper {
		host = strings.ToLower(host)
	}
	return host, true
}

// canonicalIPv6 handles "[addr]" and "[addr]:port".
func canonicalIPv6(host string) (string, bool) {
	end := strings.IndexByte(host, ']')
	if end < 0 {
		return "", false
	}
	if rest := host[end+1:]; rest != "" {
		if rest[0] != ':' || !validPort(rest[1:]) {
			return "", false
		}
	}
	host = host[:end+1]
	addr := host[1:end]
	if len(addr) < 2 {
		return "", false
	}
	upper := false
	colons := 0
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c == '.':
		case c >= 'A' && c <= 'F':
			upper = true
		case c == ':':
			colons++
		default:
			return "", false
		}
	}
	if colons < 2 {
		return "", false
	}
	if upper {
		host = strings.ToLower(host)
	}
	return host, true
}

// validPort reports whether p is a port as it may follow a host: empty
// (RFC 3986 allows "host:") or up to five digits.
func validPort(p string) bool {
	if len(p) > 5 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

package baseimage

import (
	"bytes"
	"os"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// debianMajors are the release numbers of the suites, which the debian
// image is also tagged with.
var debianMajors = map[string]string{"bookworm": "12", "trixie": "13"}

// For returns the name of the image ("golang") that stands in for ref, a
// reference to an official image as a Dockerfile's FROM names it
// ("golang:1.23-bookworm", "docker.io/library/node:lts"), or false when no
// image of Build provides it (another registry, a pinned digest, a version
// the stand-ins lack). It knows the tags before the image is built, for
// the default suite.
func For(ref string) (string, bool) {
	repo, tag, ok := officialRef(ref)
	if !ok {
		return "", false
	}
	for _, s := range specs {
		if s.repository == repo && s.provides(tag, "bookworm") {
			return s.name, true
		}
	}
	return "", false
}

// officialRef splits a Docker Hub reference into its repository
// ("library/golang") and tag ("latest" when none); false for references to
// other registries and by digest.
func officialRef(ref string) (repo, tag string, ok bool) {
	if strings.Contains(ref, "@") || ref == "" {
		return "", "", false
	}
	for _, p := range []string{"docker.io/", "index.docker.io/", "registry-1.docker.io/"} {
		ref = strings.TrimPrefix(ref, p)
	}
	repo, tag = ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo, tag = ref[:i], ref[i+1:]
	}
	first, _, more := strings.Cut(repo, "/")
	if more && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return "", "", false // a registry host
	}
	if !more {
		repo = "library/" + repo
	}
	return strings.ToLower(repo), tag, true
}

// provides reports whether the image, built for suite, is tagged tag: a
// tag of a version line is the line, then any further version parts
// (".4"), then one of the official images' variants for the suite
// ("-slim", "-bookworm", "-slim-bookworm", "-bookworm-slim"), as in
// "1.23-bookworm" or "22.11.0-slim". Other variants ("-alpine", another
// suite) are not.
func (s spec) provides(tag, suite string) bool {
	lines := s.lines
	if s.parent == "" {
		lines = []string{suite}
		if m := debianMajors[suite]; m != "" {
			lines = append(lines, m)
		}
	}
	for _, l := range lines {
		rest, ok := strings.CutPrefix(tag, l)
		if !ok {
			continue
		}
		for len(rest) > 1 && rest[0] == '.' && rest[1] >= '0' && rest[1] <= '9' {
			rest = strings.TrimLeft(rest[1:], "0123456789")
		}
		switch rest {
		case "", "-slim", "-" + suite, "-slim-" + suite, "-" + suite + "-slim":
			return true
		}
	}
	return false
}

// Needed returns the references of a Dockerfile's FROM lines that an
// image of Build stands in for (see For), in order, each once, with build
// arguments expanded to the defaults its global ARG lines give them. A
// Dockerfile that does not parse needs none: the build reports why.
func Needed(dockerfile []byte) []string {
	res, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return nil
	}
	args := map[string]string{}
	stages := map[string]bool{}
	var out []string
	for _, n := range res.AST.Children {
		switch strings.ToLower(n.Value) {
		case "arg":
			if len(stages) > 0 || n.Next == nil {
				continue // only global ARGs apply to FROM
			}
			for a := n.Next; a != nil; a = a.Next {
				k, v, _ := strings.Cut(a.Value, "=")
				args[k] = strings.Trim(v, `"'`)
			}
		case "from":
			if n.Next == nil {
				continue
			}
			img := os.Expand(n.Next.Value, func(k string) string { return args[k] })
			if _, ok := For(img); ok && !stages[strings.ToLower(img)] && !slices.Contains(out, img) {
				out = append(out, img)
			}
			stages[""] = true // a FROM was seen: later ARGs are a stage's
			if as := n.Next.Next; as != nil && strings.EqualFold(as.Value, "as") && as.Next != nil {
				stages[strings.ToLower(as.Next.Value)] = true
			}
		}
	}
	return out
}

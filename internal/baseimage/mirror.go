package baseimage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Mirrors are the Debian archives a build fetches from: the host's own apt
// sources, never a hard-coded host.
type Mirrors struct {
	// Debian serves the suite itself and its -updates suite, e.g.
	// "http://mirror.example/debian".
	Debian string
	// Security serves the suite's -security suite. Empty if the host has none.
	Security string
}

// aptSource is one "deb" entry of the apt sources.
type aptSource struct {
	uris   []string
	suites []string
}

// ReadMirrors finds the mirrors for suite in the apt sources under root
// ("/" for the host): deb822 files /etc/apt/sources.list.d/*.sources first
// (the "URIs:" of the stanza listing the suite), then one-line files
// /etc/apt/sources.list and /etc/apt/sources.list.d/*.list.
func ReadMirrors(root, suite string) (Mirrors, error) {
	var sources []aptSource
	deb822, _ := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d/*.sources"))
	for _, f := range deb822 {
		b, err := os.ReadFile(f)
		if err != nil {
			return Mirrors{}, fmt.Errorf("reading apt sources: %w", err)
		}
		sources = append(sources, parseDeb822(b)...)
	}
	oneLine, _ := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d/*.list"))
	oneLine = append([]string{filepath.Join(root, "etc/apt/sources.list")}, oneLine...)
	for _, f := range oneLine {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return Mirrors{}, fmt.Errorf("reading apt sources: %w", err)
		}
		sources = append(sources, parseOneLine(b)...)
	}
	var m Mirrors
	for _, s := range sources {
		if len(s.uris) == 0 {
			continue
		}
		if m.Debian == "" && slices.Contains(s.suites, suite) {
			m.Debian = strings.TrimSuffix(s.uris[0], "/")
		}
		if m.Security == "" && slices.Contains(s.suites, suite+"-security") {
			m.Security = strings.TrimSuffix(s.uris[0], "/")
		}
	}
	if m.Debian == "" {
		return Mirrors{}, fmt.Errorf("no apt source for suite %q under %s", suite, filepath.Join(root, "etc/apt"))
	}
	return m, nil
}

// parseDeb822 returns the enabled "deb" stanzas of a .sources file.
func parseDeb822(b []byte) []aptSource {
	var out []aptSource
	for _, stanza := range bytes.Split(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n\n")) {
		fields := map[string]string{}
		var last string
		sc := bufio.NewScanner(bytes.NewReader(stanza))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			if (line[0] == ' ' || line[0] == '\t') && last != "" {
				fields[last] += " " + strings.TrimSpace(line)
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		out = append(out, aptSource{uris: strings.Fields(fields["uris"]), suites: strings.Fields(fields["suites"])})
	}
	return out
}

// parseOneLine returns the "deb URI SUITE COMPONENTS..." lines of a
// sources.list file, options in brackets skipped.
func parseOneLine(b []byte) []aptSource {
	var out []aptSource
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) < 2 {
			continue
		}
		out = append(out, aptSource{uris: f[:1], suites: f[1:2]})
	}
	return out
}

// sourcesFile is the deb822 apt sources file written into images, so that
// `RUN apt-get install` in a build works against the same mirrors.
func (m Mirrors) sourcesFile(suite string) string {
	s := stanza(m.Debian, suite, suite+"-updates")
	if m.Security != "" {
		s += "\n" + stanza(m.Security, suite+"-security")
	}
	return s
}

// stanza is one deb822 sources entry.
func stanza(uri string, suites ...string) string {
	return fmt.Sprintf("Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
		uri, strings.Join(suites, " "))
}

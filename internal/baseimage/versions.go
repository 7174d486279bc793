package baseimage

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// dpkgVersion returns the version of the installed package pkg recorded in
// rootfs's dpkg status file ("3.11.2-1+b1").
func dpkgVersion(rootfs, pkg string) (string, error) {
	b, err := os.ReadFile(filepath.Join(rootfs, "var/lib/dpkg/status"))
	if err != nil {
		return "", fmt.Errorf("reading the dpkg status: %w", err)
	}
	for _, stanza := range bytes.Split(b, []byte("\n\n")) {
		fields := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(stanza))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && !strings.HasPrefix(k, " ") {
				fields[k] = strings.TrimSpace(v)
			}
		}
		if fields["Package"] == pkg && strings.HasSuffix(fields["Status"], " installed") && fields["Version"] != "" {
			return fields["Version"], nil
		}
	}
	return "", fmt.Errorf("package %s is not installed in %s", pkg, rootfs)
}

// upstreamVersion is the upstream part of a Debian version, without epoch,
// Debian revision or repacking suffixes: "18.20.4+dfsg-1~deb12u3" → "18.20.4".
func upstreamVersion(v string) string {
	if _, rest, ok := strings.Cut(v, ":"); ok {
		v = rest
	}
	if i := strings.LastIndex(v, "-"); i >= 0 {
		v = v[:i]
	}
	if i := strings.IndexAny(v, "+~"); i >= 0 {
		v = v[:i]
	}
	return v
}

// installedVersion is the upstream version of pkg in rootfs, which must
// have at least two dot-separated parts; minor is its first two.
func installedVersion(rootfs, pkg string) (version, minor string, err error) {
	v, err := dpkgVersion(rootfs, pkg)
	if err != nil {
		return "", "", err
	}
	version = upstreamVersion(v)
	parts := strings.Split(version, ".")
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return "", "", fmt.Errorf("unexpected %s version %q", pkg, v)
	}
	return version, parts[0] + "." + parts[1], nil
}

// pythonTags tags the Python image like the official slim images of its
// version ("3.11-slim-bookworm", "3.11-slim", "3.11", and the same with the
// full version), and sets PYTHON_VERSION. It has no "3" or "latest": those
// name a newer Python than Debian's.
func pythonTags(rootfs, suite string) ([]string, []string, error) {
	version, minor, err := installedVersion(rootfs, "python3")
	if err != nil {
		return nil, nil, err
	}
	var tags []string
	for _, v := range uniq(minor, version) {
		tags = append(tags, v+"-slim-"+suite, v+"-slim", v+"-"+suite, v)
	}
	return tags, []string{"PYTHON_VERSION=" + version}, nil
}

// nodeTags tags the Node image like the official slim images of its major
// version ("18-bookworm-slim", "18-slim", "18", and the same with the full
// version), and sets NODE_VERSION. It has no "lts" or "latest": those name
// a newer Node than Debian's.
func nodeTags(rootfs, suite string) ([]string, []string, error) {
	version, _, err := installedVersion(rootfs, "nodejs")
	if err != nil {
		return nil, nil, err
	}
	major, _, _ := strings.Cut(version, ".")
	var tags []string
	for _, v := range uniq(major, version) {
		tags = append(tags, v+"-"+suite+"-slim", v+"-slim", v+"-"+suite, v)
	}
	return tags, []string{"NODE_VERSION=" + version}, nil
}

// uniq returns short and long, or only short when they are equal.
func uniq(short, long string) []string {
	if short == long {
		return []string{short}
	}
	return []string{short, long}
}

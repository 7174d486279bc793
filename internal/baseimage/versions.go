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

// officialNodeTags tags a Node image built from the official Node build
// (see officialNodeSpec) like the official images of its version line: for
// the major ("24"), the minor ("24.21"), the full version and each alias
// ("lts", "krypton"), the tags v-bookworm-slim, v-slim, v-bookworm and v.
// It sets NODE_VERSION and YARN_VERSION, and NODE_EXTRA_CA_CERTS when the
// rootfs trusts extra CA certificates (see Options.CACerts): the official
// Node build trusts only the root certificates compiled into it, not the
// system's store, so without it npm could not get through an intercepting
// proxy.
func officialNodeTags(aliases ...string) func(rootfs, suite string) ([]string, []string, error) {
	return func(rootfs, suite string) ([]string, []string, error) {
		version, err := nodeHeaderVersion(rootfs)
		if err != nil {
			return nil, nil, err
		}
		parts := strings.Split(version, ".")
		names := append([]string{parts[0], parts[0] + "." + parts[1], version}, aliases...)
		var tags []string
		for _, v := range names {
			tags = append(tags, v+"-"+suite+"-slim", v+"-slim", v+"-"+suite, v)
		}
		env := []string{"NODE_VERSION=" + version}
		yarn, _ := filepath.Glob(filepath.Join(rootfs, "opt/yarn-v*"))
		if len(yarn) != 1 {
			return nil, nil, fmt.Errorf("want one /opt/yarn-v*, found %d", len(yarn))
		}
		env = append(env, "YARN_VERSION="+strings.TrimPrefix(filepath.Base(yarn[0]), "yarn-v"))
		extra, err := readCABundle(filepath.Join(rootfs, "usr/local/share/ca-certificates"))
		if err != nil {
			return nil, nil, err
		}
		if len(extra.files) > 0 {
			env = append(env, "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt")
		}
		return tags, env, nil
	}
}

// nodeHeaderVersion reads the version of the Node build unpacked into
// rootfs/usr/local from its node_version.h ("24.21.0").
func nodeHeaderVersion(rootfs string) (string, error) {
	b, err := os.ReadFile(filepath.Join(rootfs, "usr/local/include/node/node_version.h"))
	if err != nil {
		return "", fmt.Errorf("reading the Node version: %w", err)
	}
	var nums [3]string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "#define" {
			continue
		}
		for i, name := range []string{"NODE_MAJOR_VERSION", "NODE_MINOR_VERSION", "NODE_PATCH_VERSION"} {
			if f[1] == name && nums[i] == "" {
				nums[i] = f[2]
			}
		}
	}
	version := strings.Join(nums[:], ".")
	if _, ok := parseRelease(version); !ok {
		return "", fmt.Errorf("unexpected Node version %q in node_version.h", version)
	}
	return version, nil
}

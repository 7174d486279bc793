package runc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// user is the identity the instance's process runs as.
type user struct {
	uid, gid uint32
	groups   []uint32 // supplementary groups
	home     string
}

// resolveUser resolves an image's User ("", "uid", "uid:gid", "name" or
// "name:group") against the image's /etc/passwd and /etc/group, read inside
// rootfs. Names that cannot be resolved are an error; numeric IDs need no
// entry. The primary group defaults to the passwd entry's, else 0, and the
// home directory to the entry's, else "/".
func resolveUser(rootfs, spec string) (user, error) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return user{}, err
	}
	defer root.Close()
	passwd := readDB(root, "etc/passwd")
	groups := readDB(root, "etc/group")

	uspec, gspec, hasGroup := strings.Cut(spec, ":")
	u := user{home: "/"}
	var name string
	var entry []string
	if uspec == "" {
		uspec = "0"
	}
	if n, err := strconv.ParseUint(uspec, 10, 32); err == nil {
		u.uid = uint32(n)
		entry = findEntry(passwd, 2, uspec)
	} else {
		if entry = findEntry(passwd, 0, uspec); entry == nil {
			return user{}, fmt.Errorf("resolving user %q: no such user in the image's /etc/passwd", uspec)
		}
		n, err := strconv.ParseUint(entry[2], 10, 32)
		if err != nil {
			return user{}, fmt.Errorf("resolving user %q: bad uid %q", uspec, entry[2])
		}
		u.uid = uint32(n)
	}
	if entry != nil {
		name = entry[0]
		if g, err := strconv.ParseUint(entry[3], 10, 32); err == nil {
			u.gid = uint32(g)
		}
		if entry[5] != "" {
			u.home = entry[5]
		}
	}
	if hasGroup {
		if n, err := strconv.ParseUint(gspec, 10, 32); err == nil {
			u.gid = uint32(n)
		} else {
			g := findEntry(groups, 0, gspec)
			if g == nil {
				return user{}, fmt.Errorf("resolving group %q: no such group in the image's /etc/group", gspec)
			}
			n, err := strconv.ParseUint(g[2], 10, 32)
			if err != nil {
				return user{}, fmt.Errorf("resolving group %q: bad gid %q", gspec, g[2])
			}
			u.gid = uint32(n)
		}
	} else if name != "" {
		for _, g := range groups {
			if len(g) < 4 || !slices.Contains(strings.Split(g[3], ","), name) {
				continue
			}
			if n, err := strconv.ParseUint(g[2], 10, 32); err == nil && uint32(n) != u.gid && !slices.Contains(u.groups, uint32(n)) {
				u.groups = append(u.groups, uint32(n))
			}
		}
	}
	return u, nil
}

// readDB reads a colon-separated database such as /etc/passwd. A missing
// or unreadable file (or one behind a symlink leaving the image) is empty.
func readDB(root *os.Root, name string) [][]string {
	b, err := root.ReadFile(name)
	if err != nil {
		return nil
	}
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		for len(f) < 7 {
			f = append(f, "")
		}
		out = append(out, f)
	}
	return out
}

func findEntry(db [][]string, field int, value string) []string {
	for _, e := range db {
		if e[field] == value {
			return e
		}
	}
	return nil
}

// ImageUser resolves an image's User against the image's files under rootfs,
// as the driver does for the instance's process (see resolveUser). It is for
// benchmarks that run an image's command outside a sandbox.
func ImageUser(rootfs, spec string) (uid, gid uint32, groups []uint32, home string, err error) {
	u, err := resolveUser(rootfs, spec)
	return u.uid, u.gid, u.groups, u.home, err
}

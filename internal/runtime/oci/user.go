package oci

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// User is the identity an image's process runs as.
type User struct {
	UID, GID uint32
	Groups   []uint32 // supplementary groups
	Home     string
}

// ResolveUser resolves an image's User ("", "uid", "uid:gid", "name" or
// "name:group") against the image's /etc/passwd and /etc/group, read inside
// rootfs. Names that cannot be resolved are an error; numeric IDs need no
// entry. The primary group defaults to the passwd entry's, else 0, and the
// home directory to the entry's, else "/".
func ResolveUser(rootfs, spec string) (User, error) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return User{}, err
	}
	defer root.Close()
	passwd := readDB(root, "etc/passwd")
	groups := readDB(root, "etc/group")

	uspec, gspec, hasGroup := strings.Cut(spec, ":")
	u := User{Home: "/"}
	var name string
	var entry []string
	if uspec == "" {
		uspec = "0"
	}
	if n, err := strconv.ParseUint(uspec, 10, 32); err == nil {
		u.UID = uint32(n)
		entry = findEntry(passwd, 2, uspec)
	} else {
		if entry = findEntry(passwd, 0, uspec); entry == nil {
			return User{}, fmt.Errorf("resolving user %q: no such user in the image's /etc/passwd", uspec)
		}
		n, err := strconv.ParseUint(entry[2], 10, 32)
		if err != nil {
			return User{}, fmt.Errorf("resolving user %q: bad uid %q", uspec, entry[2])
		}
		u.UID = uint32(n)
	}
	if entry != nil {
		name = entry[0]
		if g, err := strconv.ParseUint(entry[3], 10, 32); err == nil {
			u.GID = uint32(g)
		}
		if entry[5] != "" {
			u.Home = entry[5]
		}
	}
	if hasGroup {
		if n, err := strconv.ParseUint(gspec, 10, 32); err == nil {
			u.GID = uint32(n)
		} else {
			g := findEntry(groups, 0, gspec)
			if g == nil {
				return User{}, fmt.Errorf("resolving group %q: no such group in the image's /etc/group", gspec)
			}
			n, err := strconv.ParseUint(g[2], 10, 32)
			if err != nil {
				return User{}, fmt.Errorf("resolving group %q: bad gid %q", gspec, g[2])
			}
			u.GID = uint32(n)
		}
	} else if name != "" {
		for _, g := range groups {
			if len(g) < 4 || !slices.Contains(strings.Split(g[3], ","), name) {
				continue
			}
			if n, err := strconv.ParseUint(g[2], 10, 32); err == nil && uint32(n) != u.GID && !slices.Contains(u.Groups, uint32(n)) {
				u.Groups = append(u.Groups, uint32(n))
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

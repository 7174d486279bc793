package runc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/slipwayhq/slipway/internal/runtime/oci"
)

// Instances run in user namespaces: each instance gets one of its own,
// mapping its user and group IDs 0–(size-1) to one range of the host's, the
// same for every instance of the server. Root in an instance is then an
// unprivileged user on the host, whose capabilities reach only what its
// namespaces own. Images are unpacked with their files owned by the mapped
// IDs (oci.NewMappedCache), once per image for all instances, so a file of
// user 1000 in the image is 1000 inside and base+1000 on the host.

const (
	// DefaultIDBase is the first host ID of the default range: 0x70000000,
	// past what useradd hands out in /etc/subuid by default (up to
	// 600100000) and what systemd-nspawn picks for containers
	// (524288–1879048191), and below 2^31, which some tools take for a
	// negative number.
	DefaultIDBase = 1879048192
	// MinIDRange is the least size of a range: every 16-bit ID, nobody
	// (65534) among them, so that the users of common images all map.
	MinIDRange = 65536
	// subIDUser names the range in /etc/subuid and /etc/subgid.
	subIDUser = "slipway"
)

// DefaultIDs returns the range that the entries of the user "slipway" in
// /etc/subuid and /etc/subgid name, if both files have one, else
// MinIDRange IDs from DefaultIDBase.
func DefaultIDs() (oci.IDMap, error) {
	return defaultIDs("/etc/subuid", "/etc/subgid")
}

func defaultIDs(subuid, subgid string) (oci.IDMap, error) {
	uid, usize, uerr := subID(subuid)
	gid, gsize, gerr := subID(subgid)
	switch {
	case errors.Is(uerr, os.ErrNotExist) && errors.Is(gerr, os.ErrNotExist):
		return oci.IDMap{HostUID: DefaultIDBase, HostGID: DefaultIDBase, Size: MinIDRange}, nil
	case uerr != nil && !errors.Is(uerr, os.ErrNotExist):
		return oci.IDMap{}, uerr
	case gerr != nil && !errors.Is(gerr, os.ErrNotExist):
		return oci.IDMap{}, gerr
	case uerr != nil || gerr != nil:
		return oci.IDMap{}, fmt.Errorf("%s and %s must both have a %q entry, or neither", subuid, subgid, subIDUser)
	}
	m := oci.IDMap{HostUID: uid, HostGID: gid, Size: min(usize, gsize)}
	if err := checkIDs(m); err != nil {
		return oci.IDMap{}, fmt.Errorf("the %q entries of %s and %s: %w", subIDUser, subuid, subgid, err)
	}
	return m, nil
}

// subID returns the first range of the user "slipway" in a subordinate ID
// file (lines "NAME:START:COUNT"); os.ErrNotExist if there is none.
func subID(path string) (start, size uint32, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || name != subIDUser {
			continue
		}
		s, n, ok := strings.Cut(rest, ":")
		a, err1 := strconv.ParseUint(s, 10, 32)
		b, err2 := strconv.ParseUint(n, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("%s: bad entry %q", path, sc.Text())
		}
		return uint32(a), uint32(b), nil
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	return 0, 0, fmt.Errorf("%s: no entry for %q: %w", path, subIDUser, os.ErrNotExist)
}

// ParseIDs parses a range of host IDs as the server's --userns-range
// takes it: "BASE" (MinIDRange IDs), "BASE:SIZE", the same for users and
// groups, or "UID:GID:SIZE".
func ParseIDs(s string) (oci.IDMap, error) {
	f := strings.Split(s, ":")
	n := make([]uint32, len(f))
	for i, v := range f {
		u, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return oci.IDMap{}, fmt.Errorf("bad ID range %q: want BASE, BASE:SIZE or UID:GID:SIZE", s)
		}
		n[i] = uint32(u)
	}
	var m oci.IDMap
	switch len(n) {
	case 1:
		m = oci.IDMap{HostUID: n[0], HostGID: n[0], Size: MinIDRange}
	case 2:
		m = oci.IDMap{HostUID: n[0], HostGID: n[0], Size: n[1]}
	case 3:
		m = oci.IDMap{HostUID: n[0], HostGID: n[1], Size: n[2]}
	default:
		return oci.IDMap{}, fmt.Errorf("bad ID range %q: want BASE, BASE:SIZE or UID:GID:SIZE", s)
	}
	if err := checkIDs(m); err != nil {
		return oci.IDMap{}, fmt.Errorf("ID range %q: %w", s, err)
	}
	return m, nil
}

// checkIDs checks that a range holds every 16-bit ID, leaves out the
// host's root and fits below 2^32-1 (which means "no ID").
func checkIDs(m oci.IDMap) error {
	switch {
	case m.Size < MinIDRange:
		return fmt.Errorf("%d IDs are too few: at least %d", m.Size, MinIDRange)
	case m.HostUID == 0 || m.HostGID == 0:
		return errors.New("the range may not hold the host's root (ID 0)")
	case uint64(m.HostUID)+uint64(m.Size) > 1<<32-1 || uint64(m.HostGID)+uint64(m.Size) > 1<<32-1:
		return errors.New("the range passes the last ID (4294967294)")
	}
	return nil
}

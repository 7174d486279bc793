package oci

import "fmt"

// IDMap maps the user and group IDs of an image to a range of the host's,
// as a user namespace with one mapping each for users and groups does: ID
// n of the image (n < Size) is HostUID+n for users and HostGID+n for
// groups on the host. An ID at or past Size, which such a namespace could
// not show, is mapped as nobody (65534) is. The zero IDMap maps every ID
// to itself.
type IDMap struct {
	HostUID, HostGID uint32
	Size             uint32
}

// Identity reports whether m maps every ID to itself.
func (m IDMap) Identity() bool { return m.Size == 0 }

// UID returns the host user ID of an image's user ID id.
func (m IDMap) UID(id int) int { return m.shift(m.HostUID, id) }

// GID returns the host group ID of an image's group ID id.
func (m IDMap) GID(id int) int { return m.shift(m.HostGID, id) }

func (m IDMap) shift(base uint32, id int) int {
	if m.Identity() {
		return id
	}
	if id < 0 || uint64(id) >= uint64(m.Size) {
		id = int(min(65534, m.Size-1))
	}
	return int(base) + id
}

// String describes m as "HOSTUID:HOSTGID:SIZE" ("identity" for the zero
// IDMap).
func (m IDMap) String() string {
	if m.Identity() {
		return "identity"
	}
	return fmt.Sprintf("%d:%d:%d", m.HostUID, m.HostGID, m.Size)
}

// suffix tells apart, in a Cache, the trees of one image unpacked with
// different maps: empty for the identity, whose trees keep the names of
// older Slipways.
func (m IDMap) suffix() string {
	if m.Identity() {
		return ""
	}
	return fmt.Sprintf("-u%d-g%d-n%d", m.HostUID, m.HostGID, m.Size)
}

// Package topdir marks directories as the top of a directory hierarchy for
// ext4's block allocator (chattr +T, FS_TOPDIR_FL).
//
// ext4 places a new directory's inodes near its parent's. Where many inodes
// were freed in the last half minute (a build's temporary files), every
// inode allocation in that block group is slow on ext4 without a journal:
// hundreds of microseconds a file, seconds for an image of ten thousand
// files. A directory marked as a top directory has the directories made in
// it spread over block groups with free inodes instead. Slipway marks the
// directories it unpacks images into (the runc driver's images, BuildKit's
// snapshots).
package topdir

import "golang.org/x/sys/unix"

// fsTopDir is FS_TOPDIR_FL, which x/sys/unix does not define.
const fsTopDir = 0x00020000

// Mark flags dir as a top directory. It is best effort: other filesystems
// ignore or refuse the flag, which is fine, so errors are not reported.
func Mark(dir string) {
	fd, flags, ok := open(dir)
	if !ok {
		return
	}
	defer unix.Close(fd)
	if flags&fsTopDir == 0 {
		unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsTopDir))
	}
}

// Marked reports whether dir carries the flag.
func Marked(dir string) bool {
	fd, flags, ok := open(dir)
	if ok {
		unix.Close(fd)
	}
	return ok && flags&fsTopDir != 0
}

// open opens directory dir and reads its inode flags.
func open(dir string) (fd int, flags uint32, ok bool) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, 0, false
	}
	if flags, err = unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS); err != nil {
		unix.Close(fd)
		return -1, 0, false
	}
	return fd, flags, true
}

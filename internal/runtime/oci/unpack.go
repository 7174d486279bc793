package oci

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"
	"unsafe"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// extractLayers writes the filesystem of an image made of layers (bottom
// first, as v1.Image.Layers returns them) into the directory dir, keeping
// modes and times, and ownership as ids maps it (dir itself, and the
// directories that no entry describes, belong to the image's root).
// Nothing in the tree may grant privileges on the host that holds it:
// setuid and setgid bits of files are cleared, file capabilities dropped
// and device nodes left out (see mode). Each layer
// is streamed from its registry, decompressed and written in one pass,
// upper layers first, applying whiteouts as mutate.Extract does (an entry
// shadowed by an upper layer is skipped); it never builds a flattened
// tarball. Every path is resolved inside dir as if dir were the root
// (openat2 with RESOLVE_IN_ROOT: "..", absolute symlinks and links pointing
// out of the tree stay in it), so entries and links cannot write or link
// outside it.
//
// Because upper layers come first, an entry whose path already exists was
// superseded by an upper layer and is skipped, and directories may appear
// after their contents; their metadata is applied at the end.
//
// The work is done on file descriptors: each entry costs a handful of
// system calls relative to an open parent directory (kept open while
// entries of the same directory follow each other), not a walk from dir
// per operation. Nothing is synced: see Cache.unpack for durability.
func extractLayers(ctx context.Context, layers []v1.Layer, dir string, ids IDMap) error {
	x, err := newExtractor(dir, ids)
	if err != nil {
		return err
	}
	defer x.close()
	if !ids.Identity() {
		if err := unix.Fchownat(x.root, "", ids.UID(0), ids.GID(0), unix.AT_EMPTY_PATH); err != nil {
			return &pathError{"chown", dir, err}
		}
	}
	fl := &flattener{seen: map[string]bool{}, opaque: map[string]bool{}}
	for i := len(layers) - 1; i >= 0; i-- {
		if err := applyLayer(ctx, x, fl, layers[i]); err != nil {
			return err
		}
	}
	return x.finish()
}

func applyLayer(ctx context.Context, x *extractor, fl *flattener, l v1.Layer) error {
	raw, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("reading layer: %w", err)
	}
	defer raw.Close()
	r, closeDec, err := decompress(raw)
	if err != nil {
		return fmt.Errorf("reading layer: %w", err)
	}
	defer closeDec()
	fl.layerOpaque = map[string]bool{}
	if err := x.apply(ctx, tar.NewReader(r), fl); err != nil {
		return err
	}
	// Opaque directories of this layer hide entries of lower layers only.
	for d := range fl.layerOpaque {
		fl.opaque[d] = true
	}
	// Read both streams to the end, so that the layer's digest (of the
	// compressed bytes) is verified.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("verifying layer: %w", err)
	}
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return fmt.Errorf("verifying layer: %w", err)
	}
	return nil
}

// decompress returns the uncompressed stream of a layer blob, telling
// gzip, zstd and uncompressed blobs apart by their first bytes as
// go-containerregistry does, but with klauspost/compress's decoders
// (its gzip decoder is about twice as fast as the standard library's).
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// flattener applies the layer semantics of mutate.Extract to the entries
// of layers read upper first: it tells which entries survive.
type flattener struct {
	// seen holds the paths of upper layers: true for a file or a whiteout
	// (hiding whatever is at or below the path in lower layers), false for
	// a directory.
	seen        map[string]bool
	opaque      map[string]bool // directories made opaque by upper layers
	layerOpaque map[string]bool // made opaque by the current layer
}

const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// keep reports whether entry hdr (its name cleaned) of the current layer
// belongs to the flattened filesystem, and records it.
func (f *flattener) keep(hdr *tar.Header) bool {
	dir, base := path.Dir(hdr.Name), path.Base(hdr.Name)
	if base == opaqueWhiteout {
		f.layerOpaque[dir] = true
		return false
	}
	if (hdr.Typeflag == tar.TypeSymlink || hdr.Typeflag == tar.TypeLink) && escapes(hdr.Name, hdr.Linkname) {
		return false // as mutate.Extract does
	}
	name, tombstone := hdr.Name, false
	if rest, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
		name, tombstone = path.Join(dir, rest), true
	}
	if _, ok := f.seen[name]; ok && !tombstone {
		return false
	}
	for p := path.Dir(name); ; p = path.Dir(p) {
		if f.seen[p] || f.opaque[p] {
			return false
		}
		if p == "." {
			break
		}
	}
	f.seen[name] = tombstone || hdr.Typeflag != tar.TypeDir
	return !tombstone
}

// escapes reports whether a relative link target leaves the root when
// resolved from the link's directory.
func escapes(name, target string) bool {
	target = path.Clean(target)
	if path.IsAbs(target) {
		return false
	}
	resolved := path.Clean(path.Join(path.Dir(name), target))
	return resolved == ".." || strings.HasPrefix(resolved, "../")
}

// apply writes the entries of one tar stream; fl, if not nil, filters
// them.
func (x *extractor) apply(ctx context.Context, tr *tar.Reader, fl *flattener) error {
	for n := 0; ; n++ {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading image filesystem: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
		if name == "." || name == ".." || strings.HasPrefix(name, "../") {
			continue
		}
		hdr.Name = name
		if fl != nil && !fl.keep(hdr) {
			continue
		}
		if hdr.Typeflag == tar.TypeLink {
			x.links = append(x.links, link{name, path.Clean(strings.TrimPrefix(hdr.Linkname, "/"))})
			continue
		}
		pfd, err := x.parent(path.Dir(name))
		if err != nil {
			return fmt.Errorf("creating %s: %w", path.Dir(name), err)
		}
		base := path.Base(name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			err := unix.Mkdirat(pfd, base, 0o700)
			if err != nil && err != unix.EEXIST {
				return &pathError{"creating", name, err}
			}
			// An implicit directory, made for entries of an upper layer,
			// gets its metadata too.
			if err == nil || x.isDir(pfd, base) {
				x.known[name] = true
				x.dirs = append(x.dirs, hdr)
			}
		case tar.TypeReg, tar.TypeRegA:
			if err := x.writeFile(pfd, base, hdr, tr); err != nil {
				return &pathError{"writing", name, err}
			}
		case tar.TypeSymlink:
			if err := unix.Symlinkat(hdr.Linkname, pfd, base); err == unix.EEXIST {
				continue
			} else if err != nil {
				return &pathError{"creating symlink", name, err}
			}
			if err := unix.Fchownat(pfd, base, x.ids.UID(hdr.Uid), x.ids.GID(hdr.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return &pathError{"chown", name, err}
			}
		case tar.TypeFifo:
			if err := mknod(pfd, base, hdr, x.ids); err != nil {
				return &pathError{"creating fifo", name, err}
			}
		case tar.TypeChar, tar.TypeBlock:
			// Left out: a device node in the tree would open a host
			// device to whoever reaches it. An instance gets its devices
			// from the runtime (/dev), never from its image.
		}
	}
}

// finish makes the hard links and sets the metadata of directories, once
// every entry is written.
func (x *extractor) finish() error {
	for _, l := range x.links {
		if err := x.link(l.target, l.name); err != nil {
			return &pathError{"creating hard link", l.name, err}
		}
	}
	for i := len(x.dirs) - 1; i >= 0; i-- {
		if err := x.dirMeta(x.dirs[i]); err != nil {
			return &pathError{"setting metadata of", x.dirs[i].Name, err}
		}
	}
	return nil
}

type pathError struct {
	op, path string
	err      error
}

func (e *pathError) Error() string { return e.op + " " + e.path + ": " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

// extractor writes entries into a tree.
type extractor struct {
	root       int             // the tree's root directory (O_PATH)
	ids        IDMap           // maps the entries' owners
	known      map[string]bool // directories known to exist
	parentName string          // the directory parentFD is open on
	parentFD   int             // O_PATH; -1 if none
	buf        []byte
	links      []link        // hard links, made at the end
	dirs       []*tar.Header // directories, whose metadata is set at the end
}

type link struct{ name, target string }

func newExtractor(dir string, ids IDMap) (*extractor, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &pathError{"opening", dir, err}
	}
	return &extractor{root: fd, ids: ids, known: map[string]bool{".": true}, parentFD: -1, buf: make([]byte, 256<<10)}, nil
}

func (x *extractor) close() {
	if x.parentFD >= 0 {
		unix.Close(x.parentFD)
	}
	unix.Close(x.root)
}

// openIn opens name (a path relative to the root) as if the root were /.
func (x *extractor) openIn(name string, flags uint64) (int, error) {
	for {
		fd, err := unix.Openat2(x.root, name, &unix.OpenHow{
			Flags:   flags | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err == unix.EINTR || err == unix.EAGAIN { // EAGAIN: a rename raced the lookup
			continue
		}
		return fd, err
	}
}

// parent returns a descriptor of directory dir (relative to the root),
// creating it and its parents if needed. The descriptor stays owned by x.
func (x *extractor) parent(dir string) (int, error) {
	if dir == "." {
		return x.root, nil
	}
	if x.parentFD >= 0 && x.parentName == dir {
		return x.parentFD, nil
	}
	if !x.known[dir] {
		if err := x.mkdirAll(dir); err != nil {
			return -1, err
		}
	}
	fd, err := x.openIn(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return -1, err
	}
	if x.parentFD >= 0 {
		unix.Close(x.parentFD)
	}
	x.parentName, x.parentFD = dir, fd
	return fd, nil
}

// mkdirAll creates dir and its missing parents with mode 0755, as
// MkdirAll does; an existing entry (even a symlink to a directory) is
// accepted, and resolving a path through it then fails if it is none.
func (x *extractor) mkdirAll(dir string) error {
	if x.known[dir] || dir == "." {
		return nil
	}
	parent := path.Dir(dir)
	if err := x.mkdirAll(parent); err != nil {
		return err
	}
	pfd := x.root
	if parent != "." {
		fd, err := x.openIn(parent, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		pfd = fd
	}
	err := unix.Mkdirat(pfd, path.Base(dir), 0o755)
	if err == nil && !x.ids.Identity() {
		err = unix.Fchownat(pfd, path.Base(dir), x.ids.UID(0), x.ids.GID(0), unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil && err != unix.EEXIST {
		return err
	}
	x.known[dir] = true
	return nil
}

// isDir reports whether name in directory pfd is a directory (not a
// symlink to one).
func (x *extractor) isDir(pfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// writeFile creates the regular file name in directory pfd from r. A file
// that exists already (from an upper layer) is left alone.
func (x *extractor) writeFile(pfd int, name string, hdr *tar.Header, r io.Reader) error {
	fd, err := unix.Openat(pfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err == unix.EEXIST {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for remaining := hdr.Size; remaining > 0; {
		b := x.buf
		if int64(len(b)) > remaining {
			b = b[:remaining]
		}
		n, err := io.ReadFull(r, b)
		if err != nil {
			return fmt.Errorf("reading image filesystem: %w", err)
		}
		if err := writeAll(fd, b[:n]); err != nil {
			return err
		}
		remaining -= int64(n)
	}
	// File capabilities (setcap, a PAX xattr) are not written: like a
	// setuid bit, they would grant privileges to whoever runs the file.
	if err := unix.Fchown(fd, x.ids.UID(hdr.Uid), x.ids.GID(hdr.Gid)); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, mode(hdr)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if ts, ok := times(hdr); ok {
		if err := futimens(fd, &ts); err != nil {
			return fmt.Errorf("setting times: %w", err)
		}
	}
	return nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// link creates the hard link name to target, both relative to the root.
// The target may have been deleted by an upper layer; the link's content
// is then unknown and the link is left out.
func (x *extractor) link(target, name string) error {
	tfd, err := x.openIn(target, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return nil
	}
	defer unix.Close(tfd)
	var st unix.Stat_t
	if err := unix.Fstat(tfd, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil
	}
	pfd, err := x.parent(path.Dir(name))
	if err != nil {
		return err
	}
	err = unix.Linkat(tfd, "", pfd, path.Base(name), unix.AT_EMPTY_PATH)
	if err == unix.EPERM || err == unix.ENOENT { // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(tfd), pfd, path.Base(name), unix.AT_SYMLINK_FOLLOW)
	}
	if err == unix.EEXIST {
		return nil
	}
	return err
}

// dirMeta sets the owner, mode and times of a directory entry.
func (x *extractor) dirMeta(hdr *tar.Header) error {
	fd, err := x.openIn(hdr.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err == unix.ENOTDIR || err == unix.ELOOP || err == unix.ENOENT {
		return nil // replaced by a non-directory
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, x.ids.UID(hdr.Uid), x.ids.GID(hdr.Gid)); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, mode(hdr)); err != nil {
		return err
	}
	if ts, ok := times(hdr); ok {
		return futimens(fd, &ts)
	}
	return nil
}

// mknod creates a fifo (the only kind of node an image may hold).
func mknod(pfd int, name string, hdr *tar.Header, ids IDMap) error {
	if err := unix.Mknodat(pfd, name, mode(hdr)|unix.S_IFIFO, 0); err == unix.EEXIST {
		return nil
	} else if err != nil {
		return err
	}
	if err := unix.Fchownat(pfd, name, ids.UID(hdr.Uid), ids.GID(hdr.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	// The node was just made, so it is no symlink to follow.
	if err := unix.Fchmodat(pfd, name, mode(hdr), 0); err != nil {
		return err
	}
	if ts, ok := times(hdr); ok {
		return unix.UtimesNanoAt(pfd, name, ts[:], unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// mode is the permission and sticky bits of an entry, and for a directory
// its setgid bit (new files inherit its group: no privilege). The setuid
// and setgid bits of files are cleared: the unpacked tree lives on the
// host, where a setuid-root file would be a root shell for anyone who
// reaches it, and in an instance they would do nothing anyway (its
// processes run with no_new_privs).
func mode(hdr *tar.Header) uint32 {
	m := uint32(hdr.Mode & 0o7777)
	if hdr.Typeflag == tar.TypeDir {
		return m &^ unix.S_ISUID
	}
	return m &^ (unix.S_ISUID | unix.S_ISGID)
}

// times returns the access and modification times of an entry; false if
// it has none.
func times(hdr *tar.Header) ([2]unix.Timespec, bool) {
	if hdr.ModTime.IsZero() {
		return [2]unix.Timespec{}, false
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return [2]unix.Timespec{timespec(atime), timespec(hdr.ModTime)}, true
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// futimens sets the times of the file open as fd (utimensat with a null
// path, which x/sys/unix does not wrap).
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// Unpack writes the filesystem of img into dir, which must exist, as every
// driver unpacks images (see extractLayers): layers streamed and flattened
// in one pass with their whiteouts applied, ownership, modes and times
// kept, no setuid or setgid file, file capability or device node written,
// and no entry or link reaching outside dir. Nothing is synced.
func Unpack(ctx context.Context, img v1.Image, dir string) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("listing the image's layers: %w", err)
	}
	return extractLayers(ctx, layers, dir, IDMap{})
}

package runc

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// extract writes the flattened image filesystem read from r (the output
// of mutate.Extract: whiteouts already applied, upper layers first) into
// the directory dir, keeping ownership, modes, times, device nodes and file
// capabilities. Every path is resolved inside dir (os.Root), so entries and
// links cannot write outside it.
//
// Because upper layers come first, an entry whose path already exists was
// superseded by an upper layer and is skipped, and directories may appear
// after their contents; their metadata is applied at the end.
func extract(ctx context.Context, r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	type link struct{ name, target string }
	var (
		links []link
		dirs  []*tar.Header
	)
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading image filesystem: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
		if name == "." || name == ".." || strings.HasPrefix(name, "../") {
			continue
		}
		if _, err := root.Lstat(name); err == nil {
			if hdr.Typeflag == tar.TypeDir {
				dirs = append(dirs, hdr) // an implicit directory gets its metadata
			}
			continue
		}
		if parent := path.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("creating %s: %w", parent, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, 0o700); err != nil {
				return fmt.Errorf("creating %s: %w", name, err)
			}
			dirs = append(dirs, hdr)
		case tar.TypeReg, tar.TypeRegA:
			if err := writeFile(root, name, hdr, tr); err != nil {
				return fmt.Errorf("writing %s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return fmt.Errorf("creating symlink %s: %w", name, err)
			}
			if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
				return fmt.Errorf("chown %s: %w", name, err)
			}
		case tar.TypeLink:
			links = append(links, link{name, path.Clean(strings.TrimPrefix(hdr.Linkname, "/"))})
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			if err := mknod(root, name, hdr); err != nil {
				return fmt.Errorf("creating device %s: %w", name, err)
			}
		}
	}
	for _, l := range links {
		// The target may have been deleted by an upper layer; the link's
		// content is then unknown and the link is left out.
		if _, err := root.Lstat(l.target); err != nil {
			continue
		}
		if err := root.Link(l.target, l.name); err != nil {
			return fmt.Errorf("creating hard link %s: %w", l.name, err)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		hdr := dirs[i]
		name := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
		if fi, err := root.Lstat(name); err != nil || !fi.IsDir() {
			continue
		}
		if err := setMeta(root, name, hdr); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(root *os.Root, name string, hdr *tar.Header, r io.Reader) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	// File capabilities (setcap) travel as a PAX xattr.
	if c, ok := hdr.PAXRecords["SCHILY.xattr.security.capability"]; ok {
		if err := unix.Fsetxattr(int(f.Fd()), "security.capability", []byte(c), 0); err != nil {
			f.Close()
			return fmt.Errorf("setting file capabilities: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return setMeta(root, name, hdr)
}

func mknod(root *os.Root, name string, hdr *tar.Header) error {
	parent, err := root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer parent.Close()
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode |= unix.S_IFCHR
	case tar.TypeBlock:
		mode |= unix.S_IFBLK
	case tar.TypeFifo:
		mode |= unix.S_IFIFO
	}
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	if err := unix.Mknodat(int(parent.Fd()), path.Base(name), mode, dev); err != nil {
		return err
	}
	return setMeta(root, name, hdr)
}

// setMeta sets the owner, mode and times of an entry that is not a
// symlink. The owner goes first: chown clears setuid and setgid bits.
func setMeta(root *os.Root, name string, hdr *tar.Header) error {
	if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown %s: %w", name, err)
	}
	if err := root.Chmod(name, hdr.FileInfo().Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	if err := root.Chtimes(name, atime, hdr.ModTime); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("setting times of %s: %w", name, err)
	}
	return nil
}

package baseimage

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// skipContents lists the directories whose contents never go into a layer:
// the runtime mounts its own /dev, /proc and /sys.
var skipContents = map[string]bool{"dev": true, "proc": true, "sys": true}

// layerMeta describes a compressed layer file kept in the cache.
type layerMeta struct {
	Digest  string    `json:"digest"`
	DiffID  string    `json:"diffID"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	// MediaType is the layer's OCI media type; empty in the metadata of
	// layers cached before zstd, which are gzip-compressed.
	MediaType types.MediaType `json:"mediaType,omitempty"`
}

// fileLayer is a compressed layer in a file whose digests are known:
// zstd-compressed when written by writeLayer, gzip-compressed when cached
// by an older build.
type fileLayer struct {
	path string
	meta layerMeta
}

func (l *fileLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.meta.Digest) }
func (l *fileLayer) DiffID() (v1.Hash, error) { return v1.NewHash(l.meta.DiffID) }
func (l *fileLayer) Size() (int64, error)     { return l.meta.Size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) {
	if l.meta.MediaType == "" {
		return types.OCILayer, nil
	}
	return l.meta.MediaType, nil
}
func (l *fileLayer) Compressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	var zr io.Reader
	closeZ := func() {}
	if mt, _ := l.MediaType(); mt == types.OCILayerZStd {
		d, derr := zstd.NewReader(f)
		zr, closeZ, err = d, d.Close, derr
	} else {
		zr, err = gzip.NewReader(f)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, closerFunc(func() error { closeZ(); return f.Close() })}, nil
}

type closerFunc func() error

func (c closerFunc) Close() error { return c() }

var _ v1.Layer = (*fileLayer)(nil)

// loadLayer opens a cached layer written by writeLayer.
func loadLayer(file string) (*fileLayer, error) {
	b, err := os.ReadFile(file + ".json")
	if err != nil {
		return nil, err
	}
	var m layerMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("reading layer metadata %s: %w", file, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() != m.Size {
		return nil, fmt.Errorf("layer %s is missing or truncated", file)
	}
	return &fileLayer{path: file, meta: m}, nil
}

// writeLayer writes the layer holding rootfs (parent == "") or the
// difference from parent to rootfs, zstd-compressed, to file, with its
// digests in file.json.
//
// zstd rather than gzip because a layer is decompressed on every cold
// build: BuildKit (containerd) and the runtime unpack zstd several times
// faster than gzip, which was most of the 7 s it took to extract the
// golang image's layer.
func writeLayer(file, rootfs, parent string, created time.Time) (*fileLayer, error) {
	tmp := file + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("creating layer: %w", err)
	}
	defer os.Remove(tmp)
	defer f.Close()
	compressed := sha256.New()
	counter := &countWriter{}
	zw, err := zstd.NewWriter(io.MultiWriter(f, compressed, counter), zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, err
	}
	uncompressed := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, uncompressed))
	lw := &layerWriter{tw: tw, root: rootfs, emitted: map[string]bool{}, links: map[uint64]string{}}
	if err := lw.addTree(parent); err != nil {
		return nil, fmt.Errorf("writing layer from %s: %w", rootfs, err)
	}
	if parent != "" {
		if err := lw.addWhiteouts(parent); err != nil {
			return nil, fmt.Errorf("writing layer from %s: %w", rootfs, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing layer: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	meta := layerMeta{
		Digest:    "sha256:" + hex.EncodeToString(compressed.Sum(nil)),
		DiffID:    "sha256:" + hex.EncodeToString(uncompressed.Sum(nil)),
		Size:      counter.n,
		Created:   created.UTC().Truncate(time.Second),
		MediaType: types.OCILayerZStd,
	}
	if err := os.Rename(tmp, file); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("encoding layer metadata: %w", err)
	}
	if err := writeFileAtomic(file+".json", b, 0o644); err != nil {
		return nil, err
	}
	return &fileLayer{path: file, meta: meta}, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// layerWriter writes rootfs entries to a tar stream.
type layerWriter struct {
	tw      *tar.Writer
	root    string
	emitted map[string]bool   // directories written, by relative path
	links   map[uint64]string // inode of a multiply-linked file → first name written
}

// addTree writes every entry of the rootfs that differs from parent (all of
// them when parent is empty), each preceded by its parent directories.
func (w *layerWriter) addTree(parent string) error {
	return filepath.WalkDir(w.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(w.root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if parent == "" || changed(fi, p, filepath.Join(parent, rel)) {
			if err := w.add(rel, fi); err != nil {
				return err
			}
		}
		if d.IsDir() && skipContents[rel] {
			return filepath.SkipDir
		}
		return nil
	})
}

// addWhiteouts writes a whiteout for every entry of parent missing from the
// rootfs.
func (w *layerWriter) addWhiteouts(parent string) error {
	return filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(parent, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() && skipContents[rel] {
			return filepath.SkipDir
		}
		if _, err := os.Lstat(filepath.Join(w.root, rel)); errors.Is(err, fs.ErrNotExist) {
			dir, base := path.Split(rel)
			if err := w.parents(path.Join(dir, ".wh."+base)); err != nil {
				return err
			}
			hdr := &tar.Header{Typeflag: tar.TypeReg, Name: dir + ".wh." + base, Mode: 0o644, Format: tar.FormatPAX}
			if err := w.tw.WriteHeader(hdr); err != nil {
				return err
			}
			if d.IsDir() {
				return filepath.SkipDir
			}
		} else if err != nil {
			return err
		}
		return nil
	})
}

// changed reports whether the entry at p differs from the one at old.
func changed(fi fs.FileInfo, p, old string) bool {
	ofi, err := os.Lstat(old)
	if err != nil {
		return true
	}
	st, ost := fi.Sys().(*syscall.Stat_t), ofi.Sys().(*syscall.Stat_t)
	if fi.Mode() != ofi.Mode() || st.Uid != ost.Uid || st.Gid != ost.Gid {
		return true
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		a, _ := os.Readlink(p)
		b, _ := os.Readlink(old)
		return a != b
	}
	return fi.Size() != ofi.Size() || !fi.ModTime().Equal(ofi.ModTime())
}

// parents writes the directories above rel that are not written yet.
func (w *layerWriter) parents(rel string) error {
	dir := path.Dir(rel)
	if dir == "." || w.emitted[dir] {
		return nil
	}
	if err := w.parents(dir); err != nil {
		return err
	}
	fi, err := os.Lstat(filepath.Join(w.root, dir))
	if err != nil {
		return err
	}
	return w.add(dir, fi)
}

// add writes one entry.
func (w *layerWriter) add(rel string, fi fs.FileInfo) error {
	if fi.IsDir() && w.emitted[rel] {
		return nil
	}
	if err := w.parents(rel); err != nil {
		return err
	}
	full := filepath.Join(w.root, rel)
	var link string
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		l, err := os.Readlink(full)
		if err != nil {
			return err
		}
		link = l
	case fi.Mode()&fs.ModeSocket != 0:
		return nil // sockets cannot be archived
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("archiving %s: %w", rel, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	hdr.Name = rel
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
	hdr.Uname, hdr.Gname = "", ""
	hdr.ModTime = fi.ModTime().Truncate(time.Second)
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	hdr.Format = tar.FormatPAX
	if caps := getCapability(full); caps != "" {
		hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": caps}
	}
	if fi.Mode().IsRegular() && st.Nlink > 1 {
		if first, ok := w.links[st.Ino]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
		} else {
			w.links[st.Ino] = rel
		}
	}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archiving %s: %w", rel, err)
	}
	if fi.IsDir() {
		w.emitted[rel] = true
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		f, err := os.Open(full)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(w.tw, f, hdr.Size); err != nil {
			return fmt.Errorf("archiving %s: %w", rel, err)
		}
	}
	return nil
}

// getCapability returns a file's security.capability xattr (file
// capabilities such as ping's), or "".
func getCapability(p string) string {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, "security.capability", buf)
	if err != nil || n <= 0 {
		return ""
	}
	return string(buf[:n])
}

// writeFileAtomic writes a file through a temporary file and a rename.
func writeFileAtomic(name string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

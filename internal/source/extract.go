package source

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// Limits bounds what Extract accepts. The zero value works; a zero or
// negative field takes its default. The size of the compressed input is the
// caller's to bound (e.g. with http.MaxBytesReader).
type Limits struct {
	// MaxBytes bounds the total uncompressed size of all regular files.
	// If zero, 1 GiB.
	MaxBytes int64
	// MaxFiles bounds the number of entries created: files, directories
	// (including those only implied by a path), symbolic and hard links.
	// If zero, 100,000.
	MaxFiles int
	// MaxFileBytes bounds the uncompressed size of one file.
	// If zero, 512 MiB.
	MaxFileBytes int64
}

// Defaults for Limits.
const (
	DefaultMaxBytes     = 1 << 30
	DefaultMaxFiles     = 100_000
	DefaultMaxFileBytes = 512 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = DefaultMaxFileBytes
	}
	return l
}

// streamCap bounds the whole decompressed stream, tar headers and padding
// included, so that no sequence of metadata or trailing data can make
// Extract decompress without end: the file bytes, plus a generous 6 KiB of
// headers per entry, plus 1 MiB.
func (l Limits) streamCap() int64 {
	return l.MaxBytes + int64(l.MaxFiles)*6<<10 + 1<<20
}

// Stats describes what Extract created.
type Stats struct {
	Files    int   // regular files
	Dirs     int   // directories, including those only implied by a path
	Symlinks int   // symbolic links
	Links    int   // hard links
	Bytes    int64 // total size of the regular files
}

// Names longer than these are rejected before they reach the file system.
const (
	maxPathLen = 4096
	maxNameLen = 255
	// Symbolic links are resolved in memory after extraction: at most this
	// many links followed for one link (as Linux's MAXSYMLINKS)…
	maxLinkHops = 40
	// …and at most this many path components walked for all links together
	// (per entry allowed by MaxFiles, and at least minLinkSteps).
	linkStepsPerEntry = 32
	minLinkSteps      = 1 << 16
)

// Extract unpacks the gzip-compressed tar read from r into dir, which must
// be empty or not exist (it is then created). It treats the archive as
// hostile and rejects, with an *Error naming the offending entry:
//
//   - malformed, truncated or non-gzip input, and trailing garbage;
//   - absolute paths, and paths that leave dir through "..";
//   - symbolic links with an absolute target, or whose target, resolved from
//     the link's directory through the links of the final tree, leaves dir;
//   - any entry below a symbolic link (writing through a link), and any entry
//     that appears twice (except a directory repeated);
//   - hard links, unless they point to a regular file that appeared earlier
//     in the same archive (so they never reach outside dir);
//   - devices, fifos and every other entry type;
//   - archives exceeding lim (see Limits), and streams that decompress to
//     more than the files allow plus headers (MaxBytes + 6 KiB per entry
//     allowed by MaxFiles + 1 MiB), whatever they hold.
//
// Files keep their permission bits, with owner read and write added (owner
// rwx for directories) and setuid, setgid and sticky bits dropped; owners
// and times are not restored. On any error Extract removes everything it
// created (and dir itself if it created it), so the caller has nothing to
// clean up; Stats is then zero. Errors that are not the archive's fault
// (reading r, writing to disk) are returned wrapped, not as *Error.
func Extract(r io.Reader, dir string, lim Limits) (Stats, error) {
	createdDir, err := prepareDir(dir)
	if err != nil {
		return Stats{}, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Stats{}, errors.Join(fmt.Errorf("extracting into %s: %w", dir, err), cleanDir(dir, createdDir))
	}
	x := &extractor{
		root:    root,
		lim:     lim.withDefaults(),
		kinds:   make(map[string]entryKind),
		targets: make(map[string]string),
	}
	err = x.run(r)
	root.Close()
	if err != nil {
		var rej *Error
		if !errors.As(err, &rej) {
			err = fmt.Errorf("extracting into %s: %w", dir, err)
		}
		return Stats{}, errors.Join(err, cleanDir(dir, createdDir))
	}
	return x.stats, nil
}

// prepareDir makes sure dir exists and is empty.
func prepareDir(dir string) (created bool, err error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, fmt.Errorf("extracting: %w", err)
		}
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("extracting: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return false, fmt.Errorf("extracting into %s: directory is not empty", dir)
	}
	if err != nil && err != io.EOF {
		return false, fmt.Errorf("extracting into %s: %w", dir, err)
	}
	return false, nil
}

// cleanDir removes what Extract put into dir, and dir if Extract created it.
// os.RemoveAll never follows symbolic links, so it stays inside dir.
func cleanDir(dir string, created bool) error {
	if created {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("cleaning up %s: %w", dir, err)
		}
		return nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cleaning up %s: %w", dir, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("cleaning up %s: %w", dir, err)
	}
	var errs []error
	for _, n := range names {
		if err := os.RemoveAll(dir + string(os.PathSeparator) + n); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cleaning up %s: %w", dir, errors.Join(errs...))
	}
	return nil
}

type entryKind uint8

const (
	kindNone entryKind = iota
	kindDir
	kindFile // regular file or hard link
	kindSymlink
)

type extractor struct {
	root    *os.Root
	lim     Limits
	kinds   map[string]entryKind // every path created, cleaned, relative to the root
	targets map[string]string    // symbolic link → target
	links   []string             // symbolic links, in archive order
	count   int                  // entries created (limit MaxFiles)
	stats   Stats
}

func invalid(name, reason string, err error) *Error {
	return &Error{Kind: KindInvalid, Path: name, Reason: reason, Err: err}
}

func unsafe(name, reason string) *Error {
	return &Error{Kind: KindUnsafe, Path: name, Reason: reason}
}

func tooLarge(name, reason string) *Error {
	return &Error{Kind: KindTooLarge, Path: name, Reason: reason}
}

// errStreamCap is returned by capReader once the limit is passed.
var errStreamCap = errors.New("decompressed stream exceeds its limit")

// capReader fails once more than max bytes have been read through it.
type capReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, errStreamCap
	}
	if rest := c.max - c.n + 1; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, errStreamCap
	}
	return n, err
}

// errReader remembers the last read error other than io.EOF. Around the
// caller's reader it tells a failing upload apart from a bad archive; around
// an entry's data it tells a bad archive apart from a failing disk.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

func (x *extractor) run(r io.Reader) error {
	src := &errReader{r: r}
	zr, err := gzip.NewReader(src)
	if err != nil {
		return x.streamErr(src, "", err)
	}
	stream := &capReader{r: zr, max: x.lim.streamCap()}
	tr := tar.NewReader(stream)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) {
			err = nil // cleanName rejects the name with a better message
		}
		if err != nil {
			return x.streamErr(src, "", err)
		}
		if err := x.entry(hdr, tr, src); err != nil {
			return err
		}
	}
	// Read what follows the tar's end marker: it verifies the gzip checksum
	// and catches a stream cut short after the marker.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		if src.err == nil && errors.Is(err, gzip.ErrHeader) {
			return invalid("", "the upload has unexpected data after the end of the archive", err)
		}
		return x.streamErr(src, "", err)
	}
	return x.checkLinks()
}

// streamErr turns an error from reading the archive into an *Error, unless
// the caller's reader failed.
func (x *extractor) streamErr(src *errReader, name string, err error) error {
	switch {
	case src.err != nil:
		return fmt.Errorf("reading upload: %w", src.err)
	case errors.Is(err, errStreamCap):
		return tooLarge("", fmt.Sprintf("the archive expands to more than %s", FormatBytes(x.lim.streamCap())))
	case x.count == 0 && name == "" && errors.Is(err, io.EOF):
		return invalid("", "the upload is empty", err)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		if name != "" {
			return invalid(name, "is cut short: the archive is truncated", err)
		}
		return invalid("", "the archive is truncated", err)
	case errors.Is(err, gzip.ErrHeader):
		return invalid("", "the upload is not a gzip-compressed tar archive", err)
	case errors.Is(err, gzip.ErrChecksum):
		return invalid("", "the archive is corrupt (gzip checksum mismatch)", err)
	case errors.Is(err, tar.ErrHeader):
		return invalid("", "the archive is not a valid tar archive", err)
	}
	if name != "" {
		return invalid(name, "could not be read: "+err.Error(), err)
	}
	return invalid("", "the archive is corrupt: "+err.Error(), err)
}

// cleanName validates a name from the archive and returns it cleaned and
// relative to the root ("." is the root itself).
func cleanName(raw, what string) (string, error) {
	switch {
	case raw == "":
		return "", invalid("", "the archive contains "+what+" with an empty name", nil)
	case strings.IndexByte(raw, 0) >= 0:
		return "", invalid(raw, "is not a valid file name", nil)
	case len(raw) > maxPathLen:
		return "", invalid(raw, fmt.Sprintf("is longer than %d bytes", maxPathLen), nil)
	case strings.HasPrefix(raw, "/"):
		return "", unsafe(raw, "is an absolute path; only paths inside the source directory are allowed")
	}
	name := path.Clean(raw)
	if escapes(name) {
		return "", unsafe(raw, "escapes the source directory")
	}
	for part := range strings.SplitSeq(name, "/") {
		if len(part) > maxNameLen {
			return "", invalid(raw, fmt.Sprintf("has a file name longer than %d bytes", maxNameLen), nil)
		}
	}
	return name, nil
}

func (x *extractor) entry(hdr *tar.Header, tr *tar.Reader, src *errReader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX global metadata: nothing to create
	}
	raw := hdr.Name
	name, err := cleanName(raw, "an entry")
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return unsafe(raw, "is a device or fifo; only regular files, directories and symbolic links are allowed")
	default:
		return unsafe(raw, fmt.Sprintf("has unsupported type %q; only regular files, directories and symbolic links are allowed", hdr.Typeflag))
	}
	if name == "." {
		if hdr.Typeflag == tar.TypeDir {
			return nil // the root itself, as in "./"
		}
		return invalid(raw, "is not a valid file name", nil)
	}
	if err := x.parents(raw, name); err != nil {
		return err
	}
	if k := x.kinds[name]; k != kindNone {
		if k == kindDir && hdr.Typeflag == tar.TypeDir {
			return x.root.Chmod(name, dirMode(hdr.Mode))
		}
		return invalid(raw, "appears more than once in the archive", nil)
	}
	if err := x.countEntry(raw); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(name, hdr.Mode)
	case tar.TypeSymlink:
		return x.symlink(raw, name, hdr.Linkname)
	case tar.TypeLink:
		return x.hardlink(raw, name, hdr.Linkname)
	}
	return x.file(raw, name, hdr, tr, src)
}

func (x *extractor) countEntry(raw string) error {
	x.count++
	if x.count > x.lim.MaxFiles {
		return tooLarge(raw, fmt.Sprintf("exceeds the limit of %d files and directories", x.lim.MaxFiles))
	}
	return nil
}

// parents checks that no directory above name is a link or a file, and
// creates the directories that the archive only implies.
func (x *extractor) parents(raw, name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		p := name[:i]
		switch x.kinds[p] {
		case kindDir:
			continue
		case kindSymlink:
			return unsafe(raw, fmt.Sprintf("is inside %s, which is a symbolic link; writing through links is not allowed", quoteShort(p)))
		case kindFile:
			return invalid(raw, fmt.Sprintf("is inside %s, which is a file", quoteShort(p)), nil)
		}
		if err := x.countEntry(raw); err != nil {
			return err
		}
		if err := x.dir(p, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func dirMode(m int64) os.FileMode  { return os.FileMode(m)&0o777 | 0o700 }
func fileMode(m int64) os.FileMode { return os.FileMode(m)&0o777 | 0o600 }

func (x *extractor) dir(name string, mode int64) error {
	perm := dirMode(mode)
	if err := x.root.Mkdir(name, perm); err != nil {
		return err
	}
	if err := x.root.Chmod(name, perm); err != nil { // not subject to umask
		return err
	}
	x.kinds[name] = kindDir
	x.stats.Dirs++
	return nil
}

func (x *extractor) file(raw, name string, hdr *tar.Header, tr *tar.Reader, src *errReader) error {
	size := hdr.Size
	switch {
	case size < 0:
		return invalid(raw, "has a negative size", nil)
	case size > x.lim.MaxFileBytes:
		return tooLarge(raw, fmt.Sprintf("is %s, over the limit of %s for a single file", FormatBytes(size), FormatBytes(x.lim.MaxFileBytes)))
	case size > x.lim.MaxBytes-x.stats.Bytes:
		return tooLarge(raw, fmt.Sprintf("takes the upload over its limit of %s for all files together", FormatBytes(x.lim.MaxBytes)))
	}
	perm := fileMode(hdr.Mode)
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	x.kinds[name] = kindFile
	data := &errReader{r: tr}
	_, err = io.CopyN(f, data, size)
	if err == nil {
		err = f.Chmod(perm) // not subject to umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if data.err != nil || errors.Is(err, io.EOF) {
			rerr := data.err
			if rerr == nil {
				rerr = err
			}
			return x.streamErr(src, raw, rerr)
		}
		return fmt.Errorf("writing %s: %w", name, err)
	}
	x.stats.Files++
	x.stats.Bytes += size
	return nil
}

func (x *extractor) symlink(raw, name, target string) error {
	switch {
	case target == "":
		return invalid(raw, "is a symbolic link with an empty target", nil)
	case strings.IndexByte(target, 0) >= 0 || len(target) > maxPathLen:
		return invalid(raw, "is a symbolic link with an invalid target", nil)
	case strings.HasPrefix(target, "/"):
		return unsafe(raw, fmt.Sprintf("is a symbolic link to the absolute path %s; only relative links inside the source directory are allowed", quoteShort(target)))
	case escapes(path.Join(path.Dir(name), target)):
		return unsafe(raw, fmt.Sprintf("is a symbolic link to %s, which is outside the source directory", quoteShort(target)))
	}
	if err := x.root.Symlink(target, name); err != nil {
		return err
	}
	x.kinds[name] = kindSymlink
	x.targets[name] = target
	x.links = append(x.links, name)
	x.stats.Symlinks++
	return nil
}

func (x *extractor) hardlink(raw, name, target string) error {
	t, err := cleanName(target, "a hard link")
	if err != nil {
		var rej *Error
		if errors.As(err, &rej) && rej.Kind == KindUnsafe {
			return unsafe(raw, fmt.Sprintf("is a hard link to %s, which is outside the source directory", quoteShort(target)))
		}
		return invalid(raw, fmt.Sprintf("is a hard link with an invalid target %s", quoteShort(target)), nil)
	}
	if x.kinds[t] != kindFile {
		return unsafe(raw, fmt.Sprintf("is a hard link to %s, which is not a regular file earlier in the archive", quoteShort(target)))
	}
	if err := x.root.Link(t, name); err != nil {
		return err
	}
	x.kinds[name] = kindFile
	x.stats.Links++
	return nil
}

// checkLinks resolves every symbolic link against the final tree (which
// Extract built from empty, so x.kinds describes it fully) and rejects any
// that leads outside it. Checking each link on its own when it is created is
// not enough: "a/b/up -> ../.." is harmless, yet it turns a later
// "x -> a/b/up/../etc" into an escape.
func (x *extractor) checkLinks() error {
	budget := max(minLinkSteps, linkStepsPerEntry*x.lim.MaxFiles)
	for _, name := range x.links {
		if err := x.resolve(name, &budget); err != nil {
			return err
		}
	}
	return nil
}

// resolve follows the link name component by component as the kernel
// would. A component that does not exist (or is a file) makes the link
// dangle; the rest of its target is then checked lexically. Every component
// pushed is popped once and paid for from budget, so the total work is
// bounded however the links are nested.
func (x *extractor) resolve(name string, budget *int) error {
	escape := func() error {
		return unsafe(name, fmt.Sprintf("is a symbolic link to %s, which leads outside the source directory through other links", quoteShort(x.targets[name])))
	}
	// The resolved path so far (real directories only, until it dangles):
	// cur holds it joined, ends[i] where its i-th component ends.
	var cur []byte
	var ends []int
	down := func(c string) {
		if len(cur) > 0 {
			cur = append(cur, '/')
		}
		cur = append(cur, c...)
		ends = append(ends, len(cur))
	}
	up := func() {
		ends = ends[:len(ends)-1]
		cur = cur[:0]
		if n := len(ends); n > 0 {
			cur = cur[:ends[n-1]]
		}
	}
	if d := path.Dir(name); d != "." {
		for c := range strings.SplitSeq(d, "/") {
			down(c)
		}
	}
	var todo []string // components still to walk, in reverse order
	push := func(target string) {
		parts := strings.Split(target, "/")
		for i := len(parts) - 1; i >= 0; i-- {
			todo = append(todo, parts[i])
		}
	}
	push(x.targets[name])
	hops, dangling := 0, false
	for len(todo) > 0 {
		*budget--
		if *budget < 0 {
			return tooLarge(name, "leads through more symbolic links than can be checked")
		}
		c := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(ends) == 0 {
				return escape()
			}
			up()
			continue
		}
		down(c)
		if dangling {
			continue
		}
		switch x.kinds[string(cur)] {
		case kindDir:
		case kindSymlink:
			hops++
			if hops > maxLinkHops {
				return invalid(name, "is a symbolic link that leads through too many other links", nil)
			}
			target := x.targets[string(cur)]
			up()
			push(target)
		default: // missing, or a file with more components after it
			dangling = len(todo) > 0
		}
	}
	return nil
}

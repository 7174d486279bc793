package oci

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/topdir"
)

// ErrInUse reports that an unpacked image cannot be removed because an
// instance's filesystem is built on it.
var ErrInUse = errors.New("image in use")

// Cache holds images pulled from their registries and unpacked, once per
// digest, each in a directory of its own under the cache's directory:
// sha256-<hex>, with the image's filesystem in rootfs and its config in
// config.json. A driver mounts an instance's filesystem on rootfs, as the
// read-only lower layer of an overlay; nothing may write to it. An image
// is in use while such a mount exists. A Cache is safe for concurrent use.
//
// A Cache made by NewMappedCache owns the files it unpacks as an IDMap
// maps their owners, each image in sha256-<hex>-u<uid>-g<gid>-n<size>,
// so that instances in a user namespace of that map see the image's own
// owners; caches of different maps on one directory share nothing.
type Cache struct {
	dir  string
	opts []remote.Option
	ids  IDMap

	mu    sync.Mutex
	locks map[string]*sync.RWMutex

	unpacks atomic.Int64

	// The background sync of unpacked images (see unpack).
	syncMu      sync.Mutex
	syncPending []pendingSync
	syncing     bool
	syncWG      sync.WaitGroup
}

// NewCache returns the cache of the images unpacked under dir, creating dir
// if needed and removing what a crash left of unfinished unpacks. opts are
// passed to go-containerregistry's remote.Image when pulling an image
// (authentication, transport); if there are none, images are pulled
// anonymously. References are parsed with name.Insecure: plain HTTP is
// allowed, as the embedded registry on loopback speaks it. dir must not
// hold commas, colons or white space if instances mount overlays on it.
func NewCache(dir string, opts ...remote.Option) (*Cache, error) {
	return NewMappedCache(dir, IDMap{}, opts...)
}

// NewMappedCache is NewCache for trees whose files belong to the owners
// ids maps the image's to (see IDMap).
func NewMappedCache(dir string, ids IDMap, opts ...remote.Option) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	c := &Cache{dir: dir, opts: opts, ids: ids, locks: make(map[string]*sync.RWMutex)}
	// Unpacking creates many directories at once (see package topdir).
	topdir.Mark(dir)
	c.removeStaleTemps()
	return c, nil
}

// Unpacked is an image unpacked in a Cache.
type Unpacked struct {
	Digest string // sha256:<hex>
	// Rootfs is the image's filesystem, the read-only lower layer of every
	// instance of the image.
	Rootfs string
	Config v1.ConfigFile
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// imageKey turns a digest into a directory name. A colon would break the
// overlay mount options, which separate lower directories with colons.
func imageKey(digest string) (string, error) {
	if !digestRE.MatchString(digest) {
		return "", fmt.Errorf("bad image digest %q", digest)
	}
	return strings.Replace(digest, ":", "-", 1), nil
}

// lock returns the lock of one unpacked image: Get's caller holds it
// shared from finding the image until the instance's filesystem is mounted
// on it; unpacking and Remove hold it exclusively.
func (c *Cache) lock(key string) *sync.RWMutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	lk, ok := c.locks[key]
	if !ok {
		lk = new(sync.RWMutex)
		c.locks[key] = lk
	}
	return lk
}

// Get returns the unpacked image ref names, pulling and unpacking it
// first if needed (once per digest, however many callers ask at once). A
// reference by digest whose image is already unpacked needs no registry.
// The returned release must be called once the image is in use (mounted)
// or no longer needed: until then Remove waits.
func (c *Cache) Get(ctx context.Context, ref string) (*Unpacked, func(), error) {
	r, err := parse(ref)
	if err != nil {
		return nil, nil, err
	}
	opts := pullOptions(ctx, c.opts)
	var (
		digest string
		pulled v1.Image
	)
	if dg, ok := r.(name.Digest); ok {
		digest = dg.DigestStr()
	} else {
		if pulled, err = remote.Image(r, opts...); err != nil {
			return nil, nil, fmt.Errorf("pulling image %s: %w", ref, err)
		}
		h, err := pulled.Digest()
		if err != nil {
			return nil, nil, fmt.Errorf("pulling image %s: %w", ref, err)
		}
		digest = h.String()
	}
	key, err := imageKey(digest)
	if err != nil {
		return nil, nil, err
	}
	key += c.ids.suffix()
	lk := c.lock(key)
	for {
		lk.RLock()
		img, err := c.load(key)
		if err == nil {
			return img, lk.RUnlock, nil
		}
		lk.RUnlock()
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, errTorn) {
			return nil, nil, err
		}
		lk.Lock()
		_, err = c.load(key)
		if errors.Is(err, errTorn) {
			// A crash of the machine may have lost part of it (it cannot
			// be mounted: mounts do not outlive a boot).
			err = c.discard(key)
			if err == nil {
				err = os.ErrNotExist
			}
		}
		if errors.Is(err, os.ErrNotExist) {
			err = nil
			if pulled == nil {
				pulled, err = remote.Image(r, opts...)
			}
			if err == nil {
				err = c.unpack(ctx, key, pulled)
			}
		}
		lk.Unlock()
		if err != nil {
			return nil, nil, fmt.Errorf("pulling image %s: %w", ref, err)
		}
	}
}

// load reads an unpacked image; os.ErrNotExist if it is not there,
// errTorn if it may have been torn by a crash of the machine.
func (c *Cache) load(key string) (*Unpacked, error) {
	dir := filepath.Join(c.dir, key)
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, durableFile)); err != nil {
		token, _ := os.ReadFile(filepath.Join(dir, unpackedFile))
		boot, _, _ := strings.Cut(string(token), "\n")
		if cur, err := bootID(); err != nil || boot != cur {
			// An instance of this boot uses it, so it was whole when
			// mounted (an image unpacked by an older Slipway, which synced
			// it but wrote no marks): never remove it from under the app.
			if inUse, err := mountedOn(filepath.Join(dir, "rootfs")); err != nil || !inUse {
				return nil, errTorn
			}
		}
	}
	if f, _ := os.ReadFile(filepath.Join(dir, formatFile)); string(f) != unpackFormat {
		// Unpacked by an older Slipway, which kept setuid bits and device
		// nodes: unpacked again once no instance uses it.
		if inUse, err := mountedOn(filepath.Join(dir, "rootfs")); err != nil || !inUse {
			return nil, errTorn
		}
	}
	digest := strings.Replace(key[:len("sha256-")+64], "-", ":", 1)
	img := &Unpacked{Digest: digest, Rootfs: filepath.Join(dir, "rootfs")}
	if err := json.Unmarshal(b, &img.Config); err != nil {
		return nil, fmt.Errorf("reading unpacked image %s: %w", key, err)
	}
	return img, nil
}

// unpack flattens img into <key>/rootfs of the cache. It works in a
// temporary directory and renames it into place once complete, so an
// image directory is whole or absent after the server is killed.
//
// It does not wait for the tree to reach the disk (a syncfs here flushed
// everything else on the filesystem too, such as what BuildKit had just
// written, and cost seconds while builds ran). Written data survives the
// server in the page cache; only a crash of the machine can lose it, and
// that changes the kernel's boot ID. So the directory records the boot ID
// it was unpacked in (file "unpacked"), and a background syncfs marks it
// durable (file "durable", created only once the sync has succeeded).
// load takes an image that is neither durable nor from this boot for
// torn: it is unpacked again.
func (c *Cache) unpack(ctx context.Context, key string, img v1.Image) error {
	tmp, err := os.MkdirTemp(c.dir, ".tmp-"+key+"-")
	if err != nil {
		return fmt.Errorf("unpacking image: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("unpacking image: %w", err)
	}
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return fmt.Errorf("unpacking image: %w", err)
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("reading image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("reading image layers: %w", err)
	}
	if err := extractLayers(ctx, layers, rootfs, c.ids); err != nil {
		return fmt.Errorf("unpacking image: %w", err)
	}
	boot, err := bootID()
	if err != nil {
		// Without a boot ID a torn tree could not be told apart: sync.
		if err := syncfs(tmp); err != nil {
			return fmt.Errorf("unpacking image: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tmp, durableFile), nil, 0o644); err != nil {
			return fmt.Errorf("unpacking image: %w", err)
		}
	}
	// A unique token, so that the background sync marks this tree and not
	// another one unpacked at the same place after Remove.
	token := boot + "\n" + filepath.Base(tmp) + "\n"
	if err := os.WriteFile(filepath.Join(tmp, unpackedFile), []byte(token), 0o644); err != nil {
		return fmt.Errorf("unpacking image: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, formatFile), []byte(unpackFormat), 0o644); err != nil {
		return fmt.Errorf("unpacking image: %w", err)
	}
	// Written last: the image is complete.
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), config, 0o644); err != nil {
		return fmt.Errorf("unpacking image: %w", err)
	}
	dir := filepath.Join(c.dir, key)
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "config.json")); serr == nil {
			return nil // another process unpacked it first
		}
		return fmt.Errorf("unpacking image: %w", err)
	}
	c.unpacks.Add(1)
	if boot != "" {
		c.scheduleSync(key, token)
	}
	return nil
}

const (
	unpackedFile = "unpacked" // boot ID and token of the unpack
	durableFile  = "durable"  // present once the tree is known to be on disk
	formatFile   = "format"   // holds unpackFormat
	// unpackFormat names how the tree was written; a tree written
	// otherwise is unpacked again. 2: no setuid or setgid files, file
	// capabilities or device nodes.
	unpackFormat = "2\n"
)

// errTorn reports an unpacked image that may have lost data in a crash of
// the machine, or was written by an older Slipway: it is unpacked again.
var errTorn = errors.New("unpacked image not known to be on disk")

// bootID returns the kernel's boot ID, which changes at every boot.
var bootID = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", errors.New("empty boot ID")
	}
	return id, nil
})

// scheduleSync has the background syncer mark the image key durable once
// everything written so far is on disk.
func (c *Cache) scheduleSync(key, token string) {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	c.syncPending = append(c.syncPending, pendingSync{key, token})
	if !c.syncing {
		c.syncing = true
		c.syncWG.Add(1)
		go c.syncLoop()
	}
}

type pendingSync struct{ key, token string }

// syncLoop syncs the filesystem of the images, one syncfs for every batch
// of unpacks, and marks them durable. It ends when nothing is pending.
func (c *Cache) syncLoop() {
	defer c.syncWG.Done()
	for {
		c.syncMu.Lock()
		batch := c.syncPending
		c.syncPending = nil
		if len(batch) == 0 {
			c.syncing = false
			c.syncMu.Unlock()
			return
		}
		c.syncMu.Unlock()
		if syncfs(c.dir) != nil {
			continue // not durable; unpacked again after a crash
		}
		for _, p := range batch {
			c.markDurable(p)
		}
	}
}

// markDurable marks the image p names durable if it is still the tree
// that was synced. The mark itself need not be synced: if it is lost the
// image is unpacked again.
func (c *Cache) markDurable(p pendingSync) {
	lk := c.lock(p.key)
	lk.RLock() // Remove and unpack hold it exclusively
	defer lk.RUnlock()
	dir := filepath.Join(c.dir, p.key)
	if b, err := os.ReadFile(filepath.Join(dir, unpackedFile)); err != nil || string(b) != p.token {
		return
	}
	os.WriteFile(filepath.Join(dir, durableFile), nil, 0o644)
}

// Wait waits for the background sync of freshly unpacked images, if one
// runs. The cache stays usable.
func (c *Cache) Wait() { c.syncWG.Wait() }

// Unpacks returns how many images the cache has unpacked.
func (c *Cache) Unpacks() int64 { return c.unpacks.Load() }

func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// removeStaleTemps removes unpack directories left by a crash. Only old
// ones: another driver on the same root may be unpacking right now.
func (c *Cache) removeStaleTemps() {
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".tmp-") && !strings.HasPrefix(e.Name(), ".trash-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.RemoveAll(filepath.Join(c.dir, e.Name()))
		}
	}
}

// Remove frees the unpacked copies of the image with digest (sha256:...),
// whatever map owns their files (see NewMappedCache). It fails with
// ErrInUse while an instance's filesystem is mounted on one (a stopped
// instance's is not); the copies not in use are removed all the same.
// Removing an image that is not unpacked is not an error. A later Get
// unpacks it again.
func (c *Cache) Remove(digest string) error {
	key, err := imageKey(digest)
	if err != nil {
		return err
	}
	keys := []string{key}
	entries, _ := os.ReadDir(c.dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), key+"-") {
			keys = append(keys, e.Name())
		}
	}
	var errs []error
	for _, k := range keys {
		errs = append(errs, c.remove(k, digest))
	}
	return errors.Join(errs...)
}

// remove frees one unpacked tree of the image with digest.
func (c *Cache) remove(key, digest string) error {
	lk := c.lock(key)
	lk.Lock()
	defer lk.Unlock()
	dir := filepath.Join(c.dir, key)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	inUse, err := mountedOn(filepath.Join(dir, "rootfs"))
	if err != nil {
		return fmt.Errorf("removing image %s: %w", digest, err)
	}
	if inUse {
		return fmt.Errorf("removing image %s: %w", digest, ErrInUse)
	}
	if err := c.discard(key); err != nil {
		return fmt.Errorf("removing image %s: %w", digest, err)
	}
	return nil
}

// discard removes the image directory of key. The caller holds the
// image's lock exclusively and has checked that nothing is mounted on it.
func (c *Cache) discard(key string) error {
	trash, err := os.MkdirTemp(c.dir, ".trash-"+key+"-")
	if err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(c.dir, key), filepath.Join(trash, "image")); err != nil {
		os.Remove(trash)
		return err
	}
	return os.RemoveAll(trash)
}

// mountedOn reports whether an overlay mount of this mount namespace uses
// dir as a lower directory.
func mountedOn(dir string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		// Fields after " - ": fstype, source, super options.
		_, rest, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 3 || fields[0] != "overlay" {
			continue
		}
		for _, opt := range strings.Split(fields[2], ",") {
			if lower, ok := strings.CutPrefix(opt, "lowerdir="); ok {
				for _, l := range strings.Split(lower, ":") {
					if l == dir {
						return true, nil
					}
				}
			}
		}
	}
	return false, sc.Err()
}

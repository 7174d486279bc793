package runc

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
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"
)

// ErrImageInUse reports that an unpacked image cannot be removed because an
// instance's filesystem is built on it.
var ErrImageInUse = errors.New("image in use")

// image is an image unpacked under Root/images/<key>.
type image struct {
	digest string // sha256:<hex>
	dir    string
	rootfs string // read-only lower layer of every instance of the image
	config v1.ConfigFile
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

func (d *Driver) imagesDir() string { return filepath.Join(d.cfg.Root, "images") }

// imageLock returns the lock of one unpacked image: Start holds it shared
// from finding the image until the instance's filesystem is mounted on it;
// unpacking and RemoveImage hold it exclusively.
func (d *Driver) imageLock(key string) *sync.RWMutex {
	d.mu.Lock()
	defer d.mu.Unlock()
	lk, ok := d.imageLocks[key]
	if !ok {
		lk = new(sync.RWMutex)
		d.imageLocks[key] = lk
	}
	return lk
}

// image returns the unpacked image ref names, pulling and unpacking it
// first if needed (once per digest, however many Starts ask at once). A
// reference by digest whose image is already unpacked needs no registry.
// The returned release must be called once the image is in use (mounted)
// or no longer needed.
func (d *Driver) image(ctx context.Context, ref string) (*image, func(), error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing image reference %q: %w", ref, err)
	}
	opts := append(append([]remote.Option{}, d.cfg.RemoteOptions...), remote.WithContext(ctx))
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
	lk := d.imageLock(key)
	for {
		lk.RLock()
		img, err := d.loadImage(key)
		if err == nil {
			return img, lk.RUnlock, nil
		}
		lk.RUnlock()
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, errTorn) {
			return nil, nil, err
		}
		lk.Lock()
		_, err = d.loadImage(key)
		if errors.Is(err, errTorn) {
			// A crash of the machine may have lost part of it (it cannot
			// be mounted: mounts do not outlive a boot).
			err = d.discardImage(key)
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
				err = d.unpack(ctx, key, pulled)
			}
		}
		lk.Unlock()
		if err != nil {
			return nil, nil, fmt.Errorf("pulling image %s: %w", ref, err)
		}
	}
}

// loadImage reads an unpacked image; os.ErrNotExist if it is not there,
// errTorn if it may have been torn by a crash of the machine.
func (d *Driver) loadImage(key string) (*image, error) {
	dir := filepath.Join(d.imagesDir(), key)
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, durableFile)); err != nil {
		token, _ := os.ReadFile(filepath.Join(dir, unpackedFile))
		boot, _, _ := strings.Cut(string(token), "\n")
		if cur, err := bootID(); err != nil || boot != cur {
			// An instance of this boot uses it, so it was whole when
			// mounted (an image unpacked by an older driver, which synced
			// it but wrote no marks): never remove it from under the app.
			if inUse, err := mountedOn(filepath.Join(dir, "rootfs")); err != nil || !inUse {
				return nil, errTorn
			}
		}
	}
	img := &image{digest: strings.Replace(key, "-", ":", 1), dir: dir, rootfs: filepath.Join(dir, "rootfs")}
	if err := json.Unmarshal(b, &img.config); err != nil {
		return nil, fmt.Errorf("reading unpacked image %s: %w", key, err)
	}
	return img, nil
}

// unpack flattens img into Root/images/<key>/rootfs. It works in a
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
// loadImage takes an image that is neither durable nor from this boot for
// torn: it is unpacked again.
func (d *Driver) unpack(ctx context.Context, key string, img v1.Image) error {
	tmp, err := os.MkdirTemp(d.imagesDir(), ".tmp-"+key+"-")
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
	if err := extractLayers(ctx, layers, rootfs); err != nil {
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
	// another one unpacked at the same place after RemoveImage.
	token := boot + "\n" + filepath.Base(tmp) + "\n"
	if err := os.WriteFile(filepath.Join(tmp, unpackedFile), []byte(token), 0o644); err != nil {
		return fmt.Errorf("unpacking image: %w", err)
	}
	// Written last: the image is complete.
	if err := os.WriteFile(filepath.Join(tmp, "config.json"), config, 0o644); err != nil {
		return fmt.Errorf("unpacking image: %w", err)
	}
	dir := filepath.Join(d.imagesDir(), key)
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "config.json")); serr == nil {
			return nil // another process unpacked it first
		}
		return fmt.Errorf("unpacking image: %w", err)
	}
	d.unpacks.Add(1)
	if boot != "" {
		d.scheduleSync(key, token)
	}
	return nil
}

const (
	unpackedFile = "unpacked" // boot ID and token of the unpack
	durableFile  = "durable"  // present once the tree is known to be on disk
)

// errTorn reports an unpacked image that may have lost data in a crash of
// the machine.
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
func (d *Driver) scheduleSync(key, token string) {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	d.syncPending = append(d.syncPending, pendingSync{key, token})
	if !d.syncing {
		d.syncing = true
		d.syncWG.Add(1)
		go d.syncLoop()
	}
}

type pendingSync struct{ key, token string }

// syncLoop syncs the filesystem of the images, one syncfs for every batch
// of unpacks, and marks them durable. It ends when nothing is pending.
func (d *Driver) syncLoop() {
	defer d.syncWG.Done()
	for {
		d.syncMu.Lock()
		batch := d.syncPending
		d.syncPending = nil
		if len(batch) == 0 {
			d.syncing = false
			d.syncMu.Unlock()
			return
		}
		d.syncMu.Unlock()
		if syncfs(d.imagesDir()) != nil {
			continue // not durable; unpacked again after a crash
		}
		for _, p := range batch {
			d.markDurable(p)
		}
	}
}

// markDurable marks the image p names durable if it is still the tree
// that was synced. The mark itself need not be synced: if it is lost the
// image is unpacked again.
func (d *Driver) markDurable(p pendingSync) {
	lk := d.imageLock(p.key)
	lk.RLock() // RemoveImage and unpack hold it exclusively
	defer lk.RUnlock()
	dir := filepath.Join(d.imagesDir(), p.key)
	if b, err := os.ReadFile(filepath.Join(dir, unpackedFile)); err != nil || string(b) != p.token {
		return
	}
	os.WriteFile(filepath.Join(dir, durableFile), nil, 0o644)
}

// waitSync waits for the background sync, if one runs.
func (d *Driver) waitSync() { d.syncWG.Wait() }

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
func (d *Driver) removeStaleTemps() {
	entries, _ := os.ReadDir(d.imagesDir())
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".tmp-") && !strings.HasPrefix(e.Name(), ".trash-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.RemoveAll(filepath.Join(d.imagesDir(), e.Name()))
		}
	}
}

// RemoveImage frees the unpacked copy of the image with digest
// (sha256:...). It fails with ErrImageInUse while an instance's
// filesystem is mounted on it (a stopped instance's is not). Removing an
// image that is not unpacked is not an error. A later Start unpacks it
// again.
func (d *Driver) RemoveImage(digest string) error {
	key, err := imageKey(digest)
	if err != nil {
		return err
	}
	lk := d.imageLock(key)
	lk.Lock()
	defer lk.Unlock()
	dir := filepath.Join(d.imagesDir(), key)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	inUse, err := mountedOn(filepath.Join(dir, "rootfs"))
	if err != nil {
		return fmt.Errorf("removing image %s: %w", digest, err)
	}
	if inUse {
		return fmt.Errorf("removing image %s: %w", digest, ErrImageInUse)
	}
	if err := d.discardImage(key); err != nil {
		return fmt.Errorf("removing image %s: %w", digest, err)
	}
	return nil
}

// discardImage removes the image directory of key. The caller holds the
// image's lock exclusively and has checked that nothing is mounted on it.
func (d *Driver) discardImage(key string) error {
	trash, err := os.MkdirTemp(d.imagesDir(), ".trash-"+key+"-")
	if err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(d.imagesDir(), key), filepath.Join(trash, "image")); err != nil {
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

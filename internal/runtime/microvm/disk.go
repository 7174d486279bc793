package microvm

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// disks makes and keeps each image's root disk: an ext4 filesystem image
// built with mkfs.ext4 -d from the image unpacked by oci.Cache, once per
// digest, at Root/disks/sha256-<hex>.ext4. Guests attach it read-only
// (their writes go to a tmpfs layer over it), so one file serves every
// instance of the image. Why a disk and not virtiofs: no daemon per
// instance on the host, no host filesystem shared live with the guest,
// and the guest's page cache holds the image.
type disks struct {
	dir  string
	mkfs string
	mu   sync.Mutex
	keys map[string]*sync.Mutex
}

func (d *disks) lock(key string) *sync.Mutex {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, ok := d.keys[key]
	if !ok {
		m = new(sync.Mutex)
		d.keys[key] = m
	}
	return m
}

// path returns the disk of the image with digest, making it from rootfs
// first if needed.
func (d *disks) path(ctx context.Context, digest, rootfs string) (string, error) {
	key := strings.Replace(digest, ":", "-", 1)
	disk := filepath.Join(d.dir, key+".ext4")
	lk := d.lock(key)
	lk.Lock()
	defer lk.Unlock()
	if _, err := os.Stat(disk); err == nil {
		return disk, nil
	}
	tmp := disk + ".tmp"
	os.Remove(tmp)
	if err := d.make(ctx, rootfs, tmp); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("making the image's disk: %w", err)
	}
	if err := os.Rename(tmp, disk); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return disk, nil
}

// make builds an ext4 image of rootfs at out, sized to what rootfs holds
// plus room for ext4's own structures.
func (d *disks) make(ctx context.Context, rootfs, out string) error {
	var bytes4k, inodes int64
	err := filepath.WalkDir(rootfs, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		inodes++
		if e.Type().IsRegular() {
			fi, err := e.Info()
			if err != nil {
				return err
			}
			bytes4k += (fi.Size() + 4095) / 4096 * 4096
		} else {
			bytes4k += 4096
		}
		return nil
	})
	if err != nil {
		return err
	}
	inodes += 1024
	size := bytes4k + bytes4k/10 + inodes*256 + 16<<20
	size = (size + 1<<20 - 1) / (1 << 20) * (1 << 20)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	f.Close()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, d.mkfs, "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0",
		"-O", "^has_journal,^resize_inode", "-N", strconv.FormatInt(inodes, 10),
		"-E", "root_owner=0:0,lazy_itable_init=0", "-L", "slipway", "-d", rootfs, out)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	f, err = os.Open(out)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// remove removes the disk of the image with digest. A guest that has it
// open keeps reading the file until it stops.
func (d *disks) remove(digest string) error {
	key := strings.Replace(digest, ":", "-", 1)
	lk := d.lock(key)
	lk.Lock()
	defer lk.Unlock()
	err := os.Remove(filepath.Join(d.dir, key+".ext4"))
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

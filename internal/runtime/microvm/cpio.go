package microvm

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// cpioWriter writes an archive in the "newc" format, the one the kernel
// unpacks as an initramfs. Archives may be concatenated: the kernel
// unpacks each in turn, so a guest's initramfs is the shared part (the
// init and modules) followed by an archive of the instance's config.
type cpioWriter struct {
	w   *bufio.Writer
	n   int64
	ino int
}

func newCpio(w io.Writer) *cpioWriter { return &cpioWriter{w: bufio.NewWriter(w), ino: 1} }

const (
	cpioDir  = 0o040000
	cpioFile = 0o100000
	cpioChar = 0o020000
)

// entry writes one header, its name and its data, each padded to 4 bytes.
func (c *cpioWriter) entry(name string, mode uint32, data []byte, rdevMajor, rdevMinor int) error {
	name = strings.TrimPrefix(name, "/")
	c.ino++
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	for _, b := range [][]byte{[]byte(hdr), []byte(name), {0}} {
		if _, err := c.w.Write(b); err != nil {
			return err
		}
		c.n += int64(len(b))
	}
	if err := c.pad(); err != nil {
		return err
	}
	if _, err := c.w.Write(data); err != nil {
		return err
	}
	c.n += int64(len(data))
	return c.pad()
}

func (c *cpioWriter) pad() error {
	for c.n%4 != 0 {
		if err := c.w.WriteByte(0); err != nil {
			return err
		}
		c.n++
	}
	return nil
}

func (c *cpioWriter) dir(name string) error { return c.entry(name, cpioDir|0o755, nil, 0, 0) }

func (c *cpioWriter) file(name string, perm uint32, data []byte) error {
	return c.entry(name, cpioFile|perm, data, 0, 0)
}

// close writes the trailer and flushes.
func (c *cpioWriter) close() error {
	if err := c.entry("TRAILER!!!", 0, nil, 0, 0); err != nil {
		return err
	}
	return c.w.Flush()
}

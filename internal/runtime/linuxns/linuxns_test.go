package linuxns

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCreateDoDialDelete: a named namespace holds a listener that a dial
// into the namespace reaches and a dial from the host does not; Delete
// removes the name. Needs root.
func TestCreateDoDialDelete(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root, which CI has")
		}
		t.Skip("needs root")
	}
	dir := filepath.Join(t.TempDir(), "netns")
	// Create makes dir a mount point of its own, to undo before the
	// temporary directory is removed.
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	path := filepath.Join(dir, "test")
	if err := Create(path); err != nil {
		t.Fatal(err)
	}
	defer Delete(path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ns, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("inside\n"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, ns, ln.Addr().String())
	if err != nil {
		t.Fatalf("dialling into the namespace: %v", err)
	}
	b := make([]byte, 7)
	if _, err := c.Read(b); err != nil || string(b) != "inside\n" {
		t.Errorf("read %q, %v", b, err)
	}
	c.Close()
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("the host reached %s, which listens inside the namespace", ln.Addr())
	}
	if err := Delete(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("%s is left after Delete (%v)", path, err)
	}
	if err := Delete(path); err != nil {
		t.Errorf("Delete of a missing namespace: %v", err)
	}
}

package topdir

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestMark(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	const ext4 = 0xef53
	if st.Type != ext4 {
		t.Skipf("%s is not on ext4 (filesystem type %#x): the flag is ext4's", dir, st.Type)
	}
	if Marked(dir) {
		t.Fatal("a new directory is already marked")
	}
	Mark(dir)
	if !Marked(dir) {
		t.Fatal("Mark did not set the top-directory flag on ext4")
	}
	Mark(dir) // idempotent
	if !Marked(dir) {
		t.Fatal("a second Mark cleared the flag")
	}
}

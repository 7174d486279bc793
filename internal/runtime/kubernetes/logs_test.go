package kubernetes

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A log file's cursor is the stamp its follower recorded, to the
// nanosecond, whatever the file's modification time says; a file without
// one falls back on its modification time.
func TestLogCursor(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stdout")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if got := cursor(path); !got.Equal(mtime) {
		t.Errorf("cursor of a file without one = %v, want its modification time %v", got, mtime)
	}
	stamp := time.Date(2026, 1, 2, 3, 4, 6, 123456789, time.UTC)
	setCursor(f, stamp)
	if _, err := f.WriteString("a line\n"); err != nil { // the write moves the mtime, not the cursor
		t.Fatal(err)
	}
	if got := cursor(path); !got.Equal(stamp) {
		t.Errorf("cursor = %v, want the recorded stamp %v", got, stamp)
	}
	if got := cursor(filepath.Join(t.TempDir(), "missing")); !got.IsZero() {
		t.Errorf("cursor of a missing file = %v, want zero", got)
	}
}

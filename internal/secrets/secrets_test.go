package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpenAndKeyPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	b1, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	sealed := b1.Seal([]byte("hunter2"))
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("sealed value contains the plaintext")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	b2, err := Open(path) // a restarted server reads the same key
	if err != nil {
		t.Fatal(err)
	}
	got, err := b2.Unseal(sealed)
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("unseal: %q %v", got, err)
	}
	other, _ := Open(filepath.Join(t.TempDir(), "other.key"))
	if _, err := other.Unseal(sealed); !errors.Is(err, ErrCorrupt) {
		t.Errorf("unseal with another key: %v", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := b2.Unseal(sealed); !errors.Is(err, ErrCorrupt) {
		t.Errorf("tampered value: %v", err)
	}
}

// A new key leaves no temporary file; concurrent first starts agree on one
// key; a damaged (empty) key file is an error that says so, never a new key
// that would orphan what the old one sealed.
func TestKeyCreationIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret.key")
	boxes := make([]*Box, 8)
	errs := make([]error, 8)
	done := make(chan int)
	for i := range boxes {
		go func() { boxes[i], errs[i] = Open(path); done <- i }()
	}
	for range boxes {
		<-done
	}
	sealed := []byte(nil)
	for i, b := range boxes {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if sealed == nil {
			sealed = b.Seal([]byte("x"))
		} else if _, err := b.Unseal(sealed); err != nil {
			t.Errorf("two first starts made two keys: %v", err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("the key directory holds %d entries, want just the key", len(ents))
	}
	empty := filepath.Join(dir, "empty.key")
	os.WriteFile(empty, nil, 0o600)
	if _, err := Open(empty); err == nil || !bytes.Contains([]byte(err.Error()), []byte("damaged")) {
		t.Errorf("an empty key file: %v", err)
	}
	if b, _ := os.ReadFile(empty); len(b) != 0 {
		t.Error("an empty key file was replaced")
	}
}

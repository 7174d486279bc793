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

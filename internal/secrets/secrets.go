// Package secrets encrypts values at rest (environment variables, webhook
// secrets) with AES-256-GCM under a key kept in the server's data directory.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Box seals and opens values with one key.
type Box struct {
	aead cipher.AEAD
	key  []byte
}

// Open loads the key at path, creating a random one (mode 0600) when the
// file does not exist. A new key is written to a temporary file, synced,
// and linked into place, then the directory is synced: a crash leaves
// either no key or the whole key, never an empty file.
func Open(path string) (*Box, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if key, err = create(path); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("reading secret key %s: %w", path, err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("secret key %s holds %d bytes, not 32: it is damaged; restore it from a backup (variables, webhook secrets and clone tokens are sealed with it)", path, len(key))
	}
	return New(key)
}

// create writes a new random key at path, durably, unless another process
// created one first (then that one is returned).
func create(path string) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
	if err != nil {
		return nil, fmt.Errorf("creating secret key %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(key)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing secret key %s: %w", path, err)
	}
	// Link, unlike rename, fails if the key exists: a concurrent first
	// start keeps the key that won.
	if err := os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
		return os.ReadFile(path)
	} else if err != nil {
		return nil, fmt.Errorf("creating secret key %s: %w", path, err)
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		err = dir.Sync()
		dir.Close()
		if err != nil {
			return nil, fmt.Errorf("syncing the directory of secret key %s: %w", path, err)
		}
	}
	return key, nil
}

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("secret key must be 32 bytes, not %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead, key: key}, nil
}

// Derive returns a 32-byte key for another purpose (such as signing
// dashboard sessions), derived from the box's key and label with
// HMAC-SHA256, so it is stable across restarts without exposing the key.
func (b *Box) Derive(label string) []byte {
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte("slipway:" + label))
	return m.Sum(nil)
}

// Seal encrypts plaintext; the nonce is prepended.
func (b *Box) Seal(plaintext []byte) []byte {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	rand.Read(nonce)
	return b.aead.Seal(nonce, nonce, plaintext, nil)
}

// ErrCorrupt reports a value that does not decrypt under the key.
var ErrCorrupt = errors.New("encrypted value is corrupt or was sealed with another key")

// Unseal decrypts what Seal produced.
func (b *Box) Unseal(sealed []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n {
		return nil, ErrCorrupt
	}
	out, err := b.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return nil, ErrCorrupt
	}
	return out, nil
}

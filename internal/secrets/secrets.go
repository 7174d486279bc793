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
)

// Box seals and opens values with one key.
type Box struct {
	aead cipher.AEAD
	key  []byte
}

// Open loads the key at path, creating a random one (mode 0600) when the
// file does not exist.
func Open(path string) (*Box, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("creating secret key %s: %w", path, err)
		}
		_, err = f.Write(key)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("writing secret key %s: %w", path, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("reading secret key %s: %w", path, err)
	}
	return New(key)
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

package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"time"
)

// Token is an API token. Only its SHA-256 hash is stored.
type Token struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// HashToken returns the stored form of a token secret.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// CreateToken stores the hash of secret under name.
func (s *Store) CreateToken(ctx context.Context, name, secret string) (Token, error) {
	t := Token{ID: NewID(), Name: name, CreatedAt: now()}
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_tokens (id, name, hash, created_at) VALUES (?, ?, ?, ?)`,
		t.ID, t.Name, HashToken(secret), t.CreatedAt.UnixNano())
	if isUnique(err) {
		return Token{}, ErrExists
	}
	return t, err
}

// CountTokens reports how many tokens exist.
func (s *Store) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM api_tokens`).Scan(&n)
	return n, err
}

// CheckToken reports the token whose hash matches secret, or ErrNotFound.
// Lookup is by hash, so the comparison leaks nothing about the secret.
func (s *Store) CheckToken(ctx context.Context, secret string) (Token, error) {
	var t Token
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, name, created_at FROM api_tokens WHERE hash = ?`, HashToken(secret)).
		Scan(&t.ID, &t.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, ErrNotFound
	}
	if err != nil {
		return Token{}, err
	}
	t.CreatedAt = time.Unix(0, created).UTC()
	return t, nil
}

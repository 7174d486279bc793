// Package store is the only package of Slipway that speaks SQL.
//
// State lives in one SQLite database (pure-Go driver, WAL mode) whose schema
// is created and upgraded by versioned migrations applied in Open. Every
// method persists before it returns (its transaction is synced to disk),
// so callers can act on a state change knowing it survives a crash of the
// server or of the machine.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Sentinel errors for domain states.
var (
	// ErrNotFound reports that the row asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists reports a unique name that is already taken.
	ErrExists = errors.New("already exists")
	// ErrConflict reports an update whose precondition (such as the
	// deployment's current status) no longer holds.
	ErrConflict = errors.New("conflict")
)

// Store is a handle on the database. It is safe for concurrent use.
type Store struct {
	db *sql.DB
}

// synchronous is SQLite's synchronous setting. FULL: in WAL mode a
// commit returns once the write-ahead log is synced, so what a method has
// stored survives a power loss or kernel crash, not only a crash of the
// server (which is all NORMAL promises). The control plane acts on state
// it has just stored (an instance's handle is recorded before the
// instance starts; a status is stored before it is announced), so losing
// the last commits would leave unrecorded containers and undo promises
// already made to users. It costs one fsync per commit: see
// BenchmarkCommit.
const synchronous = "FULL"

// Open opens (creating if needed) the database at path and applies pending
// migrations.
func Open(path string) (*Store, error) { return openSync(path, synchronous) }

func openSync(path, sync string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating database directory: %w", err)
	}
	dsn := "file:" + path +
		"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(" + sync + ")&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening database %s: %w", path, err)
	}
	s := &Store{db: db}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrating database %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// tx runs fn in a write transaction.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// txUnsynced runs fn in a write transaction whose commit does not wait
// for the disk (synchronous=NORMAL on the connection while it runs).
func (s *Store) txUnsynced(ctx context.Context, fn func(*sql.Tx) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous = NORMAL"); err != nil {
		return err
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous = "+synchronous); err != nil {
			// Never hand the pool a connection left unsynced.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Times are stored as Unix nanoseconds; zero time is stored as NULL.

func toNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func fromNull(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

func now() time.Time { return time.Now().UTC() }

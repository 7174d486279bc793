package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Log kinds.
const (
	LogBuild   = "build"
	LogRuntime = "runtime"
)

// LogLine is one stored line of build or runtime output. ID is a cursor:
// it grows with every line appended.
type LogLine struct {
	ID           int64
	DeploymentID string
	Kind         string
	InstanceID   string
	Stream       string // "stdout", "stderr", or "" for build and events
	Time         time.Time
	Text         string
}

// MaxLogBatch is how many lines AppendLogs writes in one transaction: a
// writer with many lines to store holds SQLite's write lock for one batch
// at a time, so other writers (status changes of other projects) get in
// between.
const MaxLogBatch = 256

// AppendLogs stores lines, in transactions of at most MaxLogBatch lines,
// and fills in their ids. On error, the lines of the batches before the
// failing one are stored (with their ids filled in) and the rest are not.
//
// Unlike state, log lines are committed without waiting for the disk
// (synchronous=NORMAL): a build writes one commit per line, and a synced
// commit costs about a millisecond (BenchmarkCommit). The next commit of
// state, synced, takes them to disk with it (the write-ahead log is synced
// as a whole), so a crash of the machine can lose only the newest lines
// of a build it interrupts (and retries), or app output whose file offsets
// were not committed yet (copied again from the files).
func (s *Store) AppendLogs(ctx context.Context, lines []LogLine) error {
	for len(lines) > 0 {
		n := min(len(lines), MaxLogBatch)
		batch := lines[:n]
		if err := s.txUnsynced(ctx, func(tx *sql.Tx) error { return appendLogs(ctx, tx, batch) }); err != nil {
			return err
		}
		lines = lines[n:]
	}
	return nil
}

// TrimLogs deletes the oldest lines of a deployment's log of kind beyond
// its newest keep, in transactions of at most MaxLogBatch lines, and
// returns how many it deleted.
func (s *Store) TrimLogs(ctx context.Context, deploymentID, kind string, keep int) (int, error) {
	if keep < 0 {
		keep = 0
	}
	// The id of the oldest line kept: every line below it goes.
	var first int64
	err := s.db.QueryRowContext(ctx, `SELECT id FROM log_lines WHERE deployment_id = ? AND kind = ?
		ORDER BY id DESC LIMIT 1 OFFSET ?`, deploymentID, kind, max(keep-1, 0)).Scan(&first)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil // no more than keep lines
	}
	if err != nil {
		return 0, err
	}
	if keep == 0 {
		first++
	}
	deleted := 0
	for {
		var n int64
		// Unsynced, as appends are: a trim lost in a crash is done again.
		err := s.txUnsynced(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM log_lines WHERE id IN (SELECT id FROM log_lines
				WHERE deployment_id = ? AND kind = ? AND id < ? ORDER BY id LIMIT ?)`, deploymentID, kind, first, MaxLogBatch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		deleted += int(n)
		if err != nil {
			return deleted, fmt.Errorf("trimming log: %w", err)
		}
		if n < MaxLogBatch {
			return deleted, nil
		}
	}
}

func appendLogs(ctx context.Context, tx *sql.Tx, lines []LogLine) error {
	if len(lines) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO log_lines (deployment_id, kind, instance_id, stream, ts, text) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i := range lines {
		l := &lines[i]
		res, err := stmt.ExecContext(ctx, l.DeploymentID, l.Kind, l.InstanceID, l.Stream, l.Time.UnixNano(), l.Text)
		if err != nil {
			return fmt.Errorf("appending log line: %w", err)
		}
		l.ID, _ = res.LastInsertId()
	}
	return nil
}

// LogQuery selects log lines of one deployment and kind.
type LogQuery struct {
	DeploymentID string
	Kind         string
	// After and Before are exclusive cursors (line ids); zero means unbounded.
	After  int64
	Before int64
	// Desc returns the newest lines first.
	Desc bool
	// Limit caps the number of lines. If zero, 1000.
	Limit int
}

// ListLogs returns the lines q selects.
func (s *Store) ListLogs(ctx context.Context, q LogQuery) ([]LogLine, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	sqlq := `SELECT id, deployment_id, kind, instance_id, stream, ts, text FROM log_lines
		WHERE deployment_id = ? AND kind = ? AND id > ?`
	args := []any{q.DeploymentID, q.Kind, q.After}
	if q.Before > 0 {
		sqlq += ` AND id < ?`
		args = append(args, q.Before)
	}
	if q.Desc {
		sqlq += ` ORDER BY id DESC`
	} else {
		sqlq += ` ORDER BY id`
	}
	sqlq += fmt.Sprintf(` LIMIT %d`, limit)
	rows, err := s.db.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []LogLine
	for rows.Next() {
		var l LogLine
		var ts int64
		if err := rows.Scan(&l.ID, &l.DeploymentID, &l.Kind, &l.InstanceID, &l.Stream, &ts, &l.Text); err != nil {
			return nil, err
		}
		l.Time = time.Unix(0, ts).UTC()
		out = append(out, l)
	}
	return out, rows.Err()
}

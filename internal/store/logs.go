package store

import (
	"context"
	"database/sql"
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

// AppendLogs stores lines in one transaction and fills in their ids.
//
// Unlike state, log lines are committed without waiting for the disk
// (synchronous=NORMAL): a build writes one commit per line, and a synced
// commit costs about a millisecond (BenchmarkCommit). The next commit of
// state, synced, takes them to disk with it (the write-ahead log is synced
// as a whole), so a crash of the machine can lose only the newest lines
// of a build it interrupts (and retries), or app output whose file offsets
// were not committed yet (copied again from the files).
func (s *Store) AppendLogs(ctx context.Context, lines []LogLine) error {
	if len(lines) == 0 {
		return nil
	}
	return s.txUnsynced(ctx, func(tx *sql.Tx) error { return appendLogs(ctx, tx, lines) })
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

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// TrimProjectLogs deletes the lines of kind of a project's deployments
// written before olderThan (unless it is zero) and then the oldest beyond
// the newest maxBytes of text (unless maxBytes is zero or less), and
// returns how many lines it deleted.
func (s *Store) TrimProjectLogs(ctx context.Context, projectID, kind string, olderThan time.Time, maxBytes int64) (int, error) {
	ids, err := s.deploymentIDs(ctx, projectID)
	if err != nil {
		return 0, err
	}
	deleted := 0
	if !olderThan.IsZero() {
		for _, id := range ids {
			// Lines are appended in time order, near enough: the newest
			// line older than the cut-off bounds the range looked at.
			var last int64
			err := s.db.QueryRowContext(ctx, `SELECT id FROM log_lines WHERE deployment_id = ? AND kind = ? AND ts < ?
				ORDER BY id DESC LIMIT 1`, id, kind, olderThan.UnixNano()).Scan(&last)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return deleted, err
			}
			n, err := s.deleteLogsUpTo(ctx, id, kind, last, olderThan.UnixNano())
			deleted += n
			if err != nil {
				return deleted, err
			}
		}
	}
	if maxBytes <= 0 || len(ids) == 0 {
		return deleted, nil
	}
	// The newest maxBytes are kept: find the newest line that does not fit.
	rows, err := s.db.QueryContext(ctx, `SELECT l.id, length(CAST(l.text AS BLOB)) FROM log_lines l
		WHERE l.deployment_id IN (SELECT id FROM deployments WHERE project_id = ?) AND l.kind = ?
		ORDER BY l.id DESC`, projectID, kind)
	if err != nil {
		return deleted, err
	}
	var cut, sum int64
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return deleted, err
		}
		if sum += n + 1; sum > maxBytes { // +1: the newline
			cut = id
			break
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil || cut == 0 {
		return deleted, err
	}
	for _, id := range ids {
		n, err := s.deleteLogsUpTo(ctx, id, kind, cut, math.MaxInt64)
		deleted += n
		if err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// deleteLogsUpTo deletes a deployment's lines of kind up to id last and
// written before ts (Unix nanoseconds), in transactions of MaxLogBatch
// lines.
func (s *Store) deleteLogsUpTo(ctx context.Context, deploymentID, kind string, last, ts int64) (int, error) {
	deleted := 0
	for {
		var n int64
		err := s.tx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM log_lines WHERE id IN (SELECT id FROM log_lines
				WHERE deployment_id = ? AND kind = ? AND id <= ? AND ts < ? ORDER BY id LIMIT ?)`, deploymentID, kind, last, ts, MaxLogBatch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		deleted += int(n)
		if err != nil {
			return deleted, fmt.Errorf("deleting log lines: %w", err)
		}
		if n < MaxLogBatch {
			return deleted, nil
		}
	}
}

func (s *Store) deploymentIDs(ctx context.Context, projectID string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM deployments WHERE project_id = ?`, projectID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

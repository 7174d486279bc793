package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// MetricPoint is one interval of a metrics series: what package history
// keeps for the dashboard's plots. Counters are summed over the interval;
// memory is the most seen in it.
type MetricPoint struct {
	ProjectID string
	// DeploymentID is the deployment measured, or "" for the project's
	// total (every deployment of the project together).
	DeploymentID string
	Step         int64 // the interval's length, in seconds
	At           int64 // the interval's start, Unix seconds (a multiple of Step)
	Requests     int64
	Errors4xx    int64
	Errors5xx    int64
	// Latency holds the request-duration histogram's bucket counts (not
	// cumulative); package history says what the buckets are.
	Latency   []uint64
	CPU       time.Duration // CPU time used in the interval
	MemoryMax int64         // bytes
}

// Add merges q, a measurement of the same series and interval, into p:
// counters and buckets are summed, memory is the larger.
func (p *MetricPoint) Add(q MetricPoint) {
	p.Requests += q.Requests
	p.Errors4xx += q.Errors4xx
	p.Errors5xx += q.Errors5xx
	if len(q.Latency) > len(p.Latency) {
		p.Latency = append(p.Latency, make([]uint64, len(q.Latency)-len(p.Latency))...)
	}
	for i, n := range q.Latency {
		p.Latency[i] += n
	}
	p.CPU += q.CPU
	p.MemoryMax = max(p.MemoryMax, q.MemoryMax)
}

func encodeCounts(c []uint64) []byte {
	if len(c) == 0 {
		return nil
	}
	b := make([]byte, 0, len(c)*2)
	for _, n := range c {
		b = binary.AppendUvarint(b, n)
	}
	return b
}

func decodeCounts(b []byte) []uint64 {
	var out []uint64
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			break
		}
		out = append(out, n)
		b = b[k:]
	}
	return out
}

// AddMetricPoints merges each point into its stored interval (creating
// it). The history is not worth a sync to disk every few seconds: a crash
// may lose its last seconds, nothing else.
func (s *Store) AddMetricPoints(ctx context.Context, pts []MetricPoint) error {
	if len(pts) == 0 {
		return nil
	}
	err := s.txUnsynced(ctx, func(tx *sql.Tx) error {
		get, err := tx.PrepareContext(ctx, `SELECT requests, errors_4xx, errors_5xx, latency, cpu_us, memory_max FROM metric_points
			WHERE project_id = ? AND deployment_id = ? AND step = ? AND at = ?`)
		if err != nil {
			return err
		}
		defer get.Close()
		put, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO metric_points
			(project_id, deployment_id, step, at, requests, errors_4xx, errors_5xx, latency, cpu_us, memory_max)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer put.Close()
		for _, p := range pts {
			var old MetricPoint
			var lat []byte
			var cpu int64
			err := get.QueryRowContext(ctx, p.ProjectID, p.DeploymentID, p.Step, p.At).
				Scan(&old.Requests, &old.Errors4xx, &old.Errors5xx, &lat, &cpu, &old.MemoryMax)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return err
			default:
				old.Latency = decodeCounts(lat)
				old.CPU = time.Duration(cpu) * time.Microsecond
				old.Add(p)
				old.ProjectID, old.DeploymentID, old.Step, old.At = p.ProjectID, p.DeploymentID, p.Step, p.At
				p = old
			}
			if _, err := put.ExecContext(ctx, p.ProjectID, p.DeploymentID, p.Step, p.At,
				p.Requests, p.Errors4xx, p.Errors5xx, encodeCounts(p.Latency), p.CPU.Microseconds(), p.MemoryMax); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storing metric points: %w", err)
	}
	return nil
}

// MetricPoints returns a series' intervals of step seconds that start at
// or after since (Unix seconds), oldest first. deploymentID "" is the
// project's total.
func (s *Store) MetricPoints(ctx context.Context, projectID, deploymentID string, step, since int64) ([]MetricPoint, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT at, requests, errors_4xx, errors_5xx, latency, cpu_us, memory_max FROM metric_points
		WHERE project_id = ? AND deployment_id = ? AND step = ? AND at >= ? ORDER BY at`, projectID, deploymentID, step, since)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []MetricPoint
	for rows.Next() {
		p := MetricPoint{ProjectID: projectID, DeploymentID: deploymentID, Step: step}
		var lat []byte
		var cpu int64
		if err := rows.Scan(&p.At, &p.Requests, &p.Errors4xx, &p.Errors5xx, &lat, &cpu, &p.MemoryMax); err != nil {
			return nil, err
		}
		p.Latency = decodeCounts(lat)
		p.CPU = time.Duration(cpu) * time.Microsecond
		out = append(out, p)
	}
	return out, rows.Err()
}

// PruneMetricPoints deletes the intervals of each step (seconds) that
// start before its cut-off (Unix seconds) in before, every series of a
// project or deployment that no longer exists, and then, while more than
// maxRows rows remain (unless maxRows is zero or less), the oldest rows of
// deployments before the oldest of projects' totals. It returns how many
// rows it deleted.
func (s *Store) PruneMetricPoints(ctx context.Context, before map[int64]int64, maxRows int) (int, error) {
	deleted := 0
	exec := func(q string, args ...any) error {
		return s.txUnsynced(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, q, args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			deleted += int(n)
			return err
		})
	}
	for step, cut := range before {
		if err := exec(`DELETE FROM metric_points WHERE step = ? AND at < ?`, step, cut); err != nil {
			return deleted, fmt.Errorf("pruning metric points: %w", err)
		}
	}
	if err := exec(`DELETE FROM metric_points WHERE project_id NOT IN (SELECT id FROM projects)
		OR (deployment_id != '' AND deployment_id NOT IN (SELECT id FROM deployments))`); err != nil {
		return deleted, fmt.Errorf("pruning metric points: %w", err)
	}
	if maxRows <= 0 {
		return deleted, nil
	}
	n, err := s.CountMetricPoints(ctx)
	if err != nil || n <= maxRows {
		return deleted, err
	}
	if err := exec(`DELETE FROM metric_points WHERE (project_id, deployment_id, step, at) IN
		(SELECT project_id, deployment_id, step, at FROM metric_points ORDER BY deployment_id = '', at LIMIT ?)`, n-maxRows); err != nil {
		return deleted, fmt.Errorf("pruning metric points: %w", err)
	}
	return deleted, nil
}

// CountMetricPoints returns how many metric points are stored.
func (s *Store) CountMetricPoints(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM metric_points`).Scan(&n)
	return n, err
}

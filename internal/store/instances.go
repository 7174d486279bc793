package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Instance is one sandboxed process of a deployment. State is the runtime
// driver's opaque handle state, persisted so a restarted server can
// re-attach.
type Instance struct {
	ID           string
	DeploymentID string
	Driver       string
	State        []byte
	Status       string // "preparing", "prepared", "starting", "running", "idle", "exited", "stopped"
	StdoutPath   string
	StderrPath   string
	StdoutOffset int64
	StderrOffset int64
	CreatedAt    time.Time
	StoppedAt    time.Time
	Health       InstanceHealth
}

// InstanceHealth is what the health checks found of an instance. State
// values belong to package deploy; the store records them.
type InstanceHealth struct {
	State    string
	Failures int       // consecutive failed checks
	ProbedAt time.Time // the last check; zero before the first
	Result   string    // of the last check: "ok" or why it failed
}

const instanceCols = `id, deployment_id, driver, state, status, stdout_path, stderr_path, stdout_offset, stderr_offset, created_at, stopped_at,
	health, health_failures, probed_at, probe_result`

func scanInstance(row interface{ Scan(...any) error }) (Instance, error) {
	var in Instance
	var created int64
	var stopped, probed sql.NullInt64
	err := row.Scan(&in.ID, &in.DeploymentID, &in.Driver, &in.State, &in.Status, &in.StdoutPath, &in.StderrPath,
		&in.StdoutOffset, &in.StderrOffset, &created, &stopped,
		&in.Health.State, &in.Health.Failures, &probed, &in.Health.Result)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Instance{}, ErrNotFound
		}
		return Instance{}, err
	}
	in.CreatedAt = time.Unix(0, created).UTC()
	in.StoppedAt = fromNull(stopped)
	in.Health.ProbedAt = fromNull(probed)
	return in, nil
}

// CreateInstance records an instance before it is started.
func (s *Store) CreateInstance(ctx context.Context, in Instance) (Instance, error) {
	if in.ID == "" {
		in.ID = NewID()
	}
	if in.CreatedAt.IsZero() {
		in.CreatedAt = now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO instances (`+instanceCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		in.ID, in.DeploymentID, in.Driver, in.State, in.Status, in.StdoutPath, in.StderrPath,
		in.StdoutOffset, in.StderrOffset, in.CreatedAt.UnixNano(), toNull(in.StoppedAt),
		in.Health.State, in.Health.Failures, toNull(in.Health.ProbedAt), in.Health.Result)
	if err != nil {
		return Instance{}, fmt.Errorf("creating instance: %w", err)
	}
	return in, nil
}

// UpdateInstance stores an instance's driver state and status.
func (s *Store) UpdateInstance(ctx context.Context, id string, state []byte, status string) error {
	q := `UPDATE instances SET state = ?, status = ? WHERE id = ?`
	args := []any{state, status, id}
	if status == "stopped" || status == "exited" || status == "idle" {
		q = `UPDATE instances SET state = ?, status = ?, stopped_at = coalesce(stopped_at, ?) WHERE id = ?`
		args = []any{state, status, now().UnixNano(), id}
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return err
	}
	return oneRow(res)
}

// DeleteInstance removes an instance's record, for one that never ran (a
// sandbox prepared ahead and discarded). A missing record is not an error.
func (s *Store) DeleteInstance(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM instances WHERE id = ?`, id)
	return err
}

// ListInstancesWithStatus returns every instance whose status is status,
// oldest first.
func (s *Store) ListInstancesWithStatus(ctx context.Context, status string) ([]Instance, error) {
	return s.queryInstances(ctx, `SELECT `+instanceCols+` FROM instances WHERE status = ? ORDER BY created_at`, status)
}

// SetInstanceHealth records what the latest health check found of an
// instance.
func (s *Store) SetInstanceHealth(ctx context.Context, id string, h InstanceHealth) error {
	res, err := s.db.ExecContext(ctx, `UPDATE instances SET health = ?, health_failures = ?, probed_at = ?, probe_result = ? WHERE id = ?`,
		h.State, h.Failures, toNull(h.ProbedAt), h.Result, id)
	if err != nil {
		return err
	}
	return oneRow(res)
}

// SetInstanceLogOffsets records how far the instance's log files have been
// copied into the log table.
func (s *Store) SetInstanceLogOffsets(ctx context.Context, id string, stdout, stderr int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE instances SET stdout_offset = ?, stderr_offset = ? WHERE id = ?`, stdout, stderr, id)
	return err
}

// ListInstances returns a deployment's instances, oldest first.
func (s *Store) ListInstances(ctx context.Context, deploymentID string) ([]Instance, error) {
	return s.queryInstances(ctx, `SELECT `+instanceCols+` FROM instances WHERE deployment_id = ? ORDER BY created_at`, deploymentID)
}

// ListLiveInstances returns every instance not yet stopped, for
// reconciliation at start.
func (s *Store) ListLiveInstances(ctx context.Context) ([]Instance, error) {
	return s.queryInstances(ctx, `SELECT `+instanceCols+` FROM instances WHERE status IN ('starting', 'running') ORDER BY created_at`)
}

// LatestInstances returns the newest instance (by creation time) of every
// deployment whose status is one of statuses, keyed by deployment id, in
// one query. Deployments without instances are absent.
func (s *Store) LatestInstances(ctx context.Context, statuses ...string) (map[string]Instance, error) {
	if len(statuses) == 0 {
		return map[string]Instance{}, nil
	}
	args := make([]any, len(statuses))
	for i, st := range statuses {
		args[i] = st
	}
	insts, err := s.queryInstances(ctx, `SELECT `+instanceCols+` FROM instances WHERE rowid IN (
		SELECT (SELECT i.rowid FROM instances i WHERE i.deployment_id = d.id ORDER BY i.created_at DESC, i.rowid DESC LIMIT 1)
		FROM deployments d WHERE d.status IN (?`+strings.Repeat(", ?", len(statuses)-1)+`))`, args...)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Instance, len(insts))
	for _, in := range insts {
		out[in.DeploymentID] = in
	}
	return out, nil
}

func (s *Store) queryInstances(ctx context.Context, q string, args ...any) ([]Instance, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		in, err := scanInstance(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, rows.Err()
}

// Wake is one wake of a scaled-to-zero deployment: from the request that
// found no instance to the instance's first passed health check.
type Wake struct {
	DeploymentID string
	StartedAt    time.Time
	Duration     time.Duration
	OK           bool
	Prepared     bool // it started a sandbox prepared ahead
	Restored     bool // the app resumed the deployment's snapshot instead of starting
}

// RecordWake stores a wake's latency.
func (s *Store) RecordWake(ctx context.Context, w Wake) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO wakes (deployment_id, started_at, duration_ns, ok, prepared, restored) VALUES (?, ?, ?, ?, ?, ?)`,
		w.DeploymentID, w.StartedAt.UnixNano(), int64(w.Duration), w.OK, w.Prepared, w.Restored)
	return err
}

// ListWakes returns a deployment's most recent wakes, newest first.
func (s *Store) ListWakes(ctx context.Context, deploymentID string, limit int) ([]Wake, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT started_at, duration_ns, ok, prepared, restored FROM wakes WHERE deployment_id = ? ORDER BY id DESC LIMIT ?`, deploymentID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Wake
	for rows.Next() {
		w := Wake{DeploymentID: deploymentID}
		var started, dur int64
		if err := rows.Scan(&started, &dur, &w.OK, &w.Prepared, &w.Restored); err != nil {
			return nil, err
		}
		w.StartedAt, w.Duration = time.Unix(0, started).UTC(), time.Duration(dur)
		out = append(out, w)
	}
	return out, rows.Err()
}

// Exit is how an instance's process ended.
type Exit struct {
	InstanceID string
	Code       int  // -1 if unknown; 128+N for a signal N
	OOMKilled  bool // the out-of-memory killer killed it (its memory limit was reached)
	At         time.Time
}

// SetInstanceExit records how instance id's process ended.
func (s *Store) SetInstanceExit(ctx context.Context, id string, code int, oomKilled bool, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE instances SET exit_code = ?, oom_killed = ?, exited_at = ? WHERE id = ?`,
		code, oomKilled, toNull(at), id)
	if err != nil {
		return err
	}
	return oneRow(res)
}

// LastExit returns the most recent recorded exit of an instance of
// deployment id, or ErrNotFound if none of them has exited.
func (s *Store) LastExit(ctx context.Context, deploymentID string) (Exit, error) {
	var e Exit
	var at sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT id, exit_code, oom_killed, exited_at FROM instances
		WHERE deployment_id = ? AND exit_code IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 1`, deploymentID).
		Scan(&e.InstanceID, &e.Code, &e.OOMKilled, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return Exit{}, ErrNotFound
	}
	if err != nil {
		return Exit{}, err
	}
	e.At = fromNull(at)
	return e, nil
}

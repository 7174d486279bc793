package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Deployments are ordered by creation: created_at, then rowid (the order
// SQLite inserted them in) for deployments created in the same
// nanosecond.

// PromoteIfNewer makes deploymentID the current deployment of its
// environment, unless the current one was created after it and its status
// is one of holding (a newer deployment that serves, or is about to): an
// automatic promotion never moves an environment back to an older
// deployment. The check and the change are one transaction, so two
// deployments finishing at once cannot both win. It returns the id of the
// environment's current deployment afterwards: deploymentID when promoted.
func (s *Store) PromoteIfNewer(ctx context.Context, deploymentID string, holding ...string) (string, error) {
	var current string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var envID string
		var created, seq int64
		err := tx.QueryRowContext(ctx, `SELECT d.environment_id, d.created_at, d.rowid, coalesce(e.current_deployment_id, '')
			FROM deployments d JOIN environments e ON e.id = d.environment_id WHERE d.id = ?`, deploymentID).
			Scan(&envID, &created, &seq, &current)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("deployment %q: %w", deploymentID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if current != "" && current != deploymentID && len(holding) > 0 {
			args := []any{current, created, created, seq}
			for _, st := range holding {
				args = append(args, st)
			}
			var newer int
			err := tx.QueryRowContext(ctx, `SELECT count(*) FROM deployments WHERE id = ?
				AND (created_at > ? OR (created_at = ? AND rowid > ?))
				AND status IN (?`+strings.Repeat(", ?", len(holding)-1)+`)`, args...).Scan(&newer)
			if err != nil {
				return err
			}
			if newer > 0 {
				return nil
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE environments SET current_deployment_id = ? WHERE id = ?`, deploymentID, envID); err != nil {
			return err
		}
		current = deploymentID
		return nil
	})
	if err != nil {
		return "", err
	}
	return current, nil
}

// FallBack makes the newest deployment of the environment whose status is
// one of statuses its current deployment, if the current one is still
// from: what happens when the current deployment is stopped. It returns
// the new current deployment's id, or "" when there is none to fall back
// to (or from is no longer current); nothing changes then.
func (s *Store) FallBack(ctx context.Context, envID, from string, statuses ...string) (string, error) {
	if len(statuses) == 0 {
		return "", nil
	}
	var next string
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var current string
		err := tx.QueryRowContext(ctx, `SELECT coalesce(current_deployment_id, '') FROM environments WHERE id = ?`, envID).Scan(&current)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("environment %q: %w", envID, ErrNotFound)
		}
		if err != nil || current != from {
			return err
		}
		args := []any{envID, from}
		for _, st := range statuses {
			args = append(args, st)
		}
		err = tx.QueryRowContext(ctx, `SELECT id FROM deployments WHERE environment_id = ? AND id <> ?
			AND status IN (?`+strings.Repeat(", ?", len(statuses)-1)+`)
			ORDER BY created_at DESC, rowid DESC LIMIT 1`, args...).Scan(&next)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE environments SET current_deployment_id = ? WHERE id = ?`, next, envID)
		return err
	})
	if err != nil {
		return "", err
	}
	return next, nil
}

package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Hook is a project's outgoing webhook (package notify). URL and Secret
// are sealed by the caller; URLHint is the URL with its secret parts
// elided, kept in clear to be shown.
type Hook struct {
	ID        string
	ProjectID string
	URL       []byte
	URLHint   string
	Secret    []byte
	Format    string
	Events    []string
	CreatedAt time.Time
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// Delivery is one notification to a hook: pending until it is delivered
// or has failed for good. Body is the exact request body.
type Delivery struct {
	ID            string
	HookID        string
	Event         string
	Body          []byte
	State         string
	Attempts      int
	NextAttemptAt time.Time // when a pending delivery is tried next
	LastStatus    int       // the HTTP status of the last attempt; 0 if none answered
	LastError     string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

const hookCols = `id, project_id, url, url_hint, secret, format, events, created_at`

// CreateHook stores a webhook, filling in its id and creation time.
func (s *Store) CreateHook(ctx context.Context, h Hook) (Hook, error) {
	if h.ID == "" {
		h.ID = NewID()
	}
	if h.CreatedAt.IsZero() {
		h.CreatedAt = now()
	}
	events, err := json.Marshal(h.Events)
	if err != nil {
		return Hook{}, err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO notify_hooks (`+hookCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		h.ID, h.ProjectID, h.URL, h.URLHint, h.Secret, h.Format, string(events), h.CreatedAt.UnixNano())
	if err != nil {
		return Hook{}, fmt.Errorf("creating webhook: %w", err)
	}
	return h, nil
}

func scanHook(sc interface{ Scan(...any) error }) (Hook, error) {
	var h Hook
	var events string
	var created int64
	if err := sc.Scan(&h.ID, &h.ProjectID, &h.URL, &h.URLHint, &h.Secret, &h.Format, &events, &created); err != nil {
		return Hook{}, err
	}
	if err := json.Unmarshal([]byte(events), &h.Events); err != nil {
		return Hook{}, fmt.Errorf("webhook %s: events: %w", h.ID, err)
	}
	h.CreatedAt = time.Unix(0, created).UTC()
	return h, nil
}

// GetHook returns a webhook by id.
func (s *Store) GetHook(ctx context.Context, id string) (Hook, error) {
	h, err := scanHook(s.db.QueryRowContext(ctx, `SELECT `+hookCols+` FROM notify_hooks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Hook{}, fmt.Errorf("webhook %q: %w", id, ErrNotFound)
	}
	return h, err
}

// ListHooks returns a project's webhooks, oldest first.
func (s *Store) ListHooks(ctx context.Context, projectID string) ([]Hook, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+hookCols+` FROM notify_hooks WHERE project_id = ? ORDER BY created_at, id`, projectID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Hook
	for rows.Next() {
		h, err := scanHook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// DeleteHook deletes a project's webhook and its deliveries.
func (s *Store) DeleteHook(ctx context.Context, projectID, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM notify_hooks WHERE id = ? AND project_id = ?`, id, projectID)
	if err != nil {
		return err
	}
	if err := oneRow(res); err != nil {
		return fmt.Errorf("webhook %q: %w", id, err)
	}
	return nil
}

const deliveryCols = `id, hook_id, event, body, state, attempts, next_attempt_at, last_status, last_error, created_at, updated_at`

// EnqueueDeliveries stores new pending deliveries in one synced
// transaction, filling in their ids and times, and deletes the oldest
// finished deliveries of their hooks beyond keep per hook.
func (s *Store) EnqueueDeliveries(ctx context.Context, ds []Delivery, keep int) error {
	if len(ds) == 0 {
		return nil
	}
	t := now()
	return s.tx(ctx, func(tx *sql.Tx) error {
		hooks := map[string]bool{}
		for i := range ds {
			d := &ds[i]
			if d.ID == "" {
				d.ID = NewID()
			}
			d.State, d.CreatedAt, d.UpdatedAt = DeliveryPending, t, t
			if d.NextAttemptAt.IsZero() {
				d.NextAttemptAt = t
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO notify_deliveries (`+deliveryCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				d.ID, d.HookID, d.Event, d.Body, d.State, d.Attempts, d.NextAttemptAt.UnixNano(), d.LastStatus, d.LastError,
				d.CreatedAt.UnixNano(), d.UpdatedAt.UnixNano())
			if err != nil {
				return fmt.Errorf("queueing delivery: %w", err)
			}
			hooks[d.HookID] = true
		}
		for hook := range hooks {
			_, err := tx.ExecContext(ctx, `DELETE FROM notify_deliveries WHERE id IN (SELECT id FROM notify_deliveries
				WHERE hook_id = ? AND state != 'pending' ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?)`, hook, max(keep, 1))
			if err != nil {
				return fmt.Errorf("trimming deliveries: %w", err)
			}
		}
		return nil
	})
}

func scanDelivery(sc interface{ Scan(...any) error }) (Delivery, error) {
	var d Delivery
	var next, created, updated int64
	err := sc.Scan(&d.ID, &d.HookID, &d.Event, &d.Body, &d.State, &d.Attempts, &next, &d.LastStatus, &d.LastError, &created, &updated)
	d.NextAttemptAt, d.CreatedAt, d.UpdatedAt = time.Unix(0, next).UTC(), time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	return d, err
}

func (s *Store) queryDeliveries(ctx context.Context, q string, args ...any) ([]Delivery, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// PendingDeliveries returns up to limit pending deliveries, the soonest
// due first.
func (s *Store) PendingDeliveries(ctx context.Context, limit int) ([]Delivery, error) {
	return s.queryDeliveries(ctx, `SELECT `+deliveryCols+` FROM notify_deliveries WHERE state = 'pending'
		ORDER BY next_attempt_at, id LIMIT ?`, limit)
}

// ListDeliveries returns a hook's most recent deliveries, newest first.
// If hookID is empty, those of every hook of projectID.
func (s *Store) ListDeliveries(ctx context.Context, projectID, hookID string, limit int) ([]Delivery, error) {
	if limit <= 0 {
		limit = 100
	}
	if hookID != "" {
		return s.queryDeliveries(ctx, `SELECT `+deliveryCols+` FROM notify_deliveries d WHERE hook_id = ?
			AND EXISTS (SELECT 1 FROM notify_hooks h WHERE h.id = d.hook_id AND h.project_id = ?)
			ORDER BY created_at DESC, id DESC LIMIT ?`, hookID, projectID, limit)
	}
	return s.queryDeliveries(ctx, `SELECT `+deliveryCols+` FROM notify_deliveries WHERE hook_id IN
		(SELECT id FROM notify_hooks WHERE project_id = ?) ORDER BY created_at DESC, id DESC LIMIT ?`, projectID, limit)
}

// GetDelivery returns a delivery by id.
func (s *Store) GetDelivery(ctx context.Context, id string) (Delivery, error) {
	d, err := scanDelivery(s.db.QueryRowContext(ctx, `SELECT `+deliveryCols+` FROM notify_deliveries WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, fmt.Errorf("delivery %q: %w", id, ErrNotFound)
	}
	return d, err
}

// RecordAttempt stores the outcome of an attempt at a delivery: its new
// state, attempts, next attempt (if still pending), and the answer.
// ErrNotFound: the delivery is gone (its hook was deleted).
func (s *Store) RecordAttempt(ctx context.Context, d Delivery) error {
	res, err := s.db.ExecContext(ctx, `UPDATE notify_deliveries SET state = ?, attempts = ?, next_attempt_at = ?,
		last_status = ?, last_error = ?, updated_at = ? WHERE id = ?`,
		d.State, d.Attempts, d.NextAttemptAt.UnixNano(), d.LastStatus, d.LastError, now().UnixNano(), d.ID)
	if err != nil {
		return err
	}
	return oneRow(res)
}

// Drain is a project's log drain (package drain). URL is sealed by the
// caller; URLHint is the URL with its secret parts elided. CA, if set, is
// the PEM of the certificates that a TLS endpoint's chain must end in.
type Drain struct {
	ID        string
	ProjectID string
	URL       []byte
	URLHint   string
	CA        string
	CreatedAt time.Time
}

const drainCols = `id, project_id, url, url_hint, ca, created_at`

// CreateDrain stores a log drain, filling in its id and creation time.
func (s *Store) CreateDrain(ctx context.Context, d Drain) (Drain, error) {
	if d.ID == "" {
		d.ID = NewID()
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO log_drains (`+drainCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		d.ID, d.ProjectID, d.URL, d.URLHint, d.CA, d.CreatedAt.UnixNano())
	if err != nil {
		return Drain{}, fmt.Errorf("creating log drain: %w", err)
	}
	return d, nil
}

// ListDrains returns a project's log drains, oldest first; every
// project's if projectID is empty.
func (s *Store) ListDrains(ctx context.Context, projectID string) ([]Drain, error) {
	q := `SELECT ` + drainCols + ` FROM log_drains`
	var args []any
	if projectID != "" {
		q += ` WHERE project_id = ?`
		args = append(args, projectID)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Drain
	for rows.Next() {
		var d Drain
		var created int64
		if err := rows.Scan(&d.ID, &d.ProjectID, &d.URL, &d.URLHint, &d.CA, &created); err != nil {
			return nil, err
		}
		d.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeleteDrain deletes a project's log drain.
func (s *Store) DeleteDrain(ctx context.Context, projectID, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM log_drains WHERE id = ? AND project_id = ?`, id, projectID)
	if err != nil {
		return err
	}
	if err := oneRow(res); err != nil {
		return fmt.Errorf("log drain %q: %w", id, err)
	}
	return nil
}

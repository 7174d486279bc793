package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// GitHub feedback (migration 11): which deployments report to GitHub, the
// outbox of requests to send it (commit statuses, pull-request comments),
// and the pull requests that have previews.

// GitHubDeployment says where a deployment reports its status: a commit
// of a repository, under a status context.
type GitHubDeployment struct {
	DeploymentID string
	// Repository is the repository's "owner/name", as the webhook said.
	Repository string
	SHA        string
	Context    string
	// PullRequest is the number of the pull request it previews; 0 for a
	// push.
	PullRequest int
}

// GitHubRequest is one request to GitHub waiting in the outbox. Requests
// with the same Key are sent in the order they were queued, each after
// the one before it is sent or given up.
type GitHubRequest struct {
	ID        int64
	ProjectID string
	Key       string
	Kind      string // what Body is, for the sender
	Body      string // JSON
	Attempts  int
	NextAt    time.Time
	LastError string
	CreatedAt time.Time
}

// PullRequest is a pull request with a preview environment.
type PullRequest struct {
	ProjectID string
	Number    int
	// Repository is the base repository's "owner/name"; HeadRepository
	// the repository its commits come from (another one for a fork).
	Repository     string
	HeadRepository string
	HeadSHA        string
	Fork           bool
	State          string // "open" or "closed"
	// CommentID is the id of the comment Slipway posted on it; 0 until it
	// is posted.
	CommentID int64
	UpdatedAt time.Time
}

// RecordGitHubDeployment records where a deployment reports to GitHub and
// queues the requests reqs (its first status) in one transaction. It may
// be called before the deployment is created (with the id it will have).
func (s *Store) RecordGitHubDeployment(ctx context.Context, g GitHubDeployment, reqs ...GitHubRequest) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO github_deployments (deployment_id, repository, sha, context, pull_request)
			VALUES (?, ?, ?, ?, ?)`, g.DeploymentID, g.Repository, g.SHA, g.Context, g.PullRequest); err != nil {
			return err
		}
		return queueGitHub(ctx, tx, reqs)
	})
}

// ForgetGitHubDeployment removes what RecordGitHubDeployment recorded for
// deployment id, and its requests still queued under key: the deployment
// was not created after all.
func (s *Store) ForgetGitHubDeployment(ctx context.Context, id, key string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM github_deployments WHERE deployment_id = ?`, id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM github_outbox WHERE key = ?`, key)
		return err
	})
}

// GetGitHubDeployment returns where deployment id reports, or ErrNotFound
// when it does not.
func (s *Store) GetGitHubDeployment(ctx context.Context, id string) (GitHubDeployment, error) {
	var g GitHubDeployment
	err := s.db.QueryRowContext(ctx, `SELECT deployment_id, repository, sha, context, pull_request FROM github_deployments WHERE deployment_id = ?`, id).
		Scan(&g.DeploymentID, &g.Repository, &g.SHA, &g.Context, &g.PullRequest)
	if errors.Is(err, sql.ErrNoRows) {
		return g, ErrNotFound
	}
	return g, err
}

// QueueGitHub appends requests to the outbox, due at once.
func (s *Store) QueueGitHub(ctx context.Context, reqs ...GitHubRequest) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return queueGitHub(ctx, tx, reqs) })
}

func queueGitHub(ctx context.Context, tx *sql.Tx, reqs []GitHubRequest) error {
	t := now().UnixNano()
	for _, r := range reqs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO github_outbox (project_id, key, kind, body, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			r.ProjectID, r.Key, r.Kind, r.Body, t, t); err != nil {
			return err
		}
	}
	return nil
}

// DueGitHubRequests returns at most limit requests due at t, oldest first,
// each the first of its key still queued.
func (s *Store) DueGitHubRequests(ctx context.Context, t time.Time, limit int) ([]GitHubRequest, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT o.id, o.project_id, o.key, o.kind, o.body, o.attempts, o.next_at, o.last_error, o.created_at
		FROM github_outbox o
		WHERE o.next_at <= ? AND NOT EXISTS (SELECT 1 FROM github_outbox e WHERE e.key = o.key AND e.id < o.id)
		ORDER BY o.id LIMIT ?`, t.UnixNano(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []GitHubRequest
	for rows.Next() {
		var r GitHubRequest
		var next, created int64
		if err := rows.Scan(&r.ID, &r.ProjectID, &r.Key, &r.Kind, &r.Body, &r.Attempts, &next, &r.LastError, &created); err != nil {
			return nil, err
		}
		r.NextAt, r.CreatedAt = time.Unix(0, next).UTC(), time.Unix(0, created).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// NextGitHubRequest returns when the earliest queued request is due;
// false when the outbox is empty.
func (s *Store) NextGitHubRequest(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT min(next_at) FROM github_outbox`).Scan(&next); err != nil {
		return time.Time{}, false, err
	}
	return time.Unix(0, next.Int64).UTC(), next.Valid, nil
}

// RetryGitHubRequest records a failed attempt of request id and when to
// try again.
func (s *Store) RetryGitHubRequest(ctx context.Context, id int64, next time.Time, lastError string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE github_outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?`,
		next.UnixNano(), lastError, id)
	return err
}

// DoneGitHubRequest removes request id from the outbox: sent, or given up.
func (s *Store) DoneGitHubRequest(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM github_outbox WHERE id = ?`, id)
	return err
}

// ListGitHubRequests returns the queued requests of a project, oldest
// first.
func (s *Store) ListGitHubRequests(ctx context.Context, projectID string) ([]GitHubRequest, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, project_id, key, kind, body, attempts, next_at, last_error, created_at
		FROM github_outbox WHERE project_id = ? ORDER BY id`, projectID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []GitHubRequest
	for rows.Next() {
		var r GitHubRequest
		var next, created int64
		if err := rows.Scan(&r.ID, &r.ProjectID, &r.Key, &r.Kind, &r.Body, &r.Attempts, &next, &r.LastError, &created); err != nil {
			return nil, err
		}
		r.NextAt, r.CreatedAt = time.Unix(0, next).UTC(), time.Unix(0, created).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// SavePullRequest records a pull request's state, keeping the id of the
// comment posted on it.
func (s *Store) SavePullRequest(ctx context.Context, pr PullRequest) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO pull_requests (project_id, number, repository, head_repository, head_sha, fork, state, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (project_id, number) DO UPDATE SET repository = excluded.repository, head_repository = excluded.head_repository,
			head_sha = excluded.head_sha, fork = excluded.fork, state = excluded.state, updated_at = excluded.updated_at`,
		pr.ProjectID, pr.Number, pr.Repository, pr.HeadRepository, pr.HeadSHA, pr.Fork, pr.State, now().UnixNano())
	return err
}

// GetPullRequest returns a project's pull request, or ErrNotFound.
func (s *Store) GetPullRequest(ctx context.Context, projectID string, number int) (PullRequest, error) {
	row := s.db.QueryRowContext(ctx, `SELECT project_id, number, repository, head_repository, head_sha, fork, state, comment_id, updated_at
		FROM pull_requests WHERE project_id = ? AND number = ?`, projectID, number)
	return scanPullRequest(row)
}

// ListPullRequests returns a project's pull requests with previews, the
// most recently updated first.
func (s *Store) ListPullRequests(ctx context.Context, projectID string) ([]PullRequest, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT project_id, number, repository, head_repository, head_sha, fork, state, comment_id, updated_at
		FROM pull_requests WHERE project_id = ? ORDER BY updated_at DESC, number DESC`, projectID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PullRequest
	for rows.Next() {
		pr, err := scanPullRequest(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, pr)
	}
	return out, rows.Err()
}

func scanPullRequest(row interface{ Scan(...any) error }) (PullRequest, error) {
	var pr PullRequest
	var updated int64
	err := row.Scan(&pr.ProjectID, &pr.Number, &pr.Repository, &pr.HeadRepository, &pr.HeadSHA, &pr.Fork, &pr.State, &pr.CommentID, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return pr, ErrNotFound
	}
	pr.UpdatedAt = time.Unix(0, updated).UTC()
	return pr, err
}

// SetPullRequestComment records the id of the comment posted on a pull
// request (0: none, post a new one).
func (s *Store) SetPullRequestComment(ctx context.Context, projectID string, number int, commentID int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE pull_requests SET comment_id = ? WHERE project_id = ? AND number = ?`, commentID, projectID, number)
	return err
}

package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a random 12-character lowercase base32 id (60 bits), safe
// as a DNS label.
func NewID() string {
	var b [8]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])[:12]
}

// Deployment is one build-and-run of a project's source. Status values and
// their transitions belong to package deploy; the store records them.
type Deployment struct {
	ID              string
	ProjectID       string
	ProjectName     string // read only, joined
	EnvironmentID   string
	EnvironmentName string // read only, joined
	Status          string
	Trigger         string
	Promote         bool

	// SourceURL, when set, is the git repository the source is fetched
	// from (at CommitSHA) while INITIALIZING; otherwise it was uploaded.
	SourceURL string
	// SourceImage, when set, is the reference of a prebuilt image the
	// deployment runs instead of building a source (Image then names its
	// copy in Slipway's registry).
	SourceImage string

	Branch        string
	CommitSHA     string
	CommitMessage string
	CommitAuthor  string
	// Dirty reports an upload from a git work tree with uncommitted
	// changes: the source is not exactly CommitSHA.
	Dirty bool

	StartCommand         string
	DetectedStartCommand string
	Builder              string
	Plan                 string // the build plan, JSON
	Image                string
	ImageDigest          string
	FailureReason        string
	Attempts             int
	// Captured is what the deployment took from its project when it was
	// created; nil for deployments made before Slipway captured it (they
	// follow their project's current settings and variables).
	Captured *Captured

	CreatedAt      time.Time
	UpdatedAt      time.Time
	InitializingAt time.Time
	InitEndedAt    time.Time
	BuildingAt     time.Time
	BuildEndedAt   time.Time
	DeployingAt    time.Time
	DeployEndedAt  time.Time
	FinishedAt     time.Time
}

// Captured is what a deployment takes from its project and environment
// when it is created, so that changing them later never changes it
// (DESIGN.md, "What a deployment is made of"): the project's settings
// (resource limits, health check, idle timeout, and the build settings its
// plan is detected with) and the environment's variables, still sealed.
type Captured struct {
	Settings ProjectSettings `json:"settings"`
	Vars     []EnvVar        `json:"vars"`
	// Inherit names the environment whose variables Vars holds too, under
	// the deployment's own environment's (a pull request's preview takes
	// production's); "" for none.
	Inherit string `json:"inherit,omitempty"`
}

const deploymentCols = `d.id, d.project_id, p.name, d.environment_id, e.name, d.status, d.trigger, d.promote, d.source_url,
	d.branch, d.commit_sha, d.commit_message, d.commit_author,
	d.start_command, d.detected_start_command, d.builder, d.plan, d.image, d.image_digest, d.failure_reason, d.attempts,
	d.created_at, d.updated_at, d.initializing_at, d.init_ended_at, d.building_at, d.build_ended_at,
	d.deploying_at, d.deploy_ended_at, d.finished_at, d.dirty, d.captured, d.source_image`

const deploymentFrom = ` FROM deployments d JOIN projects p ON p.id = d.project_id JOIN environments e ON e.id = d.environment_id `

func scanDeployment(row interface{ Scan(...any) error }) (Deployment, error) {
	var d Deployment
	var created, updated int64
	var ini, inie, bld, blde, dep, depe, fin sql.NullInt64
	var captured string
	err := row.Scan(&d.ID, &d.ProjectID, &d.ProjectName, &d.EnvironmentID, &d.EnvironmentName, &d.Status, &d.Trigger, &d.Promote, &d.SourceURL,
		&d.Branch, &d.CommitSHA, &d.CommitMessage, &d.CommitAuthor,
		&d.StartCommand, &d.DetectedStartCommand, &d.Builder, &d.Plan, &d.Image, &d.ImageDigest, &d.FailureReason, &d.Attempts,
		&created, &updated, &ini, &inie, &bld, &blde, &dep, &depe, &fin, &d.Dirty, &captured, &d.SourceImage)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Deployment{}, ErrNotFound
		}
		return Deployment{}, err
	}
	if captured != "" {
		d.Captured = new(Captured)
		if err := json.Unmarshal([]byte(captured), d.Captured); err != nil {
			return Deployment{}, fmt.Errorf("deployment %s: captured settings: %w", d.ID, err)
		}
	}
	d.CreatedAt = time.Unix(0, created).UTC()
	d.UpdatedAt = time.Unix(0, updated).UTC()
	d.InitializingAt, d.InitEndedAt = fromNull(ini), fromNull(inie)
	d.BuildingAt, d.BuildEndedAt = fromNull(bld), fromNull(blde)
	d.DeployingAt, d.DeployEndedAt = fromNull(dep), fromNull(depe)
	d.FinishedAt = fromNull(fin)
	return d, nil
}

// CreateDeployment records a new deployment. ID, CreatedAt and UpdatedAt
// are filled in when empty.
func (s *Store) CreateDeployment(ctx context.Context, d Deployment) (Deployment, error) {
	if d.ID == "" {
		d.ID = NewID()
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = now()
	}
	d.UpdatedAt = d.CreatedAt
	captured := ""
	if d.Captured != nil {
		b, err := json.Marshal(d.Captured)
		if err != nil {
			return Deployment{}, err
		}
		captured = string(b)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO deployments (id, project_id, environment_id, status, trigger, promote, source_url,
		branch, commit_sha, commit_message, commit_author, start_command, detected_start_command, image, image_digest,
		created_at, updated_at, dirty, captured, source_image) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.ProjectID, d.EnvironmentID, d.Status, d.Trigger, d.Promote, d.SourceURL,
		d.Branch, d.CommitSHA, d.CommitMessage, d.CommitAuthor, d.StartCommand, d.DetectedStartCommand, d.Image, d.ImageDigest,
		d.CreatedAt.UnixNano(), d.UpdatedAt.UnixNano(), d.Dirty, captured, d.SourceImage)
	if err != nil {
		return Deployment{}, fmt.Errorf("creating deployment: %w", err)
	}
	return s.GetDeployment(ctx, d.ID)
}

// GetDeployment returns a deployment by id.
func (s *Store) GetDeployment(ctx context.Context, id string) (Deployment, error) {
	d, err := scanDeployment(s.db.QueryRowContext(ctx, `SELECT `+deploymentCols+deploymentFrom+`WHERE d.id = ?`, id))
	if errors.Is(err, ErrNotFound) {
		return Deployment{}, fmt.Errorf("deployment %q: %w", id, ErrNotFound)
	}
	return d, err
}

// DeploymentFilter selects deployments; zero fields select everything.
type DeploymentFilter struct {
	ProjectID     string
	EnvironmentID string
	Statuses      []string
	Before        time.Time // created strictly before; for paging
	Limit         int       // If zero, 50.
}

// ListDeployments returns deployments matching f, newest first.
func (s *Store) ListDeployments(ctx context.Context, f DeploymentFilter) ([]Deployment, error) {
	var where []string
	var args []any
	if f.ProjectID != "" {
		where = append(where, "d.project_id = ?")
		args = append(args, f.ProjectID)
	}
	if f.EnvironmentID != "" {
		where = append(where, "d.environment_id = ?")
		args = append(args, f.EnvironmentID)
	}
	if len(f.Statuses) > 0 {
		where = append(where, "d.status IN (?"+strings.Repeat(", ?", len(f.Statuses)-1)+")")
		for _, st := range f.Statuses {
			args = append(args, st)
		}
	}
	if !f.Before.IsZero() {
		where = append(where, "d.created_at < ?")
		args = append(args, f.Before.UnixNano())
	}
	q := `SELECT ` + deploymentCols + deploymentFrom
	if len(where) > 0 {
		q += "WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	q += fmt.Sprintf(" ORDER BY d.created_at DESC, d.id DESC LIMIT %d", limit)
	return s.queryDeployments(ctx, q, args...)
}

// ListAllDeployments returns every deployment, oldest first (ties broken
// by id), in one query: what a starting server reconciles.
func (s *Store) ListAllDeployments(ctx context.Context) ([]Deployment, error) {
	return s.queryDeployments(ctx, `SELECT `+deploymentCols+deploymentFrom+`ORDER BY d.created_at, d.id`)
}

func (s *Store) queryDeployments(ctx context.Context, q string, args ...any) ([]Deployment, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Deployment
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// DeploymentPatch lists the fields of a deployment to change; nil fields
// are left alone.
type DeploymentPatch struct {
	Status               *string
	FailureReason        *string
	StartCommand         *string
	DetectedStartCommand *string
	Builder              *string
	Plan                 *string
	Image                *string
	ImageDigest          *string
	Attempts             *int

	InitializingAt *time.Time
	InitEndedAt    *time.Time
	BuildingAt     *time.Time
	BuildEndedAt   *time.Time
	DeployingAt    *time.Time
	DeployEndedAt  *time.Time
	FinishedAt     *time.Time
}

// UpdateDeployment applies p to the deployment if its status is still
// fromStatus (an empty fromStatus skips the check); otherwise it returns
// ErrConflict and changes nothing. The log lines, if any, are appended in
// the same transaction, so a reader never sees the change without them.
func (s *Store) UpdateDeployment(ctx context.Context, id, fromStatus string, p DeploymentPatch, lines ...LogLine) (Deployment, error) {
	sets := []string{"updated_at = ?"}
	args := []any{now().UnixNano()}
	str := func(col string, v *string) {
		if v != nil {
			sets = append(sets, col+" = ?")
			args = append(args, *v)
		}
	}
	tm := func(col string, v *time.Time) {
		if v != nil {
			sets = append(sets, col+" = ?")
			args = append(args, toNull(*v))
		}
	}
	str("status", p.Status)
	str("failure_reason", p.FailureReason)
	str("start_command", p.StartCommand)
	str("detected_start_command", p.DetectedStartCommand)
	str("builder", p.Builder)
	str("plan", p.Plan)
	str("image", p.Image)
	str("image_digest", p.ImageDigest)
	if p.Attempts != nil {
		sets = append(sets, "attempts = ?")
		args = append(args, *p.Attempts)
	}
	tm("initializing_at", p.InitializingAt)
	tm("init_ended_at", p.InitEndedAt)
	tm("building_at", p.BuildingAt)
	tm("build_ended_at", p.BuildEndedAt)
	tm("deploying_at", p.DeployingAt)
	tm("deploy_ended_at", p.DeployEndedAt)
	tm("finished_at", p.FinishedAt)
	q := `UPDATE deployments SET ` + strings.Join(sets, ", ") + ` WHERE id = ?`
	args = append(args, id)
	if fromStatus != "" {
		q += ` AND status = ?`
		args = append(args, fromStatus)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("updating deployment %s: %w", id, err)
		}
		if err := oneRow(res); err != nil {
			return err
		}
		return appendLogs(ctx, tx, lines)
	})
	if errors.Is(err, ErrNotFound) {
		cur, gerr := s.GetDeployment(ctx, id)
		if gerr != nil {
			return Deployment{}, gerr
		}
		return cur, fmt.Errorf("deployment %s is %s, not %s: %w", id, cur.Status, fromStatus, ErrConflict)
	}
	if err != nil {
		return Deployment{}, err
	}
	return s.GetDeployment(ctx, id)
}

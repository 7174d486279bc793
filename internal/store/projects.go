package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Project is a named app with its environments and deployments.
type Project struct {
	ID        string
	Name      string
	Settings  ProjectSettings
	CreatedAt time.Time
	// RepoURL links the project to a git repository (GitHub webhooks).
	RepoURL string
	// WebhookSecret is the encrypted webhook secret; nil when none is set.
	WebhookSecret []byte
	// RepoToken is the encrypted token used to clone RepoURL; nil for
	// public repositories.
	RepoToken []byte
	// RegistryAuth is the sealed JSON of the credentials used to pull the
	// project's images from other registries; nil when none are set.
	RegistryAuth []byte
	// RepoDefaultBranch is the default branch of the linked repository,
	// as GitHub last reported it (a push's payload, or its API when the
	// repository was linked); "" when not known. Production follows it.
	RepoDefaultBranch string
	// Egress is the project's network policy beyond the default.
	Egress Egress
}

// Egress is what a project's instances may reach beyond the public
// internet (Allow: destinations the default policy denies, as CIDR or
// CIDR:PORT), or None: nothing at all.
type Egress struct {
	None  bool     `json:"none,omitempty"`
	Allow []string `json:"allow,omitempty"`
}

// ProjectSettings are per-project knobs. A zero field means "the server's
// default".
type ProjectSettings struct {
	StartCommand   string `json:"startCommand,omitempty"`
	Dockerfile     string `json:"dockerfilePath,omitempty"`
	RootDirectory  string `json:"rootDirectory,omitempty"`  // monorepos: where detection and the build run
	DeployWindow   string `json:"deployWindow,omitempty"`   // Go duration
	IdleTimeout    string `json:"idleTimeout,omitempty"`    // Go duration; "0" = never
	BuildTimeout   string `json:"buildTimeout,omitempty"`   // Go duration; if empty, the server's (30m)
	MemoryBytes    int64  `json:"memoryBytes,omitempty"`    //
	CPUMillis      int64  `json:"cpuMillis,omitempty"`      //
	Pids           int64  `json:"pids,omitempty"`           //
	DiskBytes      int64  `json:"diskBytes,omitempty"`      // the writable layer's quota
	HealthPath     string `json:"healthPath,omitempty"`     // If empty, "/".
	HealthPort     int    `json:"healthPort,omitempty"`     // If zero, 3000.
	HealthInterval string `json:"healthInterval,omitempty"` // If empty, 15s.
	HealthTimeout  string `json:"healthTimeout,omitempty"`  // If empty, 5s.
	HealthFailures int    `json:"healthFailures,omitempty"` // If zero, 3.
	LogMaxAge      string `json:"logMaxAge,omitempty"`      // runtime logs kept; Go duration. If empty, 168h.
	LogMaxBytes    int64  `json:"logMaxBytes,omitempty"`    // runtime logs kept, per project. If zero, 100 MiB.
	Sandbox        string `json:"sandbox,omitempty"`        // runc, gvisor or microvm. If empty, the server's default.
	// NoSnapshots makes every wake of a gvisor deployment start the app
	// instead of resuming a snapshot of its first healthy instance: for
	// an app that must make something new at each start (a secret, a
	// seed, an instance id). If false, the server's --snapshots decides.
	NoSnapshots bool `json:"noSnapshots,omitempty"`
	// Previews deploys each open pull request of the linked repository
	// into an environment of its own, pr-<number> (GitHub pull_request
	// webhooks). It is the project's, not a deployment's: it applies at
	// once. If false, pull requests are ignored.
	Previews bool `json:"previews,omitempty"`
}

// Environment is a deployment target of a project (production first).
type Environment struct {
	ID                  string
	ProjectID           string
	Name                string
	CurrentDeploymentID string
	// Branches are the git branches whose pushes deploy to this
	// environment.
	Branches  []string
	CreatedAt time.Time
}

// DefaultProductionBranches are mapped to production when a project is
// created.
var DefaultProductionBranches = []string{"main", "master"}

// ProductionEnvironment is the environment every project starts with.
const ProductionEnvironment = "production"

// CreateProject creates a project and its production environment.
func (s *Store) CreateProject(ctx context.Context, p Project) (Project, error) {
	if p.ID == "" {
		p.ID = NewID()
	}
	if p.CreatedAt.IsZero() {
		p.CreatedAt = now()
	}
	settings, err := json.Marshal(p.Settings)
	if err != nil {
		return Project{}, err
	}
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO projects (id, name, settings, created_at) VALUES (?, ?, ?, ?)`,
			p.ID, p.Name, string(settings), p.CreatedAt.UnixNano()); err != nil {
			if isUnique(err) {
				return fmt.Errorf("project %q: %w", p.Name, ErrExists)
			}
			return err
		}
		branches, _ := json.Marshal(DefaultProductionBranches)
		_, err := tx.ExecContext(ctx, `INSERT INTO environments (id, project_id, name, branches, created_at) VALUES (?, ?, ?, ?, ?)`,
			NewID(), p.ID, ProductionEnvironment, string(branches), p.CreatedAt.UnixNano())
		return err
	})
	if err != nil {
		return Project{}, err
	}
	return p, nil
}

const projectCols = `id, name, settings, created_at, repo_url, webhook_secret, repo_token, egress, repo_default_branch, registry_auth`

func scanProject(row interface{ Scan(...any) error }) (Project, error) {
	var p Project
	var settings, egress string
	var created int64
	if err := row.Scan(&p.ID, &p.Name, &settings, &created, &p.RepoURL, &p.WebhookSecret, &p.RepoToken, &egress, &p.RepoDefaultBranch, &p.RegistryAuth); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Project{}, ErrNotFound
		}
		return Project{}, err
	}
	if err := json.Unmarshal([]byte(settings), &p.Settings); err != nil {
		return Project{}, fmt.Errorf("project %s settings: %w", p.Name, err)
	}
	if err := json.Unmarshal([]byte(egress), &p.Egress); err != nil {
		return Project{}, fmt.Errorf("project %s egress: %w", p.Name, err)
	}
	p.CreatedAt = time.Unix(0, created).UTC()
	return p, nil
}

// GetProject returns the project with the given name.
func (s *Store) GetProject(ctx context.Context, name string) (Project, error) {
	p, err := scanProject(s.db.QueryRowContext(ctx, `SELECT `+projectCols+` FROM projects WHERE name = ?`, name))
	if errors.Is(err, ErrNotFound) {
		return Project{}, fmt.Errorf("project %q: %w", name, ErrNotFound)
	}
	return p, err
}

// GetProjectByID returns the project with the given id.
func (s *Store) GetProjectByID(ctx context.Context, id string) (Project, error) {
	return scanProject(s.db.QueryRowContext(ctx, `SELECT `+projectCols+` FROM projects WHERE id = ?`, id))
}

// ListProjects returns every project, by name.
func (s *Store) ListProjects(ctx context.Context) ([]Project, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+projectCols+` FROM projects ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Project
	for rows.Next() {
		p, err := scanProject(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// UpdateProjectSettings replaces a project's settings.
func (s *Store) UpdateProjectSettings(ctx context.Context, id string, st ProjectSettings) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE projects SET settings = ? WHERE id = ?`, string(b), id)
	if err != nil {
		return err
	}
	return oneRow(res)
}

const envCols = `id, project_id, name, coalesce(current_deployment_id, ''), branches, created_at`

func scanEnvironment(row interface{ Scan(...any) error }) (Environment, error) {
	var e Environment
	var created int64
	var branches string
	if err := row.Scan(&e.ID, &e.ProjectID, &e.Name, &e.CurrentDeploymentID, &branches, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Environment{}, ErrNotFound
		}
		return Environment{}, err
	}
	if err := json.Unmarshal([]byte(branches), &e.Branches); err != nil {
		return Environment{}, fmt.Errorf("environment %s branches: %w", e.Name, err)
	}
	e.CreatedAt = time.Unix(0, created).UTC()
	return e, nil
}

// GetEnvironment returns a project's environment by name.
func (s *Store) GetEnvironment(ctx context.Context, projectID, name string) (Environment, error) {
	e, err := scanEnvironment(s.db.QueryRowContext(ctx,
		`SELECT `+envCols+` FROM environments WHERE project_id = ? AND name = ?`, projectID, name))
	if errors.Is(err, ErrNotFound) {
		return Environment{}, fmt.Errorf("environment %q: %w", name, ErrNotFound)
	}
	return e, err
}

// GetEnvironmentByID returns an environment by id.
func (s *Store) GetEnvironmentByID(ctx context.Context, id string) (Environment, error) {
	return scanEnvironment(s.db.QueryRowContext(ctx, `SELECT `+envCols+` FROM environments WHERE id = ?`, id))
}

// ListEnvironments returns a project's environments, production first.
func (s *Store) ListEnvironments(ctx context.Context, projectID string) ([]Environment, error) {
	return s.queryEnvironments(ctx, `SELECT `+envCols+` FROM environments WHERE project_id = ?
		ORDER BY name <> 'production', name`, projectID)
}

// ListAllEnvironments returns the environments of every project, in one
// query.
func (s *Store) ListAllEnvironments(ctx context.Context) ([]Environment, error) {
	return s.queryEnvironments(ctx, `SELECT `+envCols+` FROM environments ORDER BY project_id, name`)
}

func (s *Store) queryEnvironments(ctx context.Context, q string, args ...any) ([]Environment, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Environment
	for rows.Next() {
		e, err := scanEnvironment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// SetCurrentDeployment makes deploymentID the current deployment of the
// environment.
func (s *Store) SetCurrentDeployment(ctx context.Context, envID, deploymentID string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE environments SET current_deployment_id = ? WHERE id = ?`, deploymentID, envID)
	if err != nil {
		return err
	}
	return oneRow(res)
}

func oneRow(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// SetProjectEgress replaces a project's egress policy.
func (s *Store) SetProjectEgress(ctx context.Context, id string, e Egress) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE projects SET egress = ? WHERE id = ?`, string(b), id)
	if err != nil {
		return err
	}
	return oneRow(res)
}

// SetProjectRegistryAuth replaces a project's sealed registry
// credentials (nil removes them).
func (s *Store) SetProjectRegistryAuth(ctx context.Context, id string, sealed []byte) error {
	res, err := s.db.ExecContext(ctx, `UPDATE projects SET registry_auth = ? WHERE id = ?`, sealed, id)
	if err != nil {
		return err
	}
	return oneRow(res)
}

// SetProjectRepo links a project to a repository with an (encrypted)
// webhook secret and clone token. Linking another repository (or none)
// forgets the default branch of the previous one.
func (s *Store) SetProjectRepo(ctx context.Context, id, repoURL string, secret, token []byte) error {
	res, err := s.db.ExecContext(ctx, `UPDATE projects SET repo_url = ?, webhook_secret = ?, repo_token = ?,
		repo_default_branch = CASE WHEN repo_url = ? THEN repo_default_branch ELSE '' END WHERE id = ?`, repoURL, secret, token, repoURL, id)
	if err != nil {
		return err
	}
	return oneRow(res)
}

// SetRepoDefaultBranch records the default branch of the repository
// linked to a project, if it is still repoURL (a link changed meanwhile
// keeps its own); it reports whether it was recorded.
func (s *Store) SetRepoDefaultBranch(ctx context.Context, id, repoURL, branch string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE projects SET repo_default_branch = ? WHERE id = ? AND repo_url = ? AND repo_url != ''`, branch, id, repoURL)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// CreateEnvironment adds an environment to a project. A branch deploys to
// one environment only: ErrConflict if another environment of the project
// already has one of branches (checked in the same transaction).
func (s *Store) CreateEnvironment(ctx context.Context, projectID, name string, branches []string) (Environment, error) {
	if branches == nil {
		branches = []string{}
	}
	b, _ := json.Marshal(branches)
	e := Environment{ID: NewID(), ProjectID: projectID, Name: name, Branches: branches, CreatedAt: now()}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := branchesFree(ctx, tx, projectID, "", branches); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO environments (id, project_id, name, branches, created_at) VALUES (?, ?, ?, ?, ?)`,
			e.ID, projectID, name, string(b), e.CreatedAt.UnixNano())
		if isUnique(err) {
			return fmt.Errorf("environment %q: %w", name, ErrExists)
		}
		return err
	})
	if err != nil {
		return Environment{}, err
	}
	return e, nil
}

// SetEnvironmentBranches replaces the branches mapped to an environment:
// ErrConflict if another environment of its project has one of them.
func (s *Store) SetEnvironmentBranches(ctx context.Context, envID string, branches []string) error {
	if branches == nil {
		branches = []string{}
	}
	b, _ := json.Marshal(branches)
	return s.tx(ctx, func(tx *sql.Tx) error {
		var projectID string
		if err := tx.QueryRowContext(ctx, `SELECT project_id FROM environments WHERE id = ?`, envID).Scan(&projectID); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		if err := branchesFree(ctx, tx, projectID, envID, branches); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE environments SET branches = ? WHERE id = ?`, string(b), envID)
		if err != nil {
			return err
		}
		return oneRow(res)
	})
}

// branchesFree refuses, with ErrConflict, branches that an environment of
// the project other than except already deploys.
func branchesFree(ctx context.Context, tx *sql.Tx, projectID, except string, branches []string) error {
	if len(branches) == 0 {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT name, branches FROM environments WHERE project_id = ? AND id <> ?`, projectID, except)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name, taken string
		if err := rows.Scan(&name, &taken); err != nil {
			return err
		}
		var list []string
		if err := json.Unmarshal([]byte(taken), &list); err != nil {
			return fmt.Errorf("environment %s branches: %w", name, err)
		}
		for _, t := range list {
			for _, b := range branches {
				if t == b {
					return fmt.Errorf("branch %s already deploys to environment %s: %w", b, name, ErrConflict)
				}
			}
		}
	}
	return rows.Err()
}

// DeleteEnvironment deletes an environment with its deployments, domains
// and variables.
func (s *Store) DeleteEnvironment(ctx context.Context, envID string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		// Where its deployments reported to GitHub (no foreign key).
		if _, err := tx.ExecContext(ctx, `DELETE FROM github_deployments WHERE deployment_id IN (SELECT id FROM deployments WHERE environment_id = ?)`, envID); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM environments WHERE id = ?`, envID)
		if err != nil {
			return err
		}
		return oneRow(res)
	})
}

// EnvironmentForBranch returns the project's environment that branch is
// mapped to, or ErrNotFound.
func (s *Store) EnvironmentForBranch(ctx context.Context, projectID, branch string) (Environment, error) {
	envs, err := s.ListEnvironments(ctx, projectID)
	if err != nil {
		return Environment{}, err
	}
	for _, e := range envs {
		for _, b := range e.Branches {
			if b == branch {
				return e, nil
			}
		}
	}
	return Environment{}, fmt.Errorf("branch %q is not mapped to an environment: %w", branch, ErrNotFound)
}

// Domain is a custom domain assigned to one environment.
type Domain struct {
	Name          string
	EnvironmentID string
	CreatedAt     time.Time
}

// AddDomain assigns a custom domain to an environment. A domain belongs to
// one environment only: ErrExists if it is taken.
func (s *Store) AddDomain(ctx context.Context, envID, name string) (Domain, error) {
	d := Domain{Name: name, EnvironmentID: envID, CreatedAt: now()}
	_, err := s.db.ExecContext(ctx, `INSERT INTO domains (name, environment_id, created_at) VALUES (?, ?, ?)`, name, envID, d.CreatedAt.UnixNano())
	if isUnique(err) {
		return Domain{}, fmt.Errorf("domain %q is already assigned: %w", name, ErrExists)
	}
	return d, err
}

// RemoveDomain removes a custom domain.
func (s *Store) RemoveDomain(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM domains WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if oneRow(res) != nil {
		return fmt.Errorf("domain %q: %w", name, ErrNotFound)
	}
	return nil
}

// ListDomains returns the custom domains of an environment, or of every
// environment when envID is empty.
func (s *Store) ListDomains(ctx context.Context, envID string) ([]Domain, error) {
	q := `SELECT name, environment_id, created_at FROM domains`
	var args []any
	if envID != "" {
		q += ` WHERE environment_id = ?`
		args = append(args, envID)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Domain
	for rows.Next() {
		var d Domain
		var created int64
		if err := rows.Scan(&d.Name, &d.EnvironmentID, &created); err != nil {
			return nil, err
		}
		d.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// EnvVar is an environment variable of an environment. Value is stored
// encrypted by the caller; Secret marks values never shown back in full.
type EnvVar struct {
	Name      string    `json:"name"`
	Value     []byte    `json:"value"` // sealed
	Secret    bool      `json:"secret,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// SetEnvVar creates or replaces a variable.
func (s *Store) SetEnvVar(ctx context.Context, envID string, v EnvVar) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO env_vars (environment_id, name, value, secret, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (environment_id, name) DO UPDATE SET value = excluded.value, secret = excluded.secret, updated_at = excluded.updated_at`,
		envID, v.Name, v.Value, v.Secret, now().UnixNano())
	return err
}

// DeleteEnvVar removes a variable.
func (s *Store) DeleteEnvVar(ctx context.Context, envID, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM env_vars WHERE environment_id = ? AND name = ?`, envID, name)
	if err != nil {
		return err
	}
	if oneRow(res) != nil {
		return fmt.Errorf("variable %q: %w", name, ErrNotFound)
	}
	return nil
}

// ListEnvVars returns an environment's variables by name.
func (s *Store) ListEnvVars(ctx context.Context, envID string) ([]EnvVar, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, value, secret, updated_at FROM env_vars WHERE environment_id = ? ORDER BY name`, envID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []EnvVar
	for rows.Next() {
		var v EnvVar
		var updated int64
		if err := rows.Scan(&v.Name, &v.Value, &v.Secret, &updated); err != nil {
			return nil, err
		}
		v.UpdatedAt = time.Unix(0, updated).UTC()
		out = append(out, v)
	}
	return out, rows.Err()
}

// ForgetDelivery removes a recorded delivery, so a redelivery is processed.
func (s *Store) ForgetDelivery(ctx context.Context, id string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE id = ?`, id)
	return err
}

// RecordDelivery records a webhook delivery id and reports whether it had
// been seen before (a replay).
func (s *Store) RecordDelivery(ctx context.Context, id, projectID string) (seen bool, err error) {
	res, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO webhook_deliveries (id, project_id, received_at) VALUES (?, ?, ?)`,
		id, projectID, now().UnixNano())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 0, err
}

// HasDomain reports whether name is a custom domain of some environment.
func (s *Store) HasDomain(ctx context.Context, name string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM domains WHERE name = ?`, name).Scan(&n)
	return n > 0, err
}

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
}

// ProjectSettings are per-project knobs. A zero field means "the server's
// default".
type ProjectSettings struct {
	StartCommand   string `json:"startCommand,omitempty"`
	Dockerfile     string `json:"dockerfilePath,omitempty"`
	DeployWindow   string `json:"deployWindow,omitempty"`   // Go duration
	IdleTimeout    string `json:"idleTimeout,omitempty"`    // Go duration; "0" = never
	MemoryBytes    int64  `json:"memoryBytes,omitempty"`    //
	CPUMillis      int64  `json:"cpuMillis,omitempty"`      //
	Pids           int64  `json:"pids,omitempty"`           //
	HealthPath     string `json:"healthPath,omitempty"`     // If empty, "/".
	HealthPort     int    `json:"healthPort,omitempty"`     // If zero, 3000.
	HealthInterval string `json:"healthInterval,omitempty"` // If empty, 15s.
	HealthTimeout  string `json:"healthTimeout,omitempty"`  // If empty, 5s.
	HealthFailures int    `json:"healthFailures,omitempty"` // If zero, 3.
}

// Environment is a deployment target of a project (production first).
type Environment struct {
	ID                  string
	ProjectID           string
	Name                string
	CurrentDeploymentID string
	CreatedAt           time.Time
}

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
		_, err := tx.ExecContext(ctx, `INSERT INTO environments (id, project_id, name, created_at) VALUES (?, ?, ?, ?)`,
			NewID(), p.ID, ProductionEnvironment, p.CreatedAt.UnixNano())
		return err
	})
	if err != nil {
		return Project{}, err
	}
	return p, nil
}

const projectCols = `id, name, settings, created_at`

func scanProject(row interface{ Scan(...any) error }) (Project, error) {
	var p Project
	var settings string
	var created int64
	if err := row.Scan(&p.ID, &p.Name, &settings, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Project{}, ErrNotFound
		}
		return Project{}, err
	}
	if err := json.Unmarshal([]byte(settings), &p.Settings); err != nil {
		return Project{}, fmt.Errorf("project %s settings: %w", p.Name, err)
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

const envCols = `id, project_id, name, coalesce(current_deployment_id, ''), created_at`

func scanEnvironment(row interface{ Scan(...any) error }) (Environment, error) {
	var e Environment
	var created int64
	if err := row.Scan(&e.ID, &e.ProjectID, &e.Name, &e.CurrentDeploymentID, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Environment{}, ErrNotFound
		}
		return Environment{}, err
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
	rows, err := s.db.QueryContext(ctx, `SELECT `+envCols+` FROM environments WHERE project_id = ?
		ORDER BY name <> 'production', name`, projectID)
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

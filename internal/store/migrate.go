package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order, each once, inside a transaction. Append
// new ones; never edit one that has shipped.
var migrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE projects (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	settings   TEXT NOT NULL DEFAULT '{}',
	created_at INTEGER NOT NULL
);
CREATE TABLE environments (
	id                    TEXT PRIMARY KEY,
	project_id            TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	name                  TEXT NOT NULL,
	current_deployment_id TEXT,
	created_at            INTEGER NOT NULL,
	UNIQUE (project_id, name)
);
CREATE TABLE deployments (
	id                     TEXT PRIMARY KEY,
	project_id             TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	environment_id         TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
	status                 TEXT NOT NULL,
	trigger                TEXT NOT NULL,
	promote                INTEGER NOT NULL DEFAULT 1,
	branch                 TEXT NOT NULL DEFAULT '',
	commit_sha             TEXT NOT NULL DEFAULT '',
	commit_message         TEXT NOT NULL DEFAULT '',
	commit_author          TEXT NOT NULL DEFAULT '',
	start_command          TEXT NOT NULL DEFAULT '',
	detected_start_command TEXT NOT NULL DEFAULT '',
	builder                TEXT NOT NULL DEFAULT '',
	image                  TEXT NOT NULL DEFAULT '',
	image_digest           TEXT NOT NULL DEFAULT '',
	failure_reason         TEXT NOT NULL DEFAULT '',
	attempts               INTEGER NOT NULL DEFAULT 0,
	created_at             INTEGER NOT NULL,
	updated_at             INTEGER NOT NULL,
	initializing_at        INTEGER,
	building_at            INTEGER,
	deploying_at           INTEGER,
	finished_at            INTEGER,
	init_ended_at          INTEGER,
	build_ended_at         INTEGER,
	deploy_ended_at        INTEGER
);
CREATE INDEX deployments_project ON deployments (project_id, created_at DESC);
CREATE INDEX deployments_status ON deployments (status);
CREATE TABLE instances (
	id            TEXT PRIMARY KEY,
	deployment_id TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
	driver        TEXT NOT NULL,
	state         BLOB,
	status        TEXT NOT NULL,
	stdout_path   TEXT NOT NULL DEFAULT '',
	stderr_path   TEXT NOT NULL DEFAULT '',
	stdout_offset INTEGER NOT NULL DEFAULT 0,
	stderr_offset INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL,
	stopped_at    INTEGER
);
CREATE INDEX instances_deployment ON instances (deployment_id);
CREATE TABLE log_lines (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment_id TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
	kind          TEXT NOT NULL,
	instance_id   TEXT NOT NULL DEFAULT '',
	stream        TEXT NOT NULL DEFAULT '',
	ts            INTEGER NOT NULL,
	text          TEXT NOT NULL
);
CREATE INDEX log_lines_deployment ON log_lines (deployment_id, kind, id);
CREATE TABLE api_tokens (
	id           TEXT PRIMARY KEY,
	name         TEXT NOT NULL,
	hash         TEXT NOT NULL UNIQUE,
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER
);
`,
	// 2: environments gain branches; custom domains, environment variables,
	// repository links and webhook deliveries; wake timings.
	`
ALTER TABLE environments ADD COLUMN branches TEXT NOT NULL DEFAULT '[]';
ALTER TABLE projects ADD COLUMN repo_url TEXT NOT NULL DEFAULT '';
ALTER TABLE projects ADD COLUMN webhook_secret BLOB;
CREATE TABLE domains (
	name           TEXT PRIMARY KEY,
	environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
	created_at     INTEGER NOT NULL
);
CREATE TABLE env_vars (
	environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
	name           TEXT NOT NULL,
	value          BLOB NOT NULL,
	secret         INTEGER NOT NULL DEFAULT 0,
	updated_at     INTEGER NOT NULL,
	PRIMARY KEY (environment_id, name)
);
CREATE TABLE webhook_deliveries (
	id          TEXT PRIMARY KEY,
	project_id  TEXT NOT NULL,
	received_at INTEGER NOT NULL
);
CREATE TABLE wakes (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment_id TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
	started_at    INTEGER NOT NULL,
	duration_ns   INTEGER NOT NULL,
	ok            INTEGER NOT NULL
);
CREATE INDEX wakes_deployment ON wakes (deployment_id, id);
`,
	// 3: deployments fetched from a git repository at INITIALIZING, and the
	// credentials to clone a project's repository.
	`
ALTER TABLE deployments ADD COLUMN source_url TEXT NOT NULL DEFAULT '';
ALTER TABLE projects ADD COLUMN repo_token BLOB;
`,
	// 4: the build plan each deployment was built with.
	`
ALTER TABLE deployments ADD COLUMN plan TEXT NOT NULL DEFAULT '';
`,
	// 5: indexes for the queries a starting server and the retention policy
	// run: every deployment by age, an environment's deployments by age, a
	// deployment's instances by age (its newest one), the instances still
	// live, an environment's domains.
	`
CREATE INDEX deployments_created ON deployments (created_at, id);
CREATE INDEX deployments_environment ON deployments (environment_id, created_at DESC);
DROP INDEX instances_deployment;
CREATE INDEX instances_deployment ON instances (deployment_id, created_at);
CREATE INDEX instances_live ON instances (status) WHERE status IN ('starting', 'running');
CREATE INDEX domains_environment ON domains (environment_id);
`,
	// 6: a project's egress policy (network policy applies at once, to
	// running deployments too, so it is not a captured setting).
	`ALTER TABLE projects ADD COLUMN egress TEXT NOT NULL DEFAULT '{}';`,
	// 7: an uploaded source with uncommitted changes (dirty), and the
	// default branch of a project's linked repository (production follows
	// it).
	`
ALTER TABLE deployments ADD COLUMN dirty INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN repo_default_branch TEXT NOT NULL DEFAULT '';
`,
	// 8: what a deployment captures from its project when it is created
	// (settings and sealed variables, JSON; '' for deployments made before:
	// they follow their project's current settings), and each instance's
	// health: its state, consecutive failed checks, and the last probe.
	`
ALTER TABLE deployments ADD COLUMN captured TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN health TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN health_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN probed_at INTEGER;
ALTER TABLE instances ADD COLUMN probe_result TEXT NOT NULL DEFAULT '';
`,
	// 9: how an instance's process ended, when the server saw it end.
	`
ALTER TABLE instances ADD COLUMN exit_code INTEGER;
ALTER TABLE instances ADD COLUMN oom_killed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN exited_at INTEGER;
`,
	// 10: a deployment of a prebuilt image (the reference it was asked
	// for; '' for a source), and a project's sealed credentials for
	// pulling images from other registries (JSON, sealed; NULL if none).
	`
ALTER TABLE deployments ADD COLUMN source_image TEXT NOT NULL DEFAULT '';
ALTER TABLE projects ADD COLUMN registry_auth BLOB;
`,
	// 11: the metrics history (package history): one row per series (a
	// deployment, or a project's total with deployment_id ''), resolution
	// (step, seconds) and interval start (at, Unix seconds). Latency holds
	// the request-duration histogram's bucket counts as uvarints.
	`
CREATE TABLE metric_points (
	project_id    TEXT NOT NULL,
	deployment_id TEXT NOT NULL,
	step          INTEGER NOT NULL,
	at            INTEGER NOT NULL,
	requests      INTEGER NOT NULL DEFAULT 0,
	errors_4xx    INTEGER NOT NULL DEFAULT 0,
	errors_5xx    INTEGER NOT NULL DEFAULT 0,
	latency       BLOB,
	cpu_us        INTEGER NOT NULL DEFAULT 0,
	memory_max    INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (project_id, deployment_id, step, at)
) WITHOUT ROWID;
CREATE INDEX metric_points_age ON metric_points (step, at);
`,
	// 12: GitHub feedback: where a deployment reports its status (the
	// repository, commit and status context; recorded before the
	// deployment exists, so no foreign key), the outbox of requests to
	// GitHub (statuses and comments, sent in order per key with retries,
	// kept across restarts), and the pull requests that have previews
	// with the id of the one comment Slipway keeps up to date on each.
	`
CREATE TABLE github_deployments (
	deployment_id TEXT PRIMARY KEY,
	repository    TEXT NOT NULL,
	sha           TEXT NOT NULL,
	context       TEXT NOT NULL,
	pull_request  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE github_outbox (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	key        TEXT NOT NULL,
	kind       TEXT NOT NULL,
	body       TEXT NOT NULL,
	attempts   INTEGER NOT NULL DEFAULT 0,
	next_at    INTEGER NOT NULL,
	last_error TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL
);
CREATE INDEX github_outbox_key ON github_outbox (key, id);
CREATE INDEX github_outbox_due ON github_outbox (next_at);
CREATE TABLE pull_requests (
	project_id      TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	number          INTEGER NOT NULL,
	repository      TEXT NOT NULL,
	head_repository TEXT NOT NULL,
	head_sha        TEXT NOT NULL,
	fork            INTEGER NOT NULL DEFAULT 0,
	state           TEXT NOT NULL,
	comment_id      INTEGER NOT NULL DEFAULT 0,
	updated_at      INTEGER NOT NULL,
	PRIMARY KEY (project_id, number)
);
`,
	// 13: a project's outgoing webhooks (their URL and signing secret
	// sealed, with a hint of the URL in clear), each webhook's deliveries
	// (pending ones are the retry queue), and a project's log drains.
	`
CREATE TABLE notify_hooks (
	id         TEXT PRIMARY KEY,
	project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	url        BLOB NOT NULL,
	url_hint   TEXT NOT NULL,
	secret     BLOB NOT NULL,
	format     TEXT NOT NULL,
	events     TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX notify_hooks_project ON notify_hooks (project_id, created_at);
CREATE TABLE notify_deliveries (
	id              TEXT PRIMARY KEY,
	hook_id         TEXT NOT NULL REFERENCES notify_hooks(id) ON DELETE CASCADE,
	event           TEXT NOT NULL,
	body            BLOB NOT NULL,
	state           TEXT NOT NULL,
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at INTEGER NOT NULL,
	last_status     INTEGER NOT NULL DEFAULT 0,
	last_error      TEXT NOT NULL DEFAULT '',
	created_at      INTEGER NOT NULL,
	updated_at      INTEGER NOT NULL
);
CREATE INDEX notify_deliveries_hook ON notify_deliveries (hook_id, created_at);
CREATE INDEX notify_deliveries_pending ON notify_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE TABLE log_drains (
	id         TEXT PRIMARY KEY,
	project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
	url        BLOB NOT NULL,
	url_hint   TEXT NOT NULL,
	ca         TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL
);
CREATE INDEX log_drains_project ON log_drains (project_id, created_at);
`,
	// 14: whether a wake started a sandbox prepared ahead.
	`
ALTER TABLE wakes ADD COLUMN prepared INTEGER NOT NULL DEFAULT 0;
`,
	// 15: whether a wake resumed the deployment's snapshot.
	`
ALTER TABLE wakes ADD COLUMN restored INTEGER NOT NULL DEFAULT 0;
`,
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL)`); err != nil {
		return err
	}
	for i, m := range migrations {
		version := i + 1
		err := s.tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, version, now().UnixNano())
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d: %w", version, err)
		}
	}
	return nil
}

// SchemaVersion reports the highest applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v)
	return int(v.Int64), err
}

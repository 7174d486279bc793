package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBatchQueries checks the queries a starting server reconciles with:
// every deployment oldest first, every environment, and the newest
// instance of each deployment in the statuses asked for.
func TestBatchQueries(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	t0 := time.Now().Add(-time.Hour).UTC()
	var ids []string
	var envIDs []string
	for _, name := range []string{"web", "api"} {
		p, err := s.CreateProject(ctx, Project{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		staging, err := s.CreateEnvironment(ctx, p.ID, "staging", nil)
		if err != nil {
			t.Fatal(err)
		}
		prod, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
		envIDs = append(envIDs, prod.ID, staging.ID)
		for i, st := range []string{"RUNNING", "STOPPED", "RUNNING"} {
			t0 = t0.Add(time.Second)
			d, err := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: prod.ID, Status: st, Trigger: "upload",
				CommitMessage: name + string(rune('0'+i)), CreatedAt: t0})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, d.ID)
		}
	}
	// A deployment created at the same instant as another sorts by id.
	all, err := s.ListAllDeployments(ctx)
	if err != nil || len(all) != len(ids) {
		t.Fatalf("all deployments: %d, %v", len(all), err)
	}
	for i, d := range all {
		if d.ID != ids[i] {
			t.Fatalf("deployment %d is %s (%s), want %s: not oldest first", i, d.ID, d.CommitMessage, ids[i])
		}
		if d.ProjectName == "" || d.EnvironmentName != ProductionEnvironment {
			t.Fatalf("deployment %d: project %q environment %q", i, d.ProjectName, d.EnvironmentName)
		}
	}

	envs, err := s.ListAllEnvironments(ctx)
	if err != nil || len(envs) != 4 {
		t.Fatalf("all environments: %+v, %v", envs, err)
	}
	got := map[string]bool{}
	for _, e := range envs {
		got[e.ID] = true
	}
	for _, id := range envIDs {
		if !got[id] {
			t.Errorf("environment %s missing", id)
		}
	}

	// Instances: ids[0] has three (the newest idle), ids[1] (STOPPED) one,
	// ids[2] none; two made at the same instant resolve to the later row.
	at := t0.Add(time.Minute)
	mk := func(dep, status string, at time.Time) Instance {
		in, err := s.CreateInstance(ctx, Instance{DeploymentID: dep, Driver: "fake", Status: status, CreatedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	mk(ids[0], "stopped", at)
	mk(ids[0], "stopped", at.Add(time.Second))
	newest := mk(ids[0], "idle", at.Add(time.Second))
	mk(ids[1], "running", at)
	latest, err := s.LatestInstances(ctx, "RUNNING", "DEPLOYING")
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 1 || latest[ids[0]].ID != newest.ID || latest[ids[0]].Status != "idle" {
		t.Fatalf("latest instances = %+v, want only %s's newest (%s)", latest, ids[0], newest.ID)
	}
	if latest, err := s.LatestInstances(ctx, "STOPPED"); err != nil || latest[ids[1]].Status != "running" {
		t.Fatalf("latest of STOPPED deployments = %+v, %v", latest, err)
	}
	if latest, err := s.LatestInstances(ctx); err != nil || len(latest) != 0 {
		t.Fatalf("latest of no status = %+v, %v", latest, err)
	}
	live, err := s.ListLiveInstances(ctx)
	if err != nil || len(live) != 1 || live[0].DeploymentID != ids[1] {
		t.Fatalf("live instances = %+v, %v", live, err)
	}
}

// TestReconcileQueriesUseIndexes pins the query plans of the lookups that
// run per environment or per deployment: none scans a whole table.
func TestReconcileQueriesUseIndexes(t *testing.T) {
	s := open(t)
	for _, q := range []string{
		`SELECT id FROM instances WHERE status IN ('starting', 'running') ORDER BY created_at`,
		`SELECT id FROM instances WHERE deployment_id = 'x' ORDER BY created_at`,
		`SELECT id FROM instances i WHERE i.deployment_id = 'x' ORDER BY i.created_at DESC, i.rowid DESC LIMIT 1`,
		`SELECT name FROM domains WHERE environment_id = 'x' ORDER BY name`,
		`SELECT d.id, p.name, e.name FROM deployments d JOIN projects p ON p.id = d.project_id JOIN environments e ON e.id = d.environment_id ORDER BY d.created_at, d.id`,
		`SELECT d.id, p.name, e.name FROM deployments d JOIN projects p ON p.id = d.project_id JOIN environments e ON e.id = d.environment_id ORDER BY d.created_at DESC, d.id DESC LIMIT 50`,
		`SELECT d.id FROM deployments d WHERE d.project_id = 'x' ORDER BY d.created_at DESC, d.id DESC LIMIT 50`,
		`SELECT d.id FROM deployments d WHERE d.environment_id = 'x' AND d.status IN ('RUNNING') ORDER BY d.created_at DESC, d.id DESC LIMIT 500`,
	} {
		rows, err := s.db.Query(`EXPLAIN QUERY PLAN ` + q)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		t.Logf("%s: %q", q, plan)
		for _, p := range plan {
			if strings.HasPrefix(p, "SCAN ") && !strings.Contains(p, "USING") {
				t.Errorf("%s\n  scans a table: %q", q, plan)
			}
		}
	}
}

// TestIndexMigrationUpgradesData applies migration 5 to a database that
// has rows under schema 4.
func TestIndexMigrationUpgradesData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "slipway.db")
	all := migrations
	migrations = all[:4]
	s, err := Open(path)
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.CreateProject(ctx, Project{Name: "web"})
	env, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
	// Rows as the code of that schema wrote them.
	d, in := Deployment{ID: NewID()}, Instance{ID: NewID()}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO deployments (id, project_id, environment_id, status, trigger, created_at, updated_at)
		VALUES (?, ?, ?, 'RUNNING', 'upload', 1, 1)`, d.ID, p.ID, env.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO instances (id, deployment_id, driver, status, created_at)
		VALUES (?, ?, 'fake', 'idle', 2)`, in.ID, d.ID); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(ctx); v != len(migrations) {
		t.Fatalf("schema version %d, want %d", v, len(migrations))
	}
	latest, err := s.LatestInstances(ctx, "RUNNING")
	if err != nil || latest[d.ID].ID != in.ID {
		t.Fatalf("latest instances after the upgrade: %+v, %v", latest, err)
	}
	// A deployment made before deployments captured their settings has
	// none: it follows its project's.
	if got, err := s.GetDeployment(ctx, d.ID); err != nil || got.Captured != nil {
		t.Fatalf("old deployment after the upgrade: captured %+v, %v", got.Captured, err)
	}
	if got := latest[d.ID].Health; got.State != "" || !got.ProbedAt.IsZero() {
		t.Errorf("old instance's health after the upgrade: %+v", got)
	}
}

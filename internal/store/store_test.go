package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMigrationsAreIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slipway.db")
	for i := 0; i < 2; i++ {
		s, err := Open(path)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		v, err := s.SchemaVersion(context.Background())
		if err != nil || v != len(migrations) {
			t.Fatalf("schema version = %d, %v; want %d", v, err, len(migrations))
		}
		s.Close()
	}
}

func TestProjectGetsProductionEnvironment(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	p, err := s.CreateProject(ctx, Project{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateProject(ctx, Project{Name: "web"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate project: err = %v, want ErrExists", err)
	}
	envs, err := s.ListEnvironments(ctx, p.ID)
	if err != nil || len(envs) != 1 || envs[0].Name != ProductionEnvironment {
		t.Fatalf("environments = %+v, %v", envs, err)
	}
	if _, err := s.GetProject(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown project: err = %v", err)
	}
}

func TestUpdateDeploymentChecksStatus(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	p, _ := s.CreateProject(ctx, Project{Name: "web"})
	env, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
	d, err := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: env.ID, Status: "PENDING", Trigger: "upload",
		CommitMessage: "fix: things\n\nbody", Branch: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.ID) != 12 || d.ProjectName != "web" || d.EnvironmentName != "production" {
		t.Fatalf("created %+v", d)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	st := "INITIALIZING"
	d, err = s.UpdateDeployment(ctx, d.ID, "PENDING", DeploymentPatch{Status: &st, InitializingAt: &at})
	if err != nil || d.Status != st || !d.InitializingAt.Equal(at) {
		t.Fatalf("update: %+v, %v", d, err)
	}
	_, err = s.UpdateDeployment(ctx, d.ID, "PENDING", DeploymentPatch{Status: &st})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: err = %v, want ErrConflict", err)
	}
	list, err := s.ListDeployments(ctx, DeploymentFilter{ProjectID: p.ID, Statuses: []string{"INITIALIZING"}})
	if err != nil || len(list) != 1 || list[0].CommitMessage != "fix: things\n\nbody" {
		t.Fatalf("list = %+v, %v", list, err)
	}
}

func TestLogCursors(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	p, _ := s.CreateProject(ctx, Project{Name: "web"})
	env, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
	d, _ := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: env.ID, Status: "PENDING", Trigger: "upload"})
	var lines []LogLine
	for i := 0; i < 10; i++ {
		lines = append(lines, LogLine{DeploymentID: d.ID, Kind: LogRuntime, Stream: "stdout", Time: time.Now(), Text: string(rune('a' + i))})
	}
	if err := s.AppendLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	page1, _ := s.ListLogs(ctx, LogQuery{DeploymentID: d.ID, Kind: LogRuntime, Desc: true, Limit: 4})
	if len(page1) != 4 || page1[0].Text != "j" || page1[3].Text != "g" {
		t.Fatalf("page1 = %+v", page1)
	}
	page2, _ := s.ListLogs(ctx, LogQuery{DeploymentID: d.ID, Kind: LogRuntime, Desc: true, Limit: 4, Before: page1[3].ID})
	if len(page2) != 4 || page2[0].Text != "f" {
		t.Fatalf("page2 = %+v", page2)
	}
	after, _ := s.ListLogs(ctx, LogQuery{DeploymentID: d.ID, Kind: LogRuntime, After: lines[7].ID})
	if len(after) != 2 || after[0].Text != "i" {
		t.Fatalf("after = %+v", after)
	}
	build, _ := s.ListLogs(ctx, LogQuery{DeploymentID: d.ID, Kind: LogBuild})
	if len(build) != 0 {
		t.Fatalf("build logs = %+v", build)
	}
}

func TestTokensAreHashed(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	if _, err := s.CreateToken(ctx, "admin", "sw_secret"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckToken(ctx, "sw_secret"); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	if _, err := s.CheckToken(ctx, "sw_other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("invalid token: %v", err)
	}
	var n int
	s.db.QueryRow(`SELECT count(*) FROM api_tokens WHERE hash = 'sw_secret'`).Scan(&n)
	if n != 0 {
		t.Fatal("token stored in clear")
	}
}

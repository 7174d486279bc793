package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLastExit(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	p, _ := s.CreateProject(ctx, Project{Name: "web"})
	env, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
	d, _ := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: env.ID, Status: "PENDING", Trigger: "upload"})
	if _, err := s.LastExit(ctx, d.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LastExit with no instance = %v, want ErrNotFound", err)
	}
	first, _ := s.CreateInstance(ctx, Instance{DeploymentID: d.ID, Driver: "runc", Status: "running"})
	second, _ := s.CreateInstance(ctx, Instance{DeploymentID: d.ID, Driver: "runc", Status: "running", CreatedAt: first.CreatedAt.Add(time.Second)})
	at := time.Now().UTC().Truncate(time.Microsecond)
	if err := s.SetInstanceExit(ctx, first.ID, 137, true, at); err != nil {
		t.Fatal(err)
	}
	e, err := s.LastExit(ctx, d.ID)
	if err != nil || e != (Exit{InstanceID: first.ID, Code: 137, OOMKilled: true, At: at}) {
		t.Errorf("LastExit = %+v, %v", e, err)
	}
	if err := s.SetInstanceExit(ctx, second.ID, 3, false, at); err != nil {
		t.Fatal(err)
	}
	if e, err := s.LastExit(ctx, d.ID); err != nil || e.InstanceID != second.ID || e.Code != 3 || e.OOMKilled {
		t.Errorf("LastExit after the newer instance exited = %+v, %v", e, err)
	}
}

// TestCommitsAreSynced checks that state is committed with
// synchronous=FULL (synced to disk before a method returns), also on a
// connection that has just appended log lines (which are not).
func TestCommitsAreSynced(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	p, _ := s.CreateProject(ctx, Project{Name: "web"})
	env, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
	d, _ := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: env.ID, Status: "PENDING", Trigger: "upload"})
	if err := s.AppendLogs(ctx, []LogLine{{DeploymentID: d.ID, Kind: LogBuild, Time: time.Now(), Text: "x"}}); err != nil {
		t.Fatal(err)
	}
	s.db.SetMaxOpenConns(1) // the connection the logs used, next
	var mode int
	if err := s.db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != 2 {
		t.Errorf("PRAGMA synchronous = %d, want 2 (FULL)", mode)
	}
}

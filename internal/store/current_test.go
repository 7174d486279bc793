package store

import (
	"context"
	"testing"
	"time"
)

func TestPromoteIfNewerNeverGoesBack(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	p, _ := s.CreateProject(ctx, Project{Name: "web"})
	env, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
	at := time.Now().UTC()
	mk := func(offset time.Duration, status string) Deployment {
		d, err := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: env.ID, Status: status, Trigger: "push", CreatedAt: at.Add(offset)})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	older, newer := mk(0, "DEPLOYING"), mk(time.Second, "DEPLOYING")
	sameTime := mk(time.Second, "DEPLOYING") // created in the same nanosecond, inserted after
	holding := []string{"DEPLOYING", "RUNNING"}
	promote := func(d Deployment, want string) {
		t.Helper()
		cur, err := s.PromoteIfNewer(ctx, d.ID, holding...)
		if err != nil || cur != want {
			t.Fatalf("promote %s: current %s, %v; want %s", d.ID, cur, err, want)
		}
		if e, _ := s.GetEnvironmentByID(ctx, env.ID); e.CurrentDeploymentID != want {
			t.Fatalf("stored current %s, want %s", e.CurrentDeploymentID, want)
		}
	}
	promote(newer, newer.ID)
	promote(older, newer.ID) // finishes later, stays out
	promote(sameTime, sameTime.ID)
	promote(newer, sameTime.ID)

	// A newer current deployment that no longer serves does not hold.
	st := "STOPPED"
	s.UpdateDeployment(ctx, sameTime.ID, "", DeploymentPatch{Status: &st})
	promote(older, older.ID)
}

func TestFallBackPicksNewestServing(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	p, _ := s.CreateProject(ctx, Project{Name: "web"})
	env, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
	at := time.Now().UTC()
	var ids []string
	for i, st := range []string{"RUNNING", "RUNNING", "FAILED", "STOPPED"} {
		d, _ := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: env.ID, Status: st, Trigger: "push", CreatedAt: at.Add(time.Duration(i) * time.Second)})
		ids = append(ids, d.ID)
	}
	s.SetCurrentDeployment(ctx, env.ID, ids[3])
	if next, err := s.FallBack(ctx, env.ID, ids[0], "RUNNING"); err != nil || next != "" {
		t.Fatalf("fall back from a deployment that is not current: %q, %v", next, err)
	}
	next, err := s.FallBack(ctx, env.ID, ids[3], "RUNNING")
	if err != nil || next != ids[1] {
		t.Fatalf("fell back to %q, %v; want the newest RUNNING %s", next, err, ids[1])
	}
	if e, _ := s.GetEnvironmentByID(ctx, env.ID); e.CurrentDeploymentID != ids[1] {
		t.Errorf("stored current %s", e.CurrentDeploymentID)
	}
	st := "STOPPED"
	for _, id := range ids[:2] {
		s.UpdateDeployment(ctx, id, "", DeploymentPatch{Status: &st})
	}
	if next, err := s.FallBack(ctx, env.ID, ids[1], "RUNNING"); err != nil || next != "" {
		t.Fatalf("nothing to fall back to: %q, %v", next, err)
	}
	if e, _ := s.GetEnvironmentByID(ctx, env.ID); e.CurrentDeploymentID != ids[1] {
		t.Errorf("with nothing to fall back to, current became %q", e.CurrentDeploymentID)
	}
}

func TestCapturedAndHealthRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	p, _ := s.CreateProject(ctx, Project{Name: "web"})
	env, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
	c := &Captured{Settings: ProjectSettings{MemoryBytes: 64 << 20, HealthInterval: "20ms"},
		Vars: []EnvVar{{Name: "A", Value: []byte{1, 2, 3}, Secret: true}}}
	d, err := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: env.ID, Status: "PENDING", Trigger: "upload", Captured: c})
	if err != nil {
		t.Fatal(err)
	}
	if d.Captured == nil || d.Captured.Settings != c.Settings || len(d.Captured.Vars) != 1 ||
		string(d.Captured.Vars[0].Value) != "\x01\x02\x03" || !d.Captured.Vars[0].Secret {
		t.Fatalf("captured read back: %+v", d.Captured)
	}
	in, _ := s.CreateInstance(ctx, Instance{DeploymentID: d.ID, Driver: "fake", Status: "running", Health: InstanceHealth{State: "starting"}})
	at := time.Now().UTC().Truncate(time.Microsecond)
	h := InstanceHealth{State: "unhealthy", Failures: 3, ProbedAt: at, Result: "timeout"}
	if err := s.SetInstanceHealth(ctx, in.ID, h); err != nil {
		t.Fatal(err)
	}
	insts, _ := s.ListInstances(ctx, d.ID)
	if len(insts) != 1 || insts[0].Health != h {
		t.Errorf("instance health read back: %+v", insts)
	}
}

// Deployments finishing at the same moment, in any order: the newest
// ends up current, whichever transaction runs last.
func TestPromoteIfNewerConcurrent(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	p, _ := s.CreateProject(ctx, Project{Name: "web"})
	env, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
	at := time.Now().UTC()
	var ids []string
	for i := 0; i < 8; i++ {
		d, _ := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: env.ID, Status: "DEPLOYING", Trigger: "push", CreatedAt: at.Add(time.Duration(i) * time.Millisecond)})
		ids = append(ids, d.ID)
	}
	errs := make(chan error, len(ids))
	for i := len(ids) - 1; i >= 0; i-- { // the newest tends to start first
		go func(id string) {
			_, err := s.PromoteIfNewer(ctx, id, "DEPLOYING", "RUNNING")
			errs <- err
		}(ids[i])
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if e, _ := s.GetEnvironmentByID(ctx, env.ID); e.CurrentDeploymentID != ids[len(ids)-1] {
		t.Errorf("current %s after concurrent promotions, want the newest %s", e.CurrentDeploymentID, ids[len(ids)-1])
	}
}

package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func newDeployment(t *testing.T, s *Store, project string) Deployment {
	t.Helper()
	ctx := context.Background()
	p, err := s.CreateProject(ctx, Project{Name: project})
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: env.ID, Status: "RUNNING", Trigger: "upload"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func runtimeLines(id string, n int, prefix string) []LogLine {
	lines := make([]LogLine, n)
	for i := range lines {
		lines[i] = LogLine{DeploymentID: id, Kind: LogRuntime, Stream: "stdout", Time: time.Now(), Text: fmt.Sprintf("%s%d", prefix, i)}
	}
	return lines
}

// TestAppendLogsInBatches: more lines than one transaction takes are all
// stored, in order, with growing ids.
func TestAppendLogsInBatches(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	d := newDeployment(t, s, "web")
	n := 2*MaxLogBatch + 7
	lines := runtimeLines(d.ID, n, "l")
	if err := s.AppendLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		if lines[i].ID <= lines[i-1].ID {
			t.Fatalf("line %d has id %d after %d", i, lines[i].ID, lines[i-1].ID)
		}
	}
	got, err := s.ListLogs(ctx, LogQuery{DeploymentID: d.ID, Kind: LogRuntime, Limit: 10 * n})
	if err != nil || len(got) != n {
		t.Fatalf("stored %d lines (%v), want %d", len(got), err, n)
	}
	for i, l := range got {
		if l.Text != fmt.Sprintf("l%d", i) || l.ID != lines[i].ID {
			t.Fatalf("line %d: %+v", i, l)
		}
	}
}

// TestTrimLogs keeps a deployment's newest lines of one kind and leaves
// other kinds and other deployments alone.
func TestTrimLogs(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	d := newDeployment(t, s, "web")
	other := newDeployment(t, s, "api")
	n := 3*MaxLogBatch + 11
	if err := s.AppendLogs(ctx, runtimeLines(d.ID, n, "d")); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLogs(ctx, runtimeLines(other.ID, 50, "o")); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLogs(ctx, []LogLine{{DeploymentID: d.ID, Kind: LogBuild, Time: time.Now(), Text: "built"}}); err != nil {
		t.Fatal(err)
	}
	const keep = 100
	deleted, err := s.TrimLogs(ctx, d.ID, LogRuntime, keep)
	if err != nil || deleted != n-keep {
		t.Fatalf("trim deleted %d (%v), want %d", deleted, err, n-keep)
	}
	got, _ := s.ListLogs(ctx, LogQuery{DeploymentID: d.ID, Kind: LogRuntime, Limit: 10 * n})
	if len(got) != keep || got[0].Text != fmt.Sprintf("d%d", n-keep) || got[keep-1].Text != fmt.Sprintf("d%d", n-1) {
		t.Fatalf("kept %d lines, from %q to %q", len(got), got[0].Text, got[len(got)-1].Text)
	}
	if o, _ := s.ListLogs(ctx, LogQuery{DeploymentID: other.ID, Kind: LogRuntime}); len(o) != 50 {
		t.Errorf("another deployment's log lost lines: %d left", len(o))
	}
	if b, _ := s.ListLogs(ctx, LogQuery{DeploymentID: d.ID, Kind: LogBuild}); len(b) != 1 {
		t.Errorf("the build log lost lines: %d left", len(b))
	}
	// Nothing beyond keep: nothing to delete.
	if deleted, err := s.TrimLogs(ctx, d.ID, LogRuntime, keep); err != nil || deleted != 0 {
		t.Errorf("second trim deleted %d (%v)", deleted, err)
	}
	if deleted, err := s.TrimLogs(ctx, d.ID, LogRuntime, 0); err != nil || deleted != keep {
		t.Errorf("trim to 0 deleted %d (%v), want %d", deleted, err, keep)
	}
}

package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestTrimProjectLogs(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	newDeployment := func(project string) Deployment {
		p, err := s.GetProject(ctx, project)
		if err != nil {
			if p, err = s.CreateProject(ctx, Project{Name: project}); err != nil {
				t.Fatal(err)
			}
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
	a, b, other := newDeployment("web"), newDeployment("web"), newDeployment("api")
	now := time.Now().UTC()
	var lines []LogLine
	// a: 10 lines two days old, then b: 10 lines an hour old, each 99
	// bytes (+1 for the newline); other: 10 old lines of another project.
	for i := range 10 {
		lines = append(lines, LogLine{DeploymentID: a.ID, Kind: LogRuntime, Time: now.Add(-48 * time.Hour), Text: fmt.Sprintf("a%02d", i) + strings.Repeat("x", 96)})
	}
	for i := range 10 {
		lines = append(lines, LogLine{DeploymentID: b.ID, Kind: LogRuntime, Time: now.Add(-time.Hour), Text: fmt.Sprintf("b%02d", i) + strings.Repeat("x", 96)})
		lines = append(lines, LogLine{DeploymentID: other.ID, Kind: LogRuntime, Time: now.Add(-48 * time.Hour), Text: "old"})
	}
	lines = append(lines, LogLine{DeploymentID: a.ID, Kind: LogBuild, Time: now.Add(-48 * time.Hour), Text: "build line"})
	if err := s.AppendLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	count := func(id, kind string) int {
		ls, err := s.ListLogs(ctx, LogQuery{DeploymentID: id, Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		return len(ls)
	}

	p, _ := s.GetProject(ctx, "web")
	n, err := s.TrimProjectLogs(ctx, p.ID, LogRuntime, now.Add(-24*time.Hour), 0)
	if err != nil || n != 10 {
		t.Fatalf("trim by age deleted %d, %v; want 10", n, err)
	}
	if count(a.ID, LogRuntime) != 0 || count(b.ID, LogRuntime) != 10 {
		t.Errorf("after trimming by age: a %d, b %d lines; want 0 and 10", count(a.ID, LogRuntime), count(b.ID, LogRuntime))
	}
	if count(other.ID, LogRuntime) != 10 || count(a.ID, LogBuild) != 1 {
		t.Error("trimming one project's runtime logs touched another project's or the build log")
	}

	// 450 bytes keep the newest 4 lines of 100.
	n, err = s.TrimProjectLogs(ctx, p.ID, LogRuntime, time.Time{}, 450)
	if err != nil || n != 6 {
		t.Fatalf("trim by size deleted %d, %v; want 6", n, err)
	}
	ls, _ := s.ListLogs(ctx, LogQuery{DeploymentID: b.ID, Kind: LogRuntime})
	if len(ls) != 4 || !strings.HasPrefix(ls[0].Text, "b06") {
		t.Errorf("after trimming by size: %d lines, first %q; want b06..b09", len(ls), ls[0].Text)
	}
}

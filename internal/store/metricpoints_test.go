package store

import (
	"context"
	"reflect"
	"testing"
	"time"
)

func TestMetricPointsMergeAndPrune(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	p, _ := s.CreateProject(ctx, Project{Name: "web"})
	env, _ := s.GetEnvironment(ctx, p.ID, ProductionEnvironment)
	staging, err := s.CreateEnvironment(ctx, p.ID, "staging", nil)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: env.ID, Status: "RUNNING", Trigger: "upload"})
	gone, _ := s.CreateDeployment(ctx, Deployment{ProjectID: p.ID, EnvironmentID: staging.ID, Status: "RUNNING", Trigger: "upload"})

	pt := func(dep string, step, at, reqs int64, lat []uint64, mem int64) MetricPoint {
		return MetricPoint{ProjectID: p.ID, DeploymentID: dep, Step: step, At: at, Requests: reqs, Errors5xx: 1,
			Latency: lat, CPU: 3 * time.Millisecond, MemoryMax: mem}
	}
	// Two measurements of one interval merge: sums, and the larger memory.
	if err := s.AddMetricPoints(ctx, []MetricPoint{pt(d.ID, 10, 100, 4, []uint64{1, 2}, 50), pt(gone.ID, 10, 100, 1, nil, 5)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMetricPoints(ctx, []MetricPoint{pt(d.ID, 10, 100, 6, []uint64{0, 1, 300}, 40), pt(d.ID, 10, 110, 1, nil, 0), pt(d.ID, 300, 0, 7, nil, 0)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.MetricPoints(ctx, p.ID, d.ID, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []MetricPoint{
		{ProjectID: p.ID, DeploymentID: d.ID, Step: 10, At: 100, Requests: 10, Errors5xx: 2, Latency: []uint64{1, 3, 300}, CPU: 6 * time.Millisecond, MemoryMax: 50},
		{ProjectID: p.ID, DeploymentID: d.ID, Step: 10, At: 110, Requests: 1, Errors5xx: 1, CPU: 3 * time.Millisecond},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("points:\n got %+v\nwant %+v", got, want)
	}
	if got, _ := s.MetricPoints(ctx, p.ID, d.ID, 10, 105); len(got) != 1 || got[0].At != 110 {
		t.Errorf("since 105: %+v", got)
	}

	// Age: the 10 s intervals before 110 go, the 300 s one stays; the
	// deleted environment's deployment goes whatever its age.
	if err := s.DeleteEnvironment(ctx, staging.ID); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneMetricPoints(ctx, map[int64]int64{10: 110, 300: -1000}, 0)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d, %v; want 2", n, err)
	}
	if got, _ := s.MetricPoints(ctx, p.ID, gone.ID, 10, 0); len(got) != 0 {
		t.Errorf("a gone deployment's points stay: %+v", got)
	}
	if c, _ := s.CountMetricPoints(ctx); c != 2 {
		t.Errorf("%d points left, want 2", c)
	}

	// The cap deletes deployments' oldest rows before projects' totals.
	var many []MetricPoint
	for i := range int64(10) {
		many = append(many, pt(d.ID, 10, 200+10*i, 1, nil, 0), pt("", 10, 10*i, 1, nil, 0))
	}
	if err := s.AddMetricPoints(ctx, many); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PruneMetricPoints(ctx, nil, 15); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.CountMetricPoints(ctx); c != 15 {
		t.Errorf("%d points after capping at 15", c)
	}
	if got, _ := s.MetricPoints(ctx, p.ID, "", 10, 0); len(got) != 10 {
		t.Errorf("the cap took %d of the project's rows before the deployment's", 10-len(got))
	}
	if got, _ := s.MetricPoints(ctx, p.ID, d.ID, 10, 0); len(got) != 5 || got[0].At != 250 {
		t.Errorf("the deployment keeps %+v, want its newest 5 (from 250) of 10 s rows", got)
	}
}

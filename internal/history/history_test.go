package history

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// fakeSource returns the readings a test sets.
type fakeSource struct{ readings []Reading }

func (f *fakeSource) Read(context.Context) []Reading { return f.readings }

type fixture struct {
	st       *store.Store
	src      *fakeSource
	s        *Sampler
	project  string
	d1, d2   string
	staging  string
	t0       time.Time
	readings map[string]*Reading
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "slipway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := st.CreateProject(ctx, store.Project{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	prod, _ := st.GetEnvironment(ctx, p.ID, store.ProductionEnvironment)
	staging, err := st.CreateEnvironment(ctx, p.ID, "staging", nil)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := st.CreateDeployment(ctx, store.Deployment{ProjectID: p.ID, EnvironmentID: prod.ID, Status: "RUNNING", Trigger: "upload"})
	d2, _ := st.CreateDeployment(ctx, store.Deployment{ProjectID: p.ID, EnvironmentID: staging.ID, Status: "RUNNING", Trigger: "upload"})
	src := &fakeSource{}
	return &fixture{st: st, src: src, s: New(Config{Store: st, Source: src}), project: p.ID, d1: d1.ID, d2: d2.ID, staging: staging.ID,
		t0: time.Unix(1_800_000_000/3600*3600, 0).UTC()}
}

func (f *fixture) sample(t *testing.T, at time.Duration, rs ...Reading) {
	t.Helper()
	f.src.readings = rs
	if err := f.s.Sample(context.Background(), f.t0.Add(at)); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) points(t *testing.T, dep string, step int64) map[int64]store.MetricPoint {
	t.Helper()
	pts, err := f.st.MetricPoints(context.Background(), f.project, dep, step, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]store.MetricPoint{}
	for _, p := range pts {
		out[p.At-f.t0.Unix()] = p
	}
	return out
}

func lat(buckets map[int]uint64) []uint64 {
	out := make([]uint64, len(LatencyBounds)+1)
	for i, n := range buckets {
		out[i] = n
	}
	return out
}

const mb = 1 << 20

// TestSamplerDeltas: what changed between readings lands in the interval
// of the sample, per deployment and for the project together, at every
// resolution; counters and CPU time that start again from zero count
// whole; the first sample takes the CPU time of running instances as a
// baseline.
func TestSamplerDeltas(t *testing.T) {
	f := newFixture(t)
	f.sample(t, 0, Reading{Deployment: f.d1, Requests: [5]uint64{0, 5}, Latency: lat(map[int]uint64{2: 5}), Instance: "i1", CPU: 100 * time.Second, Memory: 10 * mb})
	f.sample(t, 10*time.Second,
		Reading{Deployment: f.d1, Requests: [5]uint64{0, 15, 0, 1, 2}, Latency: lat(map[int]uint64{2: 10, 5: 3}), Instance: "i1", CPU: 100*time.Second + 500*time.Millisecond, Memory: 12 * mb},
		Reading{Deployment: f.d2, Instance: "i2", CPU: time.Second, Memory: 5 * mb})
	// d1's instance restarted (its CPU time starts again) and its counters
	// were recreated.
	f.sample(t, 20*time.Second, Reading{Deployment: f.d1, Requests: [5]uint64{0, 3}, Instance: "i3", CPU: 200 * time.Millisecond, Memory: 8 * mb})

	d1 := f.points(t, f.d1, 10)
	check := func(name string, got store.MetricPoint, reqs, e4, e5 int64, cpu time.Duration, mem int64) {
		t.Helper()
		if got.Requests != reqs || got.Errors4xx != e4 || got.Errors5xx != e5 || got.CPU != cpu || got.MemoryMax != mem {
			t.Errorf("%s: %d requests (%d 4xx, %d 5xx), cpu %v, memory %d; want %d (%d, %d), %v, %d",
				name, got.Requests, got.Errors4xx, got.Errors5xx, got.CPU, got.MemoryMax, reqs, e4, e5, cpu, mem)
		}
	}
	check("d1 at 0s", d1[0], 5, 0, 0, 0, 10*mb)
	check("d1 at 10s", d1[10], 13, 1, 2, 500*time.Millisecond, 12*mb)
	check("d1 at 20s", d1[20], 3, 0, 0, 200*time.Millisecond, 8*mb)
	if got := d1[10].Latency; len(got) != len(LatencyBounds)+1 || got[2] != 5 || got[5] != 3 {
		t.Errorf("d1's latency buckets at 10s: %v", got)
	}
	d2 := f.points(t, f.d2, 10)
	check("d2 at 10s (new since the previous sample)", d2[10], 0, 0, 0, time.Second, 5*mb)
	proj := f.points(t, "", 10)
	check("project at 10s", proj[10], 13, 1, 2, 1500*time.Millisecond, 17*mb)

	// The 5-minute and hourly intervals hold the sums, and the most memory
	// seen at once.
	for _, step := range []int64{300, 3600} {
		check("d1 coarse", f.points(t, f.d1, step)[0], 21, 1, 2, 700*time.Millisecond, 12*mb)
		check("project coarse", f.points(t, "", step)[0], 21, 1, 2, 1700*time.Millisecond, 17*mb)
	}

	// A deployment with no requests and no instance writes nothing.
	f.sample(t, 30*time.Second, Reading{Deployment: f.d1, Requests: [5]uint64{0, 3}})
	if _, ok := f.points(t, f.d1, 10)[30]; ok {
		t.Error("an idle deployment got a point")
	}
}

// TestSamplerDownsamplesAndPrunes samples every 10 s for two hours: the
// 10 s level keeps the last hour, the 5-minute and hourly levels hold the
// sums, and a deployment that is gone drops out.
func TestSamplerDownsamplesAndPrunes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var n uint64
	for at := time.Duration(0); at <= 2*time.Hour; at += 10 * time.Second {
		n++
		rs := []Reading{{Deployment: f.d1, Requests: [5]uint64{0, n}, Latency: lat(map[int]uint64{4: n}), Instance: "i1", CPU: time.Duration(n) * 10 * time.Millisecond, Memory: int64(n)}}
		if at < time.Hour {
			rs = append(rs, Reading{Deployment: f.d2, Requests: [5]uint64{0, n}})
		}
		f.sample(t, at, rs...)
	}
	fine := f.points(t, f.d1, 10)
	if len(fine) != 361 {
		t.Errorf("%d rows of 10 s, want 361 (an hour and the current interval)", len(fine))
	}
	for at := range fine {
		if at < 3600 {
			t.Errorf("a 10 s row from %ds is older than an hour", at)
			break
		}
	}
	five := f.points(t, f.d1, 300)
	if len(five) != 25 || five[600].Requests != 30 || five[7200].Requests != 1 {
		t.Errorf("5-minute rows: %d, requests at 600s %d, at 7200s %d; want 25, 30, 1", len(five), five[600].Requests, five[7200].Requests)
	}
	hours := f.points(t, f.d1, 3600)
	if len(hours) != 3 || hours[0].Requests != 360 || hours[3600].Requests != 360 || hours[0].CPU != 3590*time.Millisecond {
		t.Errorf("hourly rows: %d, %d and %d requests, cpu %v", len(hours), hours[0].Requests, hours[3600].Requests, hours[0].CPU)
	}
	if hours[3600].MemoryMax != 720 {
		t.Errorf("hourly memory %d, want the most seen (720)", hours[3600].MemoryMax)
	}
	total := 0
	for _, step := range []int64{10, 300, 3600} {
		for _, dep := range []string{f.d1, ""} {
			total += len(f.points(t, dep, step))
		}
	}
	if max := 2 * MaxRowsPerSeries; total > max {
		t.Errorf("%d rows for a deployment and its project, over the bound %d", total, max)
	}

	// Read: an hour of 10 s points, a day of 5-minute points.
	now := f.t0.Add(2*time.Hour + 5*time.Second)
	s, err := Read(ctx, f.st, f.project, f.d1, Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Points) != 361 || s.Step != 10*time.Second || !s.From.Equal(f.t0.Add(time.Hour)) {
		t.Fatalf("hour: %d points of %v from %v", len(s.Points), s.Step, s.From)
	}
	p := s.Points[100]
	if p.Requests != 1 || p.RequestsPerSecond != 0.1 || p.ErrorRate == nil || *p.ErrorRate != 0 || p.P50 == nil || math.Abs(*p.P50-0.0175) > 1e-9 {
		t.Errorf("a 10 s point: %+v", p)
	}
	if last := s.Points[360]; last.RequestsPerSecond != 0.2 { // 1 request in the 5 s that passed
		t.Errorf("the current interval's rate %v, want 0.2", last.RequestsPerSecond)
	}
	if s.Requests != 361 {
		t.Errorf("%d requests over the hour, want 361", s.Requests)
	}
	day, err := Read(ctx, f.st, f.project, "", Day, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(day.Points) != 289 {
		t.Fatalf("day: %d points", len(day.Points))
	}
	if p := day.Points[0]; p.Requests != 0 || p.ErrorRate != nil || p.P50 != nil {
		t.Errorf("a day's first point, before anything was measured: %+v", p)
	}
	if p := day.Points[len(day.Points)-3]; p.Requests != 30 || p.RequestsPerSecond != 0.1 {
		t.Errorf("a 5-minute point of the project: %+v", p)
	}
	// d2 stopped after an hour: its fine rows aged out; once its
	// environment is deleted, all of its rows go.
	if got := f.points(t, f.d2, 10); len(got) != 0 {
		t.Errorf("d2 keeps %d rows of 10 s", len(got))
	}
	if err := f.st.DeleteEnvironment(ctx, f.staging); err != nil {
		t.Fatal(err)
	}
	f.sample(t, 2*time.Hour+time.Minute)
	for _, step := range []int64{300, 3600} {
		if got := f.points(t, f.d2, step); len(got) != 0 {
			t.Errorf("a deleted deployment keeps %d rows of %ds", len(got), step)
		}
	}

}

func TestQuantile(t *testing.T) {
	for _, c := range []struct {
		name   string
		counts []uint64
		q      float64
		want   float64 // NaN: nil
	}{
		{"nothing", nil, 0.5, math.NaN()},
		{"zeros", lat(nil), 0.95, math.NaN()},
		{"one bucket", lat(map[int]uint64{4: 100}), 0.5, 0.0175},       // (0.01, 0.025]
		{"first bucket", lat(map[int]uint64{0: 10}), 0.5, 0.0005},      // (0, 0.001]
		{"two buckets", lat(map[int]uint64{0: 50, 9: 50}), 0.95, 0.95}, // (0.5, 1]: 0.5 + 0.5*45/50
		{"beyond the last bound", lat(map[int]uint64{14: 3}), 0.5, 30},
	} {
		got := Quantile(c.q, c.counts)
		switch {
		case math.IsNaN(c.want) && got != nil:
			t.Errorf("%s: %v, want nil", c.name, *got)
		case !math.IsNaN(c.want) && (got == nil || math.Abs(*got-c.want) > 1e-9):
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRebucket(t *testing.T) {
	// The same bounds map one to one; coarser ones land in the next bound
	// up; the total beyond the last bound is +Inf.
	same := Rebucket(LatencyBounds, []uint64{1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 5})
	if same[0] != 1 || same[2] != 2 || same[14] != 2 {
		t.Errorf("same bounds: %v", same)
	}
	other := Rebucket([]float64{0.002, 60}, []uint64{4, 6, 7})
	if other[1] != 4 || other[14] != 3 {
		t.Errorf("other bounds: %v", other)
	}
}

func TestParseRange(t *testing.T) {
	for in, want := range map[string]Range{"": Hour, "hour": Hour, "day": Day, "week": Week} {
		if got, err := ParseRange(in); err != nil || got != want {
			t.Errorf("ParseRange(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseRange("month"); err == nil {
		t.Error("month accepted")
	}
	if MaxRowsPerSeries != 819 {
		t.Errorf("MaxRowsPerSeries = %d", MaxRowsPerSeries)
	}
}

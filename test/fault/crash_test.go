package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/api"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

// Crash the control plane: the server process is killed with SIGKILL at
// points of a deployment (while the source uploads, while it is queued,
// building, deploying, and switching the hostnames), then started again on
// the same data directory. After each restart:
//
//   - every deployment the API accepted reaches RUNNING (the app is
//     healthy, so FAILED would mean the crash lost it) and none was
//     created twice;
//   - apps that ran before the kill answered while the server was down
//     (dialled directly in their network namespace, since the router
//     lives in the server process) and still run as the same process
//     (same instance, same start time) afterwards;
//   - every log line the API returned before the kill is still there;
//   - each RUNNING deployment has exactly one app process;
//   - the project's hostname serves its newest deployment.
//
// The kill points carry a random delay; FAULT_SEED repeats a run.
func TestCrashControlPlane(t *testing.T) {
	requireRealParts(t)
	root, err := os.MkdirTemp("", "slipway-crash-")
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, root)
	t.Cleanup(e.shutdown)
	e.dumpOnFailure(t)

	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FAULT_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("FAULT_SEED=%d", seed)
	cr := &crashRun{e: e, c: e.c, rng: rand.New(rand.NewPCG(seed, 0)), acked: map[string]bool{}}

	ensureProject(t, e.c, "crash")
	base := deployRunning(t, e.c, "crash", faultApp(t, "crash-base"), 10*time.Minute)
	cr.acked[base.ID] = true

	for _, sc := range []struct{ name, phase string }{
		{"uploading", "uploading"},
		{"queued", "PENDING"},
		{"building", "BUILDING"},
		{"deploying", "DEPLOYING"},
		{"switching", "switching"},
	} {
		t.Run(sc.name, func(t *testing.T) { cr.scenario(t, sc.name, sc.phase) })
		if !e.srv.Running() {
			break // later scenarios need the server this one failed to restart
		}
	}
}

type crashRun struct {
	e       *env
	c       *serverproc.Client
	rng     *rand.Rand
	acked   map[string]bool // deployments the API acknowledged
	unacked int             // uploads the server may or may not have taken
	n       int
}

// ackedLine is a log line the API returned.
type ackedLine struct {
	deployment string
	line       api.LogLine
}

func (cr *crashRun) scenario(t *testing.T, name, phase string) {
	cr.n++
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	c := cr.c

	// Before: which apps run, as which process; and some fresh app output.
	before := cr.running(t, ctx)
	if len(before) == 0 {
		t.Fatal("no RUNNING deployment before the kill")
	}
	code, _, err := c.Get(ctx, c.Host("crash"), "/log?n=20&tag="+name)
	if err != nil || code != 200 {
		t.Fatalf("asking the app to log: %d %v", code, err)
	}
	waitRuntimeLine(t, ctx, c, cr.currentID(t, ctx), "log "+name+" 20")
	var acked []ackedLine
	for id := range cr.acked {
		acked = append(acked, cr.logs(t, ctx, id)...)
	}

	// The action, up to the kill.
	killedAt := "?"
	switch phase {
	case "uploading":
		killedAt = cr.killWhileUploading(t, ctx)
	default:
		d, err := c.Upload(ctx, "crash", faultApp(t, fmt.Sprintf("crash-%s-%d", name, cr.n)), url.Values{"message": {"crash " + name}})
		if err != nil {
			t.Fatal(err)
		}
		cr.acked[d.ID] = true
		var lines []api.LogLine
		lines, killedAt = cr.killAt(t, ctx, d.ID, phase)
		for _, l := range lines {
			acked = append(acked, ackedLine{deployment: d.ID, line: l})
		}
	}
	t.Logf("killed the server while %s (aimed at %s)", killedAt, phase)

	// While down: the apps that ran still answer, as the same processes.
	for id, a := range before {
		got, err := infoDirect(ctx, a.Instance)
		switch {
		case err != nil:
			t.Errorf("deployment %s did not answer while the server was down: %v", id, err)
		case got.Started != a.Started || got.Instance != a.Instance:
			t.Errorf("deployment %s: before the kill %+v, while down %+v", id, a, got)
		}
	}

	if err := cr.e.srv.Start(ctx); err != nil {
		t.Fatalf("restarting the server: %v", err)
	}
	// As soon as the server answers again, so do the apps through its
	// router (once, right away; then wait, so the checks below run).
	for id := range before {
		code, body, err := c.Get(ctx, c.Host(id), "/")
		if err != nil || code != 200 {
			t.Errorf("right after the restart (API healthy), %s answered %d %q %v; apps must answer throughout",
				c.Host(id), code, strings.TrimSpace(string(body)), err)
		}
	}
	for id := range before {
		waitServed(t, ctx, c, c.Host(id))
	}

	// Every accepted deployment settles, none twice.
	ds := cr.settle(t, ctx)
	seen := map[string]bool{}
	for _, d := range ds {
		if seen[d.ID] {
			t.Errorf("deployment %s is listed twice", d.ID)
		}
		seen[d.ID] = true
		if !cr.acked[d.ID] {
			t.Logf("deployment %s was not acknowledged by the API (status %s)", d.ID, d.Status)
		}
	}
	extra := len(ds) - len(cr.acked)
	if extra < 0 || extra > cr.unacked {
		t.Errorf("%d deployments after the restart; %d were acknowledged and %d uploads were cut off", len(ds), len(cr.acked), cr.unacked)
	}
	for id := range cr.acked {
		if !seen[id] {
			t.Errorf("acknowledged deployment %s is gone", id)
		}
	}
	var newest api.Deployment
	for _, d := range ds {
		if d.Status != "RUNNING" {
			if cr.acked[d.ID] {
				t.Errorf("deployment %s ended %s after the restart: %s", d.ID, d.Status, d.FailureReason)
			}
			continue
		}
		if newest.ID == "" || d.CreatedAt.After(newest.CreatedAt) {
			newest = d
		}
	}

	// No acknowledged log line is lost.
	have := map[string]map[int64]string{}
	for id := range cr.acked {
		m := map[int64]string{}
		for _, l := range cr.logs(t, ctx, id) {
			m[l.line.ID] = l.line.Text
		}
		have[id] = m
	}
	lost := 0
	for _, l := range acked {
		if txt, ok := have[l.deployment][l.line.ID]; !ok || txt != l.line.Text {
			if lost < 5 {
				t.Errorf("log line lost: deployment %s line %d %q (now %q)", l.deployment, l.line.ID, l.line.Text, txt)
			}
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged log lines are lost", lost, len(acked))
	}

	// The apps that ran were re-attached, not restarted.
	for id, a := range before {
		got := info(t, c, c.Host(id))
		if got.Instance != a.Instance || got.Started != a.Started {
			t.Errorf("deployment %s was restarted by the crash: before %+v, after %+v", id, a, got)
		}
	}
	// One app process per RUNNING deployment; none for the others.
	procs := serverproc.AppProcesses()
	for _, d := range ds {
		want := 0
		if d.Status == "RUNNING" {
			want = 1
		}
		if got := len(procs[d.ID]); got != want {
			t.Errorf("deployment %s (%s) has %d app processes %v, want %d", d.ID, d.Status, got, procs[d.ID], want)
		}
	}
	// The project's hostname serves the newest RUNNING deployment.
	if newest.ID != "" {
		if got := info(t, c, c.Host("crash")); got.Deployment != newest.ID {
			t.Errorf("%s is served by %s, want the newest deployment %s", c.Host("crash"), got.Deployment, newest.ID)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(cr.e.srv.DataDir(), "sources", "upload-*")); len(left) > 0 {
		t.Logf("note: the cut-off upload left %v behind in the data directory", left)
	}
}

// waitServed waits until host answers 200 through the router.
func waitServed(t *testing.T, ctx context.Context, c *serverproc.Client, host string) {
	deadline := time.Now().Add(time.Minute)
	for {
		code, body, err := c.Get(ctx, host, "/")
		if err == nil && code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer: %d %q %v", host, code, body, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running returns the RUNNING deployments of the project and who answers
// for each.
func (cr *crashRun) running(t *testing.T, ctx context.Context) map[string]appInfo {
	ds, err := cr.c.Deployments(ctx, "crash")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]appInfo{}
	for _, d := range ds {
		if d.Status == "RUNNING" {
			out[d.ID] = info(t, cr.c, cr.c.Host(d.ID))
		}
	}
	return out
}

func (cr *crashRun) currentID(t *testing.T, ctx context.Context) string {
	p, err := cr.c.Project(ctx, "crash")
	if err != nil {
		t.Fatal(err)
	}
	return p.CurrentDeployment
}

// logs returns a deployment's build and runtime log lines as the API
// returns them now.
func (cr *crashRun) logs(t *testing.T, ctx context.Context, id string) []ackedLine {
	var out []ackedLine
	b, err := cr.c.BuildLogs(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range b {
		out = append(out, ackedLine{deployment: id, line: l})
	}
	r, err := cr.c.RuntimeLogs(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range r {
		out = append(out, ackedLine{deployment: id, line: l})
	}
	return out
}

// waitRuntimeLine waits until a deployment's runtime log holds text.
func waitRuntimeLine(t *testing.T, ctx context.Context, c *serverproc.Client, id, text string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		lines, err := c.RuntimeLogs(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			if l.Text == text {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("runtime log of %s never showed %q", id, text)
}

// killWhileUploading sends half a source, kills the server, then breaks
// the upload off.
func (cr *crashRun) killWhileUploading(t *testing.T, ctx context.Context) string {
	tgz, err := serverproc.Pack(faultApp(t, fmt.Sprintf("crash-upload-%d", cr.n)))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	type result struct {
		d   api.Deployment
		err error
	}
	done := make(chan result, 1)
	go func() {
		d, err := cr.c.UploadTarball(ctx, "crash", pr, nil)
		done <- result{d, err}
	}()
	half := len(tgz) / 2
	if _, err := pw.Write(tgz[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(cr.rng.IntN(200)) * time.Millisecond)
	cr.unacked++
	if err := cr.e.srv.Kill(); err != nil {
		t.Fatal(err)
	}
	pw.CloseWithError(errors.New("server killed"))
	r := <-done
	if r.err == nil {
		t.Logf("the cut-off upload was acknowledged as %s", r.d.ID)
		cr.acked[r.d.ID] = true
		cr.unacked--
	}
	return fmt.Sprintf("uploading (%d of %d bytes sent)", half, len(tgz))
}

// killAt follows a deployment's build log and kills the server once the
// log shows the mark of phase, after a random delay for phases that last:
// PENDING is killed as soon as the upload is acknowledged; BUILDING and
// DEPLOYING when their status line appears (plus a delay); "switching"
// when the first health check has passed, that is while the deployment is
// being promoted and its hostnames switched. It returns the lines it saw
// and the last one before the kill.
func (cr *crashRun) killAt(t *testing.T, ctx context.Context, id, phase string) ([]api.LogLine, string) {
	if phase == "PENDING" {
		if err := cr.e.srv.Kill(); err != nil {
			t.Fatal(err)
		}
		return nil, "PENDING (just acknowledged)"
	}
	mark := map[string]string{
		"BUILDING":  "status INITIALIZING → BUILDING",
		"DEPLOYING": "status BUILDING → DEPLOYING",
		"switching": "health check passed",
	}[phase]
	var maxDelay int
	switch phase {
	case "BUILDING":
		maxDelay = 1500
	case "DEPLOYING":
		maxDelay = 60
	}
	var lines []api.LogLine
	var killAt time.Time
	reached := false
	var after int64
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		var page api.LogPage
		err := cr.c.JSON(ctx, "GET", "/api/v1/deployments/"+id+"/build-logs?limit=5000&after="+strconv.FormatInt(after, 10), nil, &page)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range page.Lines {
			lines = append(lines, l)
			after = l.ID
			if !reached && strings.HasPrefix(l.Text, mark) {
				reached = true
				killAt = time.Now()
				if maxDelay > 0 {
					killAt = killAt.Add(time.Duration(cr.rng.IntN(maxDelay)) * time.Millisecond)
				}
			}
			if reached && !time.Now().Before(killAt) {
				if err := cr.e.srv.Kill(); err != nil {
					t.Fatal(err)
				}
				return lines, fmt.Sprintf("the log's last line was %q", l.Text)
			}
		}
		if reached && !time.Now().Before(killAt) {
			if err := cr.e.srv.Kill(); err != nil {
				t.Fatal(err)
			}
			return lines, fmt.Sprintf("the log's last line was %q", lines[len(lines)-1].Text)
		}
		if !reached && len(lines) > 0 && serverproc.Settled(statusOf(lines)) {
			t.Fatalf("deployment %s reached %s without passing %q", id, statusOf(lines), mark)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("deployment %s never reached %q", id, mark)
	return nil, ""
}

// statusOf returns the status the last status line of a build log names.
func statusOf(lines []api.LogLine) string {
	status := "PENDING"
	for _, l := range lines {
		if s, ok := strings.CutPrefix(l.Text, "status "); ok {
			if _, to, ok := strings.Cut(s, " → "); ok {
				status, _, _ = strings.Cut(to, ":")
			}
		}
	}
	return status
}

// settle waits until every deployment of the project is RUNNING, FAILED
// or STOPPED and returns them, oldest first.
func (cr *crashRun) settle(t *testing.T, ctx context.Context) []api.Deployment {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		ds, err := cr.c.Deployments(ctx, "crash")
		if err != nil {
			t.Fatal(err)
		}
		pending := ""
		for _, d := range ds {
			if !serverproc.Settled(d.Status) {
				pending = d.ID + " " + d.Status
			}
		}
		if pending == "" {
			sort.Slice(ds, func(i, j int) bool { return ds[i].CreatedAt.Before(ds[j].CreatedAt) })
			return ds
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart, deployment %s did not settle within 5 minutes", pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

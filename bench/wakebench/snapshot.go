package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/bench/internal/appstart"
	"github.com/slipwayhq/slipway/bench/internal/benchsrv"
	"github.com/slipwayhq/slipway/bench/internal/report"
	"github.com/slipwayhq/slipway/bench/internal/stats"
	"github.com/slipwayhq/slipway/internal/runtime/runc"
	"github.com/slipwayhq/slipway/test/fault/serverproc"
)

// snapshotOpts are the flags wakebench -snapshot reads.
type snapshotOpts struct {
	bin, data, python string
	wakes, prepared   int
	idle              time.Duration
	out, json         string
}

// runSnapshot is wakebench -snapshot: the Python app (a Flask app) in the
// gvisor sandbox, its cold start beside its wakes, in one run:
//
//   - plain process: its start command chrooted into its image (as for
//     the Python app without -snapshot);
//   - gvisor driver alone, cold: Driver.Start → first 200 with runsc (its
//     own cold start in the sandbox);
//   - gvisor driver alone, from a snapshot: Driver.Start with
//     Spec.Snapshot (a save of the first of those instances) → first 200;
//   - wakes through Slipway on gvisor, resuming the deployment's snapshot
//     (the server's default);
//   - wakes through Slipway on gvisor with --snapshots=false (cold wakes):
//     the same deployment after the server is restarted with that flag.
//
// The three baselines are interleaved with the wakes of both phases.
func runSnapshot(ctx context.Context, o snapshotOpts) error {
	if o.python == "" {
		return errors.New("-snapshot needs -python (a Flask app, e.g. examples/flask-pip)")
	}
	work, err := os.MkdirTemp("", "wakebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	loadBefore := report.LoadAvg()
	cfg := serverproc.Config{Binary: o.bin, DataDir: o.data, IdleTimeout: o.idle, DeployWindow: 5 * time.Minute,
		Args: []string{"--prepared-sandboxes", strconv.Itoa(o.prepared)}}
	waitPrepared = o.prepared > 0
	settle = time.Second
	srv, _, err := benchsrv.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { benchsrv.Shutdown(srv) }()
	c := srv.Client()
	name := filepath.Base(o.python)
	project := "python-gvisor"
	if _, err := c.Project(ctx, project); err != nil {
		if err := c.CreateProject(ctx, project); err != nil {
			return err
		}
	}
	if err := c.JSON(ctx, "PATCH", "/api/v1/projects/"+project+"/settings", map[string]string{"sandbox": runc.GVisor}, nil); err != nil {
		return err
	}
	dep, err := deployApp(ctx, c, project, o.python, work)
	if err != nil {
		return err
	}
	if err := waitSaved(ctx, c, dep.ID); err != nil {
		return err
	}

	plain := &series{Name: name + ": plain process: the start command chrooted into the unpacked image, no namespaces or cgroups, exec → first 200"}
	cold := &series{Name: name + ": gvisor driver alone, cold: Driver.Start → first 200 through Driver.Dial (runsc; image already unpacked)"}
	restored := &series{Name: name + ": gvisor driver alone, from a snapshot: Driver.Start with Spec.Snapshot → first 200 through Driver.Dial"}
	var baselines []*sampler
	if cs, err := chrootSampler(ctx, plain, work, "py", dep.Image, srv.Token(), dep.StartCommand); err != nil {
		plain.Failed = err.Error()
	} else {
		baselines = append(baselines, cs)
	}
	args := appstart.StartCommandArgs(dep.StartCommand)
	if ds, err := driverSampler(ctx, cold, work, "gvc", runc.GVisor, dep.Image, srv.Token(), args, ""); err != nil {
		cold.Failed = err.Error()
	} else {
		defer ds.close()
		baselines = append(baselines, ds)
	}
	if ds, err := driverSampler(ctx, restored, work, "gvs", runc.GVisor, dep.Image, srv.Token(), args, filepath.Join(work, "snapshot")); err != nil {
		restored.Failed = err.Error()
	} else {
		defer ds.close()
		restored.Note = strings.Replace(restored.Note, "the first start", "the first start (saved, then, as the snapshot the others resume)", 1)
		baselines = append(baselines, ds)
	}

	// Three phases on the same deployment, the server restarted between
	// them with other flags: its default (the snapshot restored ahead in
	// the prepared sandbox), --restore-ahead-memory=0 (restored at the
	// wake), --snapshots=false (cold wakes).
	phases := []struct {
		args     []string
		what     string
		resumes  string // what each wake's runtime log says
		wantNone bool
	}{
		{nil, "on gvisor, resuming the deployment's snapshot restored ahead (the default)", "restored from the deployment's snapshot ahead", false},
		{[]string{"--restore-ahead-memory=0"}, "on gvisor with --restore-ahead-memory=0, restoring the snapshot at the wake", "started from the deployment's snapshot (prepared ahead)", false},
		{[]string{"--snapshots=false"}, "on gvisor with --snapshots=false (cold wakes)", "resumed from a snapshot", true},
	}
	var wakes []*series
	for i, ph := range phases {
		if i > 0 {
			if err := srv.Stop(30 * time.Second); err != nil {
				return fmt.Errorf("stopping the server: %w", err)
			}
			cfg = srv.Config()
			cfg.Args = append([]string{"--prepared-sandboxes", strconv.Itoa(o.prepared)}, ph.args...)
			if srv, _, err = benchsrv.Start(ctx, cfg); err != nil {
				return err
			}
			c = srv.Client()
		}
		before, err := countLog(ctx, c, dep.ID, ph.resumes)
		if err != nil {
			return err
		}
		ws, err := measureWakes(ctx, c, srv, project, name, dep, o.wakes, i*o.wakes, baselines)
		if err != nil {
			return err
		}
		rename(ws, ph.what)
		after, err := countLog(ctx, c, dep.ID, ph.resumes)
		if err != nil {
			return err
		}
		if ph.wantNone {
			if after != before {
				ws[1].Note += fmt.Sprintf("; %d wakes resumed a snapshot (want none)", after-before)
			}
		} else {
			ws[1].Note += fmt.Sprintf("; %d wakes' runtime log says %q", after-before, ph.resumes)
		}
		wakes = append(wakes, ws...)
	}

	all := append([]*series{plain, cold, restored}, wakes...)
	var s report.Section
	s.Heading("Snapshot wakes (gvisor, " + o.python + ")")
	s.P("The Python app is deployed as a project whose sandbox is gvisor on a server started with `--idle-timeout %s` and `--prepared-sandboxes %d`. Its first healthy instance is saved (a snapshot, its runtime log says when); then it is woken %d times in each of three phases, the server restarted between them: with the server's defaults (the sandbox prepared ahead for each wake restores the snapshot and pauses the app: the wake resumes it), with `--restore-ahead-memory=0` (the prepared sandbox restores the snapshot at the wake), and with `--snapshots=false` (each wake starts the app: cold wakes). Each wake is timed as in section 2 — the client's request → first byte through the router, and the server's own record (request → first passed health check) — and sent 1 s after its sandbox is prepared: runsc's sandbox goes on initialising (and a restored app's memory goes on loading) for a moment after the driver returns, which a wake after a real idle timeout (minutes) never meets. Load average before/after: %s / %s.",
		o.idle, o.prepared, o.wakes, loadBefore, report.LoadAvg())
	s.P("Baselines, interleaved with the wakes of both phases (one sample of each after every wake): the plain process (the start command chrooted into the unpacked image, as in section 2); the gvisor driver alone starting the app (the app's own cold start in the sandbox, no control plane, no router); the gvisor driver alone resuming a snapshot it saved of its first such instance. The ratio columns divide a row's p50 by the p50 of the gvisor driver's cold start and of the plain process.")
	start := command(dep.StartCommand)
	s.P("Start command: %s.", start)
	coldSum := stats.Summarize(cold.Samples)
	plainSum := stats.Summarize(plain.Samples)
	rows := [][]string{{"what", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "p50 vs its cold start in gvisor", "p50 vs plain process"}}
	for _, se := range all {
		label := strings.TrimPrefix(se.Name, name+": ")
		if se.Failed != "" {
			rows = append(rows, []string{label, "0", "failed: " + benchsrv.Trim(se.Failed, 200), "", "", "", "", ""})
			continue
		}
		m := stats.Summarize(se.Samples)
		rows = append(rows, []string{label, strconv.Itoa(m.N), stats.MS(m.P50), stats.MS(m.P90), stats.MS(m.P99), stats.MS(m.Max),
			stats.Ratio(float64(m.P50), float64(coldSum.P50)), stats.Ratio(float64(m.P50), float64(plainSum.P50))})
	}
	s.Table(rows)
	for _, se := range all {
		if se.Note != "" {
			s.P("*%s*: %s", strings.TrimPrefix(se.Name, name+": "), se.Note)
		}
	}
	s.P("With fewer than 100 samples p99 is the slowest sample (nearest rank).")
	return s.Write(o.out, o.json, all)
}

// rename puts what the wakes were in the names of measureWakes' series.
func rename(ws []*series, what string) {
	for _, w := range ws {
		w.Name = strings.Replace(w.Name, "wake through Slipway", "wake through Slipway "+what, 1)
		w.Name = strings.Replace(w.Name, "the server's record of the same wakes", "the server's record of those wakes", 1)
	}
}

// command is a start command as the report shows it.
func command(start string) string {
	if start == "" {
		return "the image's own entrypoint and cmd"
	}
	return "`" + start + "`"
}

// waitSaved waits until the deployment's runtime log says its snapshot
// was saved (or that saving it failed).
func waitSaved(ctx context.Context, c *serverproc.Client, id string) error {
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		lines, err := c.RuntimeLogs(ctx, id)
		if err != nil {
			return err
		}
		for _, l := range lines {
			if l.Stream != "slipway" {
				continue
			}
			if strings.HasPrefix(l.Text, "snapshot of instance") {
				return nil
			}
			if strings.HasPrefix(l.Text, "saving a snapshot") {
				return errors.New(l.Text)
			}
		}
	}
	return fmt.Errorf("deployment %s saved no snapshot within 3 minutes", id)
}

// countLog counts the deployment's runtime log lines of Slipway's that
// hold text.
func countLog(ctx context.Context, c *serverproc.Client, id, text string) (int, error) {
	lines, err := c.RuntimeLogs(ctx, id)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range lines {
		if l.Stream == "slipway" && strings.Contains(l.Text, text) {
			n++
		}
	}
	return n, nil
}

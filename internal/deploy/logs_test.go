package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// tailEnv is a deployment with one instance whose output files a test
// writes, and a tailer over them on a clock the test moves.
type tailEnv struct {
	t     *testing.T
	e     *env
	inst  store.Instance
	clock time.Time
}

func newTailEnv(t *testing.T, limits LogLimits) (*tailEnv, *tailer) {
	e := newEnv(t)
	ctx := context.Background()
	p, err := e.store.GetProject(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	envr, err := e.store.GetEnvironment(ctx, p.ID, store.ProductionEnvironment)
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.store.CreateDeployment(ctx, store.Deployment{ProjectID: p.ID, EnvironmentID: envr.ID, Status: string(Running), Trigger: "upload"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in, err := e.store.CreateInstance(ctx, store.Instance{DeploymentID: d.ID, Driver: "fake", Status: "running",
		StdoutPath: filepath.Join(dir, "stdout"), StderrPath: filepath.Join(dir, "stderr")})
	if err != nil {
		t.Fatal(err)
	}
	te := &tailEnv{t: t, e: e, inst: in, clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e.ctl.cfg.Logs = limits.withDefaults()
	tl := e.ctl.newTailer(in)
	tl.now = func() time.Time { return te.clock }
	return te, tl
}

func (te *tailEnv) write(stream, s string) {
	te.t.Helper()
	path := te.inst.StdoutPath
	if stream == "stderr" {
		path = te.inst.StderrPath
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		te.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		te.t.Fatal(err)
	}
}

func (te *tailEnv) stored() []store.LogLine {
	te.t.Helper()
	lines, err := te.e.store.ListLogs(context.Background(), store.LogQuery{DeploymentID: te.inst.DeploymentID, Kind: store.LogRuntime, Limit: 1 << 20})
	if err != nil {
		te.t.Fatal(err)
	}
	return lines
}

func notices(lines []store.LogLine) []string {
	var out []string
	for _, l := range lines {
		if l.Stream == "slipway" {
			out = append(out, l.Text)
		}
	}
	return out
}

func numbered(prefix string, from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "%s %d\n", prefix, i)
	}
	return b.String()
}

// TestTailerDropsAFloodAndSaysSo: output beyond an instance's rate is
// dropped, one line says how much, and the limit recovers with time.
func TestTailerDropsAFloodAndSaysSo(t *testing.T) {
	te, tl := newTailEnv(t, LogLimits{LinesPerSecond: 10, BytesPerSecond: 1000, Burst: 2, Keep: 1000})
	te.write("stdout", numbered("out", 0, 1000))
	tl.pass(false)
	tl.pass(false) // nothing new: the flood is over
	got := te.stored()
	if n := len(got) - len(notices(got)); n != 20 {
		t.Errorf("stored %d lines of a flood with a burst of 20", n)
	}
	if got[0].Text != "out 0" || got[19].Text != "out 19" {
		t.Errorf("kept %q … %q, want the first 20 lines", got[0].Text, got[19].Text)
	}
	n := notices(got)
	if len(n) != 1 || !strings.Contains(n[0], "dropped 980 lines") {
		t.Fatalf("notices: %q, want one saying 980 lines were dropped", n)
	}
	t.Log(n[0])

	// A second later, 10 more lines may be stored, stdout and stderr
	// together.
	te.clock = te.clock.Add(time.Second)
	te.write("stdout", numbered("out", 1000, 1006))
	te.write("stderr", numbered("err", 0, 4))
	tl.pass(false)
	got = te.stored()
	if n := len(got) - len(notices(got)); n != 30 || len(notices(got)) != 1 {
		t.Errorf("after a second: %d lines, notices %q; want 30 lines and the one notice", n, notices(got))
	}
	in, _ := te.e.store.ListInstances(context.Background(), te.inst.DeploymentID)
	outSize, errSize := fileSize(t, te.inst.StdoutPath), fileSize(t, te.inst.StderrPath)
	if in[0].StdoutOffset != outSize || in[0].StderrOffset != errSize {
		t.Errorf("offsets %d/%d, want the files' sizes %d/%d", in[0].StdoutOffset, in[0].StderrOffset, outSize, errSize)
	}
}

// TestTailerSkipsWhatItCannotRead: beyond a pass's scan bound, dropped
// output is skipped unread, the next line is found again, and the notice
// says "at least".
func TestTailerSkipsWhatItCannotRead(t *testing.T) {
	te, tl := newTailEnv(t, LogLimits{LinesPerSecond: 1, BytesPerSecond: 1000, Burst: 2})
	tl.scan = 1000
	te.write("stdout", strings.Repeat("a line of the flood\n", 1000)+"the end of a partial line")
	tl.pass(false)
	te.write("stdout", "\nback\n")
	te.clock = te.clock.Add(time.Second)
	tl.pass(false)
	tl.pass(false) // nothing new: the flood is over
	var texts []string
	for _, l := range te.stored() {
		texts = append(texts, l.Text)
	}
	if len(texts) != 4 || texts[0] != "a line of the flood" || texts[1] != "a line of the flood" ||
		texts[2] != "back" || !strings.Contains(texts[3], "dropped at least ") {
		t.Errorf("stored %q", texts)
	}
}

// TestTailerCutsLongLines keeps the start of a line too long to store.
func TestTailerCutsLongLines(t *testing.T) {
	te, tl := newTailEnv(t, LogLimits{})
	te.write("stdout", strings.Repeat("x", 3*maxLine)+"\nnext\n")
	tl.pass(false)
	got := te.stored()
	if len(got) != 2 || len(got[0].Text) != maxLine || got[1].Text != "next" {
		t.Fatalf("stored %d lines: %d bytes, then %q", len(got), len(got[0].Text), got[len(got)-1].Text)
	}
}

// TestTailerFreesReadOutput: the blocks of what was read are given back;
// the file keeps its size, so offsets stay valid.
func TestTailerFreesReadOutput(t *testing.T) {
	te, tl := newTailEnv(t, LogLimits{LinesPerSecond: 1 << 20, BytesPerSecond: 1 << 30})
	te.write("stdout", strings.Repeat(strings.Repeat("y", 1023)+"\n", 4096)) // 4 MiB
	tl.pass(false)
	var st syscall.Stat_t
	if err := syscall.Stat(te.inst.StdoutPath, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 4<<20 || st.Blocks*512 > 64<<10 {
		t.Errorf("after reading: size %d, %d bytes on disk; want 4 MiB and (almost) none", st.Size, st.Blocks*512)
	}
	te.write("stdout", "after\n")
	tl.pass(false)
	if got := te.stored(); got[len(got)-1].Text != "after" {
		t.Errorf("last line %q", got[len(got)-1].Text)
	}
}

// TestTailerTrimsTheDeploymentsLog keeps a deployment's newest lines.
func TestTailerTrimsTheDeploymentsLog(t *testing.T) {
	te, tl := newTailEnv(t, LogLimits{Keep: 50})
	te.write("stdout", numbered("line", 0, 200))
	tl.pass(false)
	got := te.stored()
	if len(got) != 50 || got[0].Text != "line 150" || got[49].Text != "line 199" {
		t.Errorf("kept %d lines, %q … %q", len(got), got[0].Text, got[len(got)-1].Text)
	}
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// tapRecorder is a LogTap that keeps what it is given.
type tapRecorder struct {
	d     []string
	lines []store.LogLine
}

func (r *tapRecorder) RuntimeLines(d store.Deployment, lines []store.LogLine) {
	r.d = append(r.d, d.ID)
	r.lines = append(r.lines, lines...)
}

func TestLogTapGetsStoredLines(t *testing.T) {
	te, tl := newTailEnv(t, LogLimits{LinesPerSecond: 2, Burst: 1})
	tap := &tapRecorder{}
	te.e.ctl.cfg.LogTap = tap
	tl.d = store.Deployment{ID: te.inst.DeploymentID}
	te.write("stdout", "one\ntwo\nthree\n")
	te.write("stderr", "oops\n")
	same := func(when string) {
		t.Helper()
		stored := te.stored()
		if len(tap.lines) != len(stored) || len(stored) == 0 {
			t.Fatalf("%s: tap got %d lines, the store %d", when, len(tap.lines), len(stored))
		}
		for i, l := range stored {
			if tap.lines[i].ID != l.ID || tap.lines[i].Text != l.Text || tap.lines[i].Stream != l.Stream {
				t.Errorf("%s: line %d: tap %+v, store %+v", when, i, tap.lines[i], l)
			}
		}
	}
	tl.pass(false) // two lines stored, two dropped
	same("first pass")
	tl.pass(false) // the flood ended: the notice of the drops
	same("second pass")
	if n := notices(tap.lines); len(n) != 1 {
		t.Errorf("notices given to the tap: %q", n)
	}
	tl.pass(false) // nothing new: the tap is not called
	if len(tap.d) != 2 || tap.d[0] != te.inst.DeploymentID {
		t.Errorf("tap called for %q", tap.d)
	}
}

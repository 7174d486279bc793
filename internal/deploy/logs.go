package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipwayhq/slipway/internal/store"
)

// hub wakes followers of a deployment when it changes.
type hub struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

func newHub() *hub { return &hub{chans: map[string]chan struct{}{}} }

func (h *hub) wait(id string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.chans[id]
	if !ok {
		ch = make(chan struct{})
		h.chans[id] = ch
	}
	return ch
}

func (h *hub) notify(id string) {
	h.mu.Lock()
	ch, ok := h.chans[id]
	delete(h.chans, id)
	h.mu.Unlock()
	if ok {
		close(ch)
	}
}

// eventLine is a line from Slipway itself for a deployment's log, to be
// stored with other writes (see Controller.event).
func eventLine(id, kind, format string, args ...any) store.LogLine {
	return store.LogLine{DeploymentID: id, Kind: kind, Stream: "slipway", Time: time.Now().UTC(), Text: fmt.Sprintf(format, args...)}
}

// event records a line from Slipway itself in a deployment's log.
func (c *Controller) event(id, kind, format string, args ...any) {
	c.appendEvent(eventLine(id, kind, format, args...))
}

// appendEvent stores one event line and wakes the deployment's followers.
func (c *Controller) appendEvent(line store.LogLine) {
	if err := c.store.AppendLogs(context.Background(), []store.LogLine{line}); err != nil {
		c.log.Error("writing log", "deployment", line.DeploymentID, "err", err)
	}
	c.hub.notify(line.DeploymentID)
}

// logWriter stores lines as they come: each line is persisted before the
// next is taken, so a line a follower has seen is never lost.
type logWriter struct {
	c    *Controller
	id   string
	kind string
}

func (c *Controller) newLogWriter(id, kind string) *logWriter {
	return &logWriter{c: c, id: id, kind: kind}
}

func (w *logWriter) line(t time.Time, text string) {
	l := store.LogLine{DeploymentID: w.id, Kind: w.kind, Time: t.UTC(), Text: text}
	if err := w.c.store.AppendLogs(context.Background(), []store.LogLine{l}); err != nil {
		w.c.log.Error("writing build log", "deployment", w.id, "err", err)
	}
	w.c.hub.notify(w.id)
}

// LogLimits bounds what one instance's output puts in the runtime log, so
// that an app printing as fast as it can costs the server a bounded amount
// of memory, disk and database time, and other projects notice nothing.
// Its zero value means the defaults.
type LogLimits struct {
	// LinesPerSecond and BytesPerSecond are the rates at which an
	// instance's output (stdout and stderr together) is stored. Output
	// faster than that is dropped, and one line of the runtime log says how
	// many lines and bytes were. If zero, 1,000 lines and 1 MiB per second.
	LinesPerSecond int
	BytesPerSecond int
	// Burst is how many seconds' worth of lines and bytes may be stored at
	// once after a quiet spell (a stack trace, the start of an app). If
	// zero, 10.
	Burst int
	// Keep is how many runtime log lines a deployment keeps; the oldest
	// are deleted beyond it. If zero, 100,000.
	Keep int
}

func (l LogLimits) withDefaults() LogLimits {
	if l.LinesPerSecond <= 0 {
		l.LinesPerSecond = 1000
	}
	if l.BytesPerSecond <= 0 {
		l.BytesPerSecond = 1 << 20
	}
	if l.Burst <= 0 {
		l.Burst = 10
	}
	if l.Keep <= 0 {
		l.Keep = 100_000
	}
	return l
}

// Bounds of one pass of a tailer over one file, whatever the limits.
const (
	// maxLine is the longest line stored; the rest of a longer line is
	// cut off.
	maxLine = 16 << 10
	// readChunk is the tailer's read buffer, per stream.
	readChunk = 256 << 10
	// maxScan is how much output beyond the rate limit one pass reads to
	// count the lines it drops. What lies beyond is skipped unread (its
	// bytes are counted, not its lines), so a file written faster than it
	// can be read is still caught up with at every pass.
	maxScan = 64 << 20
	// punchEvery is how much consumed output a file holds before its
	// blocks are given back to the file system.
	punchEvery = 1 << 20
	// noticeEvery is how often, at most, a long flood is reported.
	noticeEvery = 10 * time.Second
)

// tailer copies an instance's stdout and stderr files into the log table,
// remembering how far it got so a restarted server continues there.
//
// It stores output at the rates of LogLimits (a token bucket per instance)
// and drops the rest, reporting drops in one line per flood (or per
// noticeEvery of a long one). Whatever it reads is bounded per pass, and
// the part of a file it has stored (or dropped) is punched out of the file
// (FALLOC_FL_PUNCH_HOLE): the file keeps its size and offsets, and its
// disk usage stays near what is not yet read, though the app writes to it
// directly and keeps doing so while the server is down.
type tailer struct {
	c      *Controller
	d      store.Deployment // for Config.LogTap
	inst   store.Instance
	limits LogLimits
	now    func() time.Time
	scan   int64 // maxScan, but for tests
	stop   chan struct{}
	done   chan struct{}

	out, err tailStream
	buf      []byte

	// The token bucket: what may still be stored, refilled with time.
	lines, bytes float64
	filled       time.Time

	// Dropped output not yet reported, and when the first of it was.
	droppedLines, droppedBytes int64
	uncounted                  bool // some dropped bytes were skipped unread
	since                      time.Time

	sinceTrim int // lines stored since the deployment's log was last trimmed
}

// tailStream is the state of one of an instance's two files.
type tailStream struct {
	name    string // "stdout" or "stderr"
	path    string
	off     int64 // the next byte to read (persisted with the instance)
	skip    bool  // inside a line being cut or dropped: discard through the next newline
	dropped bool  // … and count what is discarded as dropped
	punched int64 // the file's blocks before this offset were given back
}

const tailInterval = 200 * time.Millisecond

func (c *Controller) newTailer(in store.Instance) *tailer {
	t := &tailer{c: c, inst: in, limits: c.cfg.Logs, now: time.Now, scan: maxScan,
		out: tailStream{name: "stdout", path: in.StdoutPath, off: in.StdoutOffset},
		err: tailStream{name: "stderr", path: in.StderrPath, off: in.StderrOffset},
	}
	t.lines, t.bytes = float64(t.limits.Burst*t.limits.LinesPerSecond), float64(t.limits.Burst*t.limits.BytesPerSecond)
	return t
}

func (l *liveDeployment) tailFrom(in store.Instance) {
	l.stopTail()
	t := l.c.newTailer(in)
	t.d = l.d
	t.stop, t.done = make(chan struct{}), make(chan struct{})
	l.mu.Lock()
	l.tail = t
	l.mu.Unlock()
	go t.run()
}

func (l *liveDeployment) stopTail() {
	l.mu.Lock()
	t := l.tail
	l.tail = nil
	l.mu.Unlock()
	if t != nil {
		close(t.stop)
		<-t.done
	}
}

// tailOnce copies what an exited instance of d left in its files.
func (c *Controller) tailOnce(d store.Deployment, in store.Instance) {
	t := c.newTailer(in)
	t.d = d
	t.pass(true)
}

func (t *tailer) run() {
	defer close(t.done)
	tick := time.NewTicker(tailInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			t.pass(true)
			return
		case <-tick.C:
			t.pass(false)
		}
	}
}

// refill adds to the token bucket what the time since the last pass earned.
func (t *tailer) refill(now time.Time) {
	if !t.filled.IsZero() {
		dt := now.Sub(t.filled).Seconds()
		if dt > 0 {
			t.lines = min(t.lines+dt*float64(t.limits.LinesPerSecond), float64(t.limits.Burst*t.limits.LinesPerSecond))
			t.bytes = min(t.bytes+dt*float64(t.limits.BytesPerSecond), float64(t.limits.Burst*t.limits.BytesPerSecond))
		}
	}
	t.filled = now
}

// take reports whether a line of n bytes may be stored, and charges it.
func (t *tailer) take(n int) bool {
	cost := float64(n + 1)
	if t.lines < 1 || t.bytes < cost {
		return false
	}
	t.lines--
	t.bytes -= cost
	return true
}

// pass reads what is new in both files. A trailing partial line is left
// for the next pass unless final is set.
func (t *tailer) pass(final bool) {
	now := t.now().UTC()
	t.refill(now)
	before := struct {
		lines, bytes int64
		uncounted    bool
		since        time.Time
		out, err     tailStream
	}{t.droppedLines, t.droppedBytes, t.uncounted, t.since, t.out, t.err}
	o := t.read(&t.out, now, final)
	e := t.read(&t.err, now, final)
	lines := append(o, e...)
	droppedNow := t.droppedBytes > before.bytes
	if droppedNow && t.since.IsZero() {
		t.since = now
	}
	// One line per flood: when it ends, or every noticeEvery while it
	// lasts.
	if t.droppedBytes > 0 && (!droppedNow || final || now.Sub(t.since) >= noticeEvery) {
		lines = append(lines, t.notice(now))
	}
	if len(lines) == 0 && t.out.off == t.inst.StdoutOffset && t.err.off == t.inst.StderrOffset {
		return
	}
	ctx := context.Background()
	if err := t.c.store.AppendLogs(ctx, lines); err != nil {
		t.c.log.Error("storing runtime logs", "instance", t.inst.ID, "err", err)
		// Read again from the stored offsets at the next pass.
		t.droppedLines, t.droppedBytes, t.uncounted, t.since = before.lines, before.bytes, before.uncounted, before.since
		t.out, t.err = before.out, before.err
		return
	}
	// The offsets move only after the lines are stored: a crash in
	// between repeats lines rather than losing them.
	if err := t.c.store.SetInstanceLogOffsets(ctx, t.inst.ID, t.out.off, t.err.off); err != nil {
		t.c.log.Error("storing log offsets", "instance", t.inst.ID, "err", err)
		return
	}
	t.inst.StdoutOffset, t.inst.StderrOffset = t.out.off, t.err.off
	t.punch(&t.out)
	t.punch(&t.err)
	if len(lines) > 0 {
		t.c.hub.notify(t.inst.DeploymentID)
		if tap := t.c.cfg.LogTap; tap != nil {
			tap.RuntimeLines(t.d, lines)
		}
	}
	t.sinceTrim += len(lines)
	if t.sinceTrim >= max(t.limits.Keep/10, 1) {
		t.sinceTrim = 0
		if _, err := t.c.store.TrimLogs(ctx, t.inst.DeploymentID, store.LogRuntime, t.limits.Keep); err != nil {
			t.c.log.Error("trimming runtime logs", "deployment", t.inst.DeploymentID, "err", err)
		}
	}
}

// notice is the line that reports the output dropped since the last one.
func (t *tailer) notice(now time.Time) store.LogLine {
	lines := fmt.Sprintf("%d lines", t.droppedLines)
	if t.uncounted {
		lines = "at least " + lines
	}
	text := fmt.Sprintf("slipway: dropped %s (%s) of this instance's output: it wrote more than %d lines or %s per second",
		lines, formatBytes(t.droppedBytes), t.limits.LinesPerSecond, formatBytes(int64(t.limits.BytesPerSecond)))
	t.droppedLines, t.droppedBytes, t.uncounted, t.since = 0, 0, false, time.Time{}
	return store.LogLine{DeploymentID: t.inst.DeploymentID, Kind: store.LogRuntime, InstanceID: t.inst.ID,
		Stream: "slipway", Time: now, Text: text}
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// read returns the lines of s's file from s.off that the bucket allows,
// counting the rest as dropped, and moves s.off past what it consumed.
func (t *tailer) read(s *tailStream, now time.Time, final bool) []store.LogLine {
	if s.path == "" {
		return nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() <= s.off {
		return nil
	}
	end := st.Size()
	if t.buf == nil {
		t.buf = make([]byte, readChunk)
	}
	var lines []store.LogLine
	keep := func(text []byte) {
		lines = append(lines, store.LogLine{DeploymentID: t.inst.DeploymentID, Kind: store.LogRuntime,
			InstanceID: t.inst.ID, Stream: s.name, Time: now, Text: string(bytes.TrimSuffix(text, []byte("\r")))})
	}
	drop := func(n int, newlines int) {
		t.droppedBytes += int64(n)
		t.droppedLines += int64(newlines)
	}
	over := false // the bucket ran dry in this pass: the rest is dropped
	scanned := int64(0)
	for s.off < end {
		if over && scanned >= t.scan {
			// Skip the rest unread; it ends inside a line unless the
			// file's last byte is a newline.
			t.droppedBytes += end - s.off
			t.uncounted = true
			last := []byte{0}
			_, err := f.ReadAt(last, end-1)
			s.off, s.skip, s.dropped = end, err != nil || last[0] != '\n', true
			break
		}
		n, err := f.ReadAt(t.buf[:min(int64(len(t.buf)), end-s.off)], s.off)
		if n == 0 {
			if err != nil && err != io.EOF {
				t.c.log.Error("reading runtime log", "instance", t.inst.ID, "err", err)
			}
			break
		}
		data := t.buf[:n]
		atEnd := s.off+int64(n) == end
		used := 0
		for used < n {
			rest := data[used:]
			i := bytes.IndexByte(rest, '\n')
			if s.skip {
				k := len(rest)
				if i >= 0 {
					k = i + 1
					s.skip = false
				}
				if s.dropped {
					drop(k, 0)
				}
				used += k
				continue
			}
			if over {
				// Drop every complete line of the chunk at once.
				j := bytes.LastIndexByte(rest, '\n')
				if j >= 0 {
					drop(j+1, bytes.Count(rest[:j+1], []byte{'\n'}))
					used += j + 1
					continue
				}
				i = -1
			}
			var text []byte
			switch {
			case i >= 0:
				text = rest[:i]
				used += i + 1
			case len(rest) >= maxLine:
				// A line too long to store whole: its start is kept and the
				// rest dropped up to its end.
				text = rest[:maxLine]
				used += maxLine
				s.skip, s.dropped = true, over
			case final && atEnd:
				text = rest
				used = n
			default:
				// A partial line: it ends in a later chunk or a later pass.
				goto next
			}
			if len(text) > maxLine {
				text = text[:maxLine]
			}
			if !over && t.take(len(text)) {
				keep(text)
				continue
			}
			over = true
			drop(len(text)+1, 1)
			s.dropped = s.skip // the rest of a cut line goes with it
		}
	next:
		if used == 0 {
			break // a partial line at the end of the file
		}
		s.off += int64(used)
		if over {
			scanned += int64(used)
		}
	}
	return lines
}

// punch gives back to the file system the blocks of s's file before its
// offset, now stored or dropped.
func (t *tailer) punch(s *tailStream) {
	upto := s.off &^ 4095
	if s.path == "" || upto-s.punched < punchEvery {
		return
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, s.punched, upto-s.punched); err != nil {
		// A file system without holes keeps its file; say so once.
		if s.punched == 0 {
			t.c.log.Warn("cannot free the read part of a log file", "path", s.path, "err", err)
		}
		s.punched = math.MaxInt64
		return
	}
	s.punched = upto
}

func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return nil
}

// Follow calls fn with each line of the deployment's build log, from the
// first, as they are written, until the deployment is RUNNING, FAILED or
// STOPPED (or ctx ends or fn fails), and returns the deployment as it was
// then.
func (c *Controller) Follow(ctx context.Context, id string, fn func(store.LogLine) error) (store.Deployment, error) {
	var after int64
	for {
		changed := c.hub.wait(id)
		d, err := c.store.GetDeployment(ctx, id)
		if err != nil {
			return d, err
		}
		for {
			lines, err := c.store.ListLogs(ctx, store.LogQuery{DeploymentID: id, Kind: store.LogBuild, After: after, Limit: 500})
			if err != nil {
				return d, err
			}
			for _, l := range lines {
				if err := fn(l); err != nil {
					return d, err
				}
				after = l.ID
			}
			if len(lines) < 500 {
				break
			}
		}
		if st := Status(d.Status); st == Running || st.Terminal() {
			return d, nil
		}
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case <-changed:
		}
	}
}

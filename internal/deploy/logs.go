package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

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

// tailer copies an instance's stdout and stderr files into the log table,
// remembering how far it got so a restarted server continues there.
type tailer struct {
	c    *Controller
	inst store.Instance
	stop chan struct{}
	done chan struct{}
}

const tailInterval = 200 * time.Millisecond

func (l *liveDeployment) tailFrom(in store.Instance) {
	l.stopTail()
	t := &tailer{c: l.c, inst: in, stop: make(chan struct{}), done: make(chan struct{})}
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

// tailOnce copies what an exited instance left in its files.
func (c *Controller) tailOnce(in store.Instance) {
	t := &tailer{c: c, inst: in}
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

// pass reads what is new in both files. A trailing partial line is left
// for the next pass unless final is set.
func (t *tailer) pass(final bool) {
	var lines []store.LogLine
	outOff, o := t.read(t.inst.StdoutPath, t.inst.StdoutOffset, "stdout", final)
	errOff, e := t.read(t.inst.StderrPath, t.inst.StderrOffset, "stderr", final)
	lines = append(o, e...)
	if len(lines) == 0 && outOff == t.inst.StdoutOffset && errOff == t.inst.StderrOffset {
		return
	}
	ctx := context.Background()
	if err := t.c.store.AppendLogs(ctx, lines); err != nil {
		t.c.log.Error("storing runtime logs", "instance", t.inst.ID, "err", err)
		return
	}
	// The offsets move only after the lines are stored: a crash in
	// between repeats lines rather than losing them.
	if err := t.c.store.SetInstanceLogOffsets(ctx, t.inst.ID, outOff, errOff); err != nil {
		t.c.log.Error("storing log offsets", "instance", t.inst.ID, "err", err)
	}
	t.inst.StdoutOffset, t.inst.StderrOffset = outOff, errOff
	if len(lines) > 0 {
		t.c.hub.notify(t.inst.DeploymentID)
	}
}

const maxLine = 16 << 10

func (t *tailer) read(path string, off int64, stream string, final bool) (int64, []store.LogLine) {
	f, err := os.Open(path)
	if err != nil {
		return off, nil
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, nil
	}
	buf, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil || len(buf) == 0 {
		return off, nil
	}
	now := time.Now().UTC()
	var lines []store.LogLine
	for len(buf) > 0 {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			if !final && len(buf) < maxLine {
				break
			}
			i = len(buf)
		}
		text := buf[:i]
		if len(text) > maxLine {
			text = text[:maxLine]
		}
		lines = append(lines, store.LogLine{DeploymentID: t.inst.DeploymentID, Kind: store.LogRuntime,
			InstanceID: t.inst.ID, Stream: stream, Time: now, Text: string(bytes.TrimSuffix(text, []byte("\r")))})
		if i == len(buf) {
			off += int64(i)
			buf = nil
		} else {
			off += int64(i) + 1
			buf = buf[i+1:]
		}
	}
	return off, lines
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

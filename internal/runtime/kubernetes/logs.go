package kubernetes

import (
	"bufio"
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/slipwayhq/slipway/internal/runtime"
)

// follow starts copying the app's output into the spec's files, one
// goroutine per stream, until the container has terminated and its log is
// read to the end, or ctx ends.
//
// The API server's timestamps are the cursor: each line written is one
// stamped after the last one written. The stamp of a file's last line is
// kept with the file, in its extended attribute cursorAttr, set before
// each batch of lines is written, so that the follower of a recovered
// instance resumes after it, even after the server was killed: it may
// miss the lines of a batch in flight, never repeats one. On a file
// system without extended attributes the file's modification time
// stands in: it is set to the stamp of the last line when a follower
// stops, but a killed server leaves the time of its last write, which
// the kernel's coarse clock may put before the stamps of the lines it
// wrote, and those are repeated.
func (d *Driver) follow(ctx context.Context, in *instance, resume bool) {
	type stream struct{ name, path string }
	streams := []stream{{corev1.LogStreamAll, in.st.Stdout}}
	if d.cfg.SplitLogStreams {
		streams = []stream{{corev1.LogStreamStdout, in.st.Stdout}, {corev1.LogStreamStderr, in.st.Stderr}}
	}
	for _, s := range streams {
		if s.path == "" {
			continue
		}
		var since time.Time
		if resume {
			since = cursor(s.path)
		}
		in.logs.Add(1)
		go func() {
			defer in.logs.Done()
			d.followStream(ctx, in.st, s.name, s.path, since)
		}()
	}
}

func (d *Driver) followStream(ctx context.Context, st state, stream, path string, since time.Time) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	last := since
	defer func() {
		f.Close()
		if !last.IsZero() && !last.Equal(since) {
			os.Chtimes(path, time.Time{}, last)
		}
	}()
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		opts := &corev1.PodLogOptions{Container: container, Follow: true, Timestamps: true}
		if stream != corev1.LogStreamAll {
			opts.Stream = &stream
		}
		if !last.IsZero() {
			// Whole seconds on the wire: lines up to last are skipped below.
			t := metav1.NewTime(last.Truncate(time.Second))
			opts.SinceTime = &t
		}
		rc, err := d.c.Pods(st.Namespace).GetLogs(st.Pod, opts).Stream(ctx)
		if err != nil && ctx.Err() == nil {
			d.cfg.Log.Debug("kubernetes: reading a pod's log", "pod", st.Namespace+"/"+st.Pod, "stream", stream, "err", err)
		}
		if err == nil {
			w := bufio.NewWriterSize(f, 32<<10)
			br := bufio.NewReaderSize(rc, 64<<10)
			for {
				text, rerr := br.ReadString('\n')
				if text != "" {
					stamp, line, ok := strings.Cut(strings.TrimSuffix(text, "\n"), " ")
					t, perr := time.Parse(time.RFC3339Nano, stamp)
					if ok && perr == nil && (last.IsZero() || t.After(last)) {
						w.WriteString(line)
						w.WriteByte('\n')
						last = t
					}
				}
				if (rerr != nil || br.Buffered() == 0) && w.Buffered() > 0 {
					setCursor(f, last)
					w.Flush()
				}
				if rerr != nil {
					break
				}
			}
			rc.Close()
			if ctx.Err() != nil {
				return
			}
			delay = 100 * time.Millisecond
		}
		// The stream ended: the container has terminated (its log is
		// complete), or the connection dropped (follow it again).
		if done, gone := d.terminated(ctx, st); gone || (done && err == nil) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// terminated reports whether the app's container has terminated, and
// whether its pod is gone.
func (d *Driver) terminated(ctx context.Context, st state) (done, gone bool) {
	pod, err := d.getPod(ctx, st.Pod, st)
	if err != nil {
		return false, errors.Is(err, runtime.ErrNotFound)
	}
	cs := appStatus(pod)
	return cs != nil && cs.State.Terminated != nil, false
}

// cursorAttr is the extended attribute of a log file that holds the
// stamp of its last line (RFC 3339, nanoseconds).
const cursorAttr = "user.slipway.log-cursor"

// setCursor records t as the stamp of f's last line.
func setCursor(f *os.File, t time.Time) {
	unix.Fsetxattr(int(f.Fd()), cursorAttr, []byte(t.UTC().Format(time.RFC3339Nano)), 0)
}

// cursor is the stamp of the last line of the file at path: its
// cursorAttr, else its modification time, else zero.
func cursor(path string) time.Time {
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(path, cursorAttr, buf); err == nil {
		if t, err := time.Parse(time.RFC3339Nano, string(buf[:n])); err == nil {
			return t
		}
	}
	if fi, err := os.Stat(path); err == nil {
		return fi.ModTime()
	}
	return time.Time{}
}

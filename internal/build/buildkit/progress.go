package buildkit

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	bkclient "github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
)

// maxPartialLine is how much of an unterminated output line is kept before
// it is emitted anyway.
const maxPartialLine = 64 * 1024

// printer turns BuildKit's SolveStatus stream into plain, timestamped log
// lines like `buildctl --progress=plain`:
//
//	#3 [build 2/4] RUN go build ./...
//	#3 go: downloading ...
//	#3 DONE 1.2s
//
// It is used from one goroutine.
type printer struct {
	log      func(time.Time, string)
	vertices map[digest.Digest]*vertex
	next     int
	failed   []*vertex // vertices that reported an error, in order
	done     int       // vertices completed, cached ones included
	cached   int       // vertices completed from the cache
}

type vertex struct {
	num      int // 0 until the header is printed
	name     string
	runcErr  string // a "runc run failed" line from the output, if any
	started  time.Time
	header   bool
	finished bool
	err      string
	partial  map[int][]byte // stream → unterminated output
	statuses map[string]bool
}

func newPrinter(log func(time.Time, string)) *printer {
	if log == nil {
		log = func(time.Time, string) {}
	}
	return &printer{log: log, vertices: map[digest.Digest]*vertex{}}
}

func (p *printer) vertex(d digest.Digest, name string) *vertex {
	v, ok := p.vertices[d]
	if !ok {
		v = &vertex{name: name, partial: map[int][]byte{}, statuses: map[string]bool{}}
		p.vertices[d] = v
	}
	if v.name == "" {
		v.name = name
	}
	return v
}

func (p *printer) emit(t time.Time, v *vertex, format string, args ...any) {
	if t.IsZero() {
		t = time.Now()
	}
	p.log(t, fmt.Sprintf("#%d ", v.num)+fmt.Sprintf(format, args...))
}

func (p *printer) ensureHeader(t time.Time, v *vertex) {
	if v.header {
		return
	}
	v.header = true
	p.next++
	v.num = p.next // numbered in the order steps start, as printed
	if v.started.IsZero() {
		v.started = t
	}
	p.emit(t, v, "%s", v.name)
}

// update handles one status message. Headers come first, then statuses and
// output, then completions, so a step's output precedes its DONE line even
// when both arrive together.
func (p *printer) update(s *bkclient.SolveStatus) {
	for _, bv := range s.Vertexes {
		v := p.vertex(bv.Digest, bv.Name)
		if bv.Started != nil {
			if !v.header {
				v.started = *bv.Started
			}
			p.ensureHeader(*bv.Started, v)
		} else if bv.Cached || bv.Completed != nil {
			t := time.Now()
			if bv.Completed != nil {
				t = *bv.Completed
			}
			p.ensureHeader(t, v)
		}
	}
	for _, st := range s.Statuses {
		v := p.vertex(st.Vertex, "")
		if st.Completed == nil || v.statuses[st.ID] {
			continue
		}
		v.statuses[st.ID] = true
		p.ensureHeader(st.Timestamp, v)
		name := st.ID
		if st.Name != "" {
			name = st.Name
		}
		size := ""
		if st.Total != 0 {
			size = fmt.Sprintf(" %s / %s", bytesString(st.Current), bytesString(st.Total))
		} else if st.Current != 0 && !strings.HasPrefix(name, "exporting") && !strings.HasPrefix(name, "pushing") {
			size = fmt.Sprintf(" %s", bytesString(st.Current))
		}
		elapsed := ""
		if st.Started != nil {
			elapsed = fmt.Sprintf(" %.1fs", st.Completed.Sub(*st.Started).Seconds())
		}
		p.emit(*st.Completed, v, "%s%s%s done", name, size, elapsed)
	}
	for _, l := range s.Logs {
		v := p.vertex(l.Vertex, "")
		p.ensureHeader(l.Timestamp, v)
		p.output(v, l)
	}
	for _, w := range s.Warnings {
		v := p.vertex(w.Vertex, "")
		t := time.Now()
		p.ensureHeader(t, v)
		p.emit(t, v, "WARN: %s", bytes.TrimSpace(w.Short))
	}
	for _, bv := range s.Vertexes {
		v := p.vertex(bv.Digest, bv.Name)
		if v.finished {
			continue
		}
		switch {
		case bv.Error != "":
			t := time.Now()
			if bv.Completed != nil {
				t = *bv.Completed
			}
			p.flush(t, v)
			v.finished = true
			v.err = bv.Error
			p.failed = append(p.failed, v)
			p.emit(t, v, "ERROR: %s", bv.Error)
		case bv.Cached:
			t := time.Now()
			if bv.Completed != nil {
				t = *bv.Completed
			}
			p.flush(t, v)
			v.finished = true
			p.done++
			p.cached++
			p.emit(t, v, "CACHED")
		case bv.Completed != nil:
			p.flush(*bv.Completed, v)
			v.finished = true
			p.done++
			start := v.started
			if bv.Started != nil {
				start = *bv.Started
			}
			p.emit(*bv.Completed, v, "DONE %.1fs", bv.Completed.Sub(start).Seconds())
		}
	}
}

// output splits a chunk of a vertex's output into lines, keeping an
// unterminated last line until it is completed.
func (p *printer) output(v *vertex, l *bkclient.VertexLog) {
	buf := append(v.partial[l.Stream], l.Data...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		p.line(l.Timestamp, v, buf[:i])
		buf = buf[i+1:]
	}
	if len(buf) >= maxPartialLine {
		p.line(l.Timestamp, v, buf)
		buf = nil
	}
	if len(buf) == 0 {
		delete(v.partial, l.Stream)
		return
	}
	v.partial[l.Stream] = bytes.Clone(buf)
}

func (p *printer) line(t time.Time, v *vertex, b []byte) {
	b = bytes.TrimRight(b, "\r")
	// A progress bar redraws its line with \r: keep what was drawn last.
	if i := bytes.LastIndexByte(b, '\r'); i >= 0 {
		b = b[i+1:]
	}
	if bytes.HasPrefix(b, []byte("runc run failed: ")) {
		v.runcErr = string(b)
	}
	p.emit(t, v, "%s", b)
}

// flush emits a vertex's unterminated output lines.
func (p *printer) flush(t time.Time, v *vertex) {
	for stream, b := range v.partial {
		p.line(t, v, b)
		delete(v.partial, stream)
	}
}

// finish emits all output still buffered when the stream ends.
func (p *printer) finish() {
	for _, v := range p.vertices {
		if len(v.partial) > 0 {
			p.flush(time.Now(), v)
		}
	}
}

func bytesString(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f%cB", float64(n)/float64(div), "kMGTPE"[exp])
}

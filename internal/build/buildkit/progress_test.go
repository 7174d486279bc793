package buildkit

import (
	"strings"
	"testing"
	"time"

	bkclient "github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
)

func TestPrinter(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(ms int) *time.Time { x := t0.Add(time.Duration(ms) * time.Millisecond); return &x }
	run, cp, exp := digest.FromString("run"), digest.FromString("copy"), digest.FromString("export")

	var lines []string
	var stamps []time.Time
	p := newPrinter(func(ts time.Time, l string) { lines = append(lines, l); stamps = append(stamps, ts) })
	for _, s := range []*bkclient.SolveStatus{
		// Announced before started: no output yet.
		{Vertexes: []*bkclient.Vertex{{Digest: run, Name: "[build 2/2] RUN make"}, {Digest: cp, Name: "[build 1/2] COPY . ."}}},
		{Vertexes: []*bkclient.Vertex{{Digest: cp, Name: "[build 1/2] COPY . .", Started: at(0), Completed: at(1), Cached: true}}},
		{Vertexes: []*bkclient.Vertex{{Digest: run, Name: "[build 2/2] RUN make", Started: at(10)}}},
		// Output in chunks that split lines, on two streams, with \r\n and
		// a progress bar redrawn with \r.
		{Logs: []*bkclient.VertexLog{
			{Vertex: run, Stream: 1, Data: []byte("compil"), Timestamp: *at(20)},
			{Vertex: run, Stream: 2, Data: []byte("warning: x\r\n"), Timestamp: *at(21)},
			{Vertex: run, Stream: 1, Data: []byte("ing\nlink"), Timestamp: *at(22)},
		}},
		{Logs: []*bkclient.VertexLog{{Vertex: run, Stream: 1, Data: []byte("ing\n10%\r50%\r100%\ntail without newline"), Timestamp: *at(30)}},
			// The completion arrives with the last output.
			Vertexes: []*bkclient.Vertex{{Digest: run, Name: "[build 2/2] RUN make", Started: at(10), Completed: at(1510)}}},
		{Vertexes: []*bkclient.Vertex{{Digest: exp, Name: "exporting to image", Started: at(1600)}}},
		{Statuses: []*bkclient.VertexStatus{{ID: "pushing layers", Vertex: exp, Started: at(1600), Timestamp: *at(1700)}}},
		{Statuses: []*bkclient.VertexStatus{{ID: "pushing layers", Vertex: exp, Started: at(1600), Completed: at(1800), Timestamp: *at(1800)}}},
		{Vertexes: []*bkclient.Vertex{{Digest: exp, Name: "exporting to image", Started: at(1600), Completed: at(1900), Error: "failed to push: 401 Unauthorized"}}},
	} {
		p.update(s)
	}
	p.finish()

	want := []string{
		"#1 [build 1/2] COPY . .",
		"#1 CACHED",
		"#2 [build 2/2] RUN make",
		"#2 warning: x",
		"#2 compiling",
		"#2 linking",
		"#2 100%",
		"#2 tail without newline",
		"#2 DONE 1.5s",
		"#3 exporting to image",
		"#3 pushing layers 0.2s done",
		"#3 ERROR: failed to push: 401 Unauthorized",
	}
	if got := strings.Join(lines, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\n\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if len(stamps) == len(want) {
		if !stamps[2].Equal(*at(10)) || !stamps[4].Equal(*at(22)) || !stamps[8].Equal(*at(1510)) {
			t.Errorf("timestamps not taken from BuildKit's events: %v", stamps)
		}
	}
	if len(p.failed) != 1 || p.failed[0].name != "exporting to image" {
		t.Errorf("failed = %v", p.failed)
	}
	// COPY came from the cache, RUN ran, the export failed.
	if p.done != 2 || p.cached != 1 {
		t.Errorf("done %d, cached %d; want 2 steps done, 1 from the cache", p.done, p.cached)
	}
}

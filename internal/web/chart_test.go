package web

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/internal/store"
)

// svgDoc parses an SVG and counts its elements by name and class.
type svgDoc struct {
	elements map[string]int // "path.chart-line", "text", …
	texts    []string
	root     string
}

func parseSVG(t *testing.T, svg string) svgDoc {
	t.Helper()
	d := svgDoc{elements: map[string]int{}}
	dec := xml.NewDecoder(strings.NewReader(svg))
	depth := 0
	inText := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				if d.root != "" {
					t.Fatalf("more than one root element in\n%s", svg)
				}
				d.root = el.Name.Local
				if el.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", el.Name.Space)
				}
			}
			depth++
			d.elements[el.Name.Local]++
			for _, a := range el.Attr {
				if a.Name.Local == "class" {
					for _, c := range strings.Fields(a.Value) {
						d.elements[el.Name.Local+"."+c]++
					}
				}
				if a.Name.Local == "style" || strings.HasPrefix(a.Name.Local, "on") {
					t.Errorf("attribute %s on %s: the page's CSP refuses inline styles and handlers", a.Name.Local, el.Name.Local)
				}
			}
			inText = el.Name.Local == "text"
		case xml.EndElement:
			depth--
			inText = false
		case xml.CharData:
			if inText {
				d.texts = append(d.texts, string(el))
			}
		}
	}
	if d.root != "svg" || depth != 0 {
		t.Fatalf("root %q, depth %d at the end", d.root, depth)
	}
	return d
}

func vals(xs ...float64) []*float64 {
	out := make([]*float64, len(xs))
	for i, x := range xs {
		if x >= 0 {
			out[i] = ptr(x)
		}
	}
	return out
}

func TestChartSVG(t *testing.T) {
	base := chart{ID: "c", Title: "Requests", Unit: unitRate, Step: 10 * time.Second, Span: time.Hour}
	for _, c := range []struct {
		name            string
		lines           []chartLine
		paths, dots     int
		empty           bool
		wantTexts       []string
		wantNotInTitles string
	}{
		{name: "no points", lines: nil, empty: true, wantTexts: []string{"No data yet", "now", "−60m", "0"}},
		{name: "all gaps", lines: []chartLine{{Class: "req", Values: vals(-1, -1, -1)}}, empty: true},
		{name: "one point", lines: []chartLine{{Class: "req", Values: vals(3)}}, dots: 1},
		{name: "a line with a gap and a lone point", lines: []chartLine{{Class: "req", Area: true, Values: vals(1, 2, -1, 4, -1, 0.5, 7)}},
			paths: 1 + 1, dots: 1, wantTexts: []string{"8"}}, // line+area of [1,2]; lone 4; line+area of [0.5,7]: top rounds to 8
		{name: "two lines", lines: []chartLine{{Class: "p95", Values: vals(0.2, 0.3)}, {Class: "p50", Values: vals(0.05, 0.1)}}, paths: 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := base
			ch.Lines = c.lines
			d := parseSVG(t, string(ch.SVG()))
			if d.elements["title"] != 1 {
				t.Errorf("%d titles, want 1 (for screen readers)", d.elements["title"])
			}
			if d.elements["line.chart-axis"] != 1 || d.elements["line"] < 3 {
				t.Errorf("axis %d, grid lines %d: want an x axis and a grid", d.elements["line.chart-axis"], d.elements["line"])
			}
			if got := d.elements["text.chart-empty"] == 1; got != c.empty {
				t.Errorf("empty notice shown: %v, want %v", got, c.empty)
			}
			lines := d.elements["path.chart-line"]
			if c.name == "a line with a gap and a lone point" {
				if lines != 2 || d.elements["path.chart-area"] != 2 {
					t.Errorf("%d line paths, %d areas; want 2 and 2", lines, d.elements["path.chart-area"])
				}
			} else if lines != c.paths {
				t.Errorf("%d line paths, want %d", lines, c.paths)
			}
			if d.elements["circle.chart-dot"] != c.dots {
				t.Errorf("%d dots, want %d", d.elements["circle.chart-dot"], c.dots)
			}
			all := strings.Join(d.texts, "|")
			for _, w := range c.wantTexts {
				if !strings.Contains("|"+all+"|", "|"+w+"|") {
					t.Errorf("labels %q lack %q", all, w)
				}
			}
		})
	}
}

func TestChartAxes(t *testing.T) {
	day := chart{ID: "m", Unit: unitBytes, Span: 24 * time.Hour, Lines: []chartLine{{Class: "mem", Values: vals(30<<20, 90<<20)}}}
	d := parseSVG(t, string(day.SVG()))
	all := "|" + strings.Join(d.texts, "|") + "|"
	for _, w := range []string{"|−24h|", "|−12h|", "|now|", "MiB|", "|0|"} {
		if !strings.Contains(all, w) {
			t.Errorf("day memory labels %q lack %q", all, w)
		}
	}
	week := chart{ID: "w", Unit: unitPercent, Span: 7 * 24 * time.Hour, Lines: []chartLine{{Class: "err", Values: vals(0, 0.5)}}}
	d = parseSVG(t, string(week.SVG()))
	all = "|" + strings.Join(d.texts, "|") + "|"
	for _, w := range []string{"|−7d|", "|−1d|", "|20%|", "|60%|"} {
		if !strings.Contains(all, w) {
			t.Errorf("week error labels %q lack %q", all, w)
		}
	}
	for _, c := range []struct {
		u    unit
		v    float64
		want string
	}{
		{unitRate, 0.25, "0.25/s"}, {unitRate, 12345, "12.3k/s"}, {unitPercent, 0.015, "1.5%"},
		{unitSeconds, 0.0125, "12.5 ms"}, {unitSeconds, 2.5, "2.5 s"}, {unitBytes, 64 << 20, "64 MiB"},
		{unitBytes, 1536, "1.5 KiB"}, {unitCores, 0.5, "0.5 CPU"},
	} {
		if got := c.u.format(c.v); got != c.want {
			t.Errorf("format(%v) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestParseSteps(t *testing.T) {
	var lines []store.LogLine
	for _, s := range []string{"#1 [internal] load build definition", "#1 DONE 0.0s", "#2 [1/3] FROM debian", "#3 [2/3] COPY . .",
		"#2 CACHED", "#3 copying", "#3 DONE 1.5s", "#4 [3/3] RUN make", "#4 compiling", "status BUILDING → DEPLOYING", "#5 exporting", "#5 ERROR: failed to push"} {
		l := store.LogLine{Text: s}
		if strings.HasPrefix(s, "status") {
			l.Stream = "slipway"
		}
		lines = append(lines, l)
	}
	got := parseSteps(lines)
	want := []buildStep{{1, "[internal] load build definition", "done", "0.0s"}, {2, "[1/3] FROM debian", "cached", ""},
		{3, "[2/3] COPY . .", "done", "1.5s"}, {4, "[3/3] RUN make", "running", ""}, {5, "exporting", "failed", ""}}
	if len(got) != len(want) {
		t.Fatalf("steps %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if got.Done() != 3 {
		t.Errorf("Done() = %d, want 3", got.Done())
	}
}

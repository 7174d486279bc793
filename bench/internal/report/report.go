// Package report writes a benchmark's results: a Markdown section for
// BENCHMARKS.md and the raw numbers as JSON.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Section is a Markdown section being written.
type Section struct {
	b strings.Builder
}

// Heading starts the section.
func (s *Section) Heading(title string) { fmt.Fprintf(&s.b, "## %s\n\n", title) }

// Sub adds a sub-heading.
func (s *Section) Sub(title string) { fmt.Fprintf(&s.b, "### %s\n\n", title) }

// P adds a paragraph.
func (s *Section) P(format string, args ...any) {
	fmt.Fprintf(&s.b, format, args...)
	s.b.WriteString("\n\n")
}

// Table adds a table; the first row is the header.
func (s *Section) Table(rows [][]string) {
	if len(rows) == 0 {
		return
	}
	line := func(cells []string) {
		s.b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	line(rows[0])
	sep := make([]string, len(rows[0]))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range rows[1:] {
		line(r)
	}
	s.b.WriteString("\n")
}

// Code adds a fenced block.
func (s *Section) Code(text string) {
	fmt.Fprintf(&s.b, "```\n%s\n```\n\n", strings.TrimRight(text, "\n"))
}

// String returns the Markdown.
func (s *Section) String() string { return s.b.String() }

// Write writes the section to mdPath and v as JSON to jsonPath; empty
// paths are skipped (the section then goes to stdout).
func (s *Section) Write(mdPath, jsonPath string, v any) error {
	if mdPath == "" {
		fmt.Print(s.String())
	} else if err := os.WriteFile(mdPath, []byte(s.String()), 0o644); err != nil {
		return err
	}
	if jsonPath != "" {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(jsonPath, append(b, '\n'), 0o644)
	}
	return nil
}

// LoadAvg returns the first three fields of /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// MiB formats bytes in MiB.
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

package plan

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// pyproject is what plans use of a pyproject.toml.
//
// TOML is parsed with github.com/BurntSushi/toml: TOML 1.0, no
// dependencies of its own, maintained for over a decade, and its errors
// carry the line and column, which is what users need from us.
type pyproject struct {
	Project struct {
		Name           string   `toml:"name"`
		RequiresPython string   `toml:"requires-python"`
		Dependencies   []string `toml:"dependencies"`
	} `toml:"project"`
	Tool struct {
		Poetry *struct {
			Dependencies map[string]any `toml:"dependencies"`
		} `toml:"poetry"`
		UV struct {
			Workspace *struct {
				Members []string `toml:"members"`
			} `toml:"workspace"`
		} `toml:"uv"`
	} `toml:"tool"`

	data []byte // the file, to find lines in
}

var tomlLine = regexp.MustCompile(`^toml: line (\d+)(?: \(last key "[^"]*"\))?: (.*)$`)

// parsePyproject parses a pyproject.toml. Errors are *Error with the line
// and, for syntax errors, the column (File unset).
func parsePyproject(data []byte) (*pyproject, error) {
	var pp pyproject
	if _, err := toml.Decode(string(data), &pp); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			// The position of the offending byte; the parser's line is one
			// too far when that byte is a line break.
			line, col := position(data, int64(pe.Position.Start)+1)
			return nil, &Error{Line: line, Column: col, Message: "invalid TOML: " + pe.Message}
		}
		if m := tomlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, &Error{Line: line, Message: "unexpected value: " + m[2]}
		}
		return nil, &Error{Message: "invalid TOML: " + strings.TrimPrefix(err.Error(), "toml: ")}
	}
	pp.data = data
	return &pp, nil
}

// poetryPython is the python constraint of [tool.poetry.dependencies].
func (pp *pyproject) poetryPython() string {
	if pp.Tool.Poetry == nil {
		return ""
	}
	s, _ := pp.Tool.Poetry.Dependencies["python"].(string)
	return s
}

// pyDep is a dependency and where it is declared.
type pyDep struct {
	name  string // normalised (PEP 503)
	extra []string
	file  string
	line  int
}

var (
	pyReqName  = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?`)
	pyNormRe   = regexp.MustCompile(`[-_.]+`)
	pyEggName  = regexp.MustCompile(`[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)`)
	pyLocalReq = regexp.MustCompile(`^(?:\.{1,2}(?:/|$)|/|file:)`)
)

// pyNormalize is a distribution name normalised as PEP 503 says.
func pyNormalize(name string) string {
	return strings.ToLower(pyNormRe.ReplaceAllString(name, "-"))
}

// parsePEP508 returns the name and extras of a requirement such as
// "uvicorn[standard]>=0.30; python_version>'3.8'". ok is false when the
// string names no distribution.
func parsePEP508(s string) (name string, extras []string, ok bool) {
	s = strings.TrimSpace(s)
	m := pyReqName.FindStringSubmatch(s)
	if m == nil {
		if e := pyEggName.FindStringSubmatch(s); e != nil {
			return pyNormalize(e[1]), nil, true
		}
		return "", nil, false
	}
	for _, x := range strings.Split(m[2], ",") {
		if x = strings.TrimSpace(x); x != "" {
			extras = append(extras, pyNormalize(x))
		}
	}
	return pyNormalize(m[1]), extras, true
}

// requirements is what plans use of a pip requirements file and the files
// it includes.
type requirements struct {
	deps []pyDep
	// files are the requirement and constraint files read, the first one
	// included, relative to the project root.
	files []string
	// local is set when a requirement is a path in the tree (".", "-e .",
	// "./pkg"), so the install needs the whole tree.
	local bool
}

// parseRequirements parses requirement file name (relative to the project
// root) and those it includes with -r/-c, following at most depth levels.
// Unknown options and lines are ignored, as pip would reject them later.
func parseRequirements(data []byte, name string, read func(string) ([]byte, bool, error), depth int) (*requirements, error) {
	rq := &requirements{files: []string{name}}
	seen := map[string]bool{name: true}
	var parse func(data []byte, name string, depth int) error
	parse = func(data []byte, name string, depth int) error {
		for _, raw := range joinContinuations(data) {
			line := strings.TrimSpace(stripComment(raw.text))
			if line == "" {
				continue
			}
			lineNo := raw.line
			if strings.HasPrefix(line, "-") {
				opt, arg := splitOption(line)
				switch opt {
				case "-r", "--requirement", "-c", "--constraint":
					if arg == "" || depth <= 0 || strings.Contains(arg, "://") {
						continue
					}
					inc := path.Clean(path.Join(path.Dir(name), arg))
					if inc == ".." || strings.HasPrefix(inc, "../") || seen[inc] {
						continue
					}
					seen[inc] = true
					b, ok, err := read(inc)
					if err != nil {
						return err
					}
					if !ok {
						return &Error{File: name, Line: lineNo, Message: fmt.Sprintf("included file %s does not exist", arg)}
					}
					rq.files = append(rq.files, inc)
					if err := parse(b, inc, depth-1); err != nil {
						return err
					}
				case "-e", "--editable":
					if pyLocalReq.MatchString(arg) {
						rq.local = true
					} else if n, ex, ok := parsePEP508(arg); ok && !strings.Contains(arg, "://") {
						rq.deps = append(rq.deps, pyDep{name: n, extra: ex, file: name, line: lineNo})
					} else if e := pyEggName.FindStringSubmatch(arg); e != nil {
						rq.deps = append(rq.deps, pyDep{name: pyNormalize(e[1]), file: name, line: lineNo})
					}
				}
				continue
			}
			if pyLocalReq.MatchString(line) {
				rq.local = true
				continue
			}
			if strings.Contains(line, "://") && !strings.Contains(line, "@") {
				if e := pyEggName.FindStringSubmatch(line); e != nil {
					rq.deps = append(rq.deps, pyDep{name: pyNormalize(e[1]), file: name, line: lineNo})
				}
				continue
			}
			if n, ex, ok := parsePEP508(line); ok {
				rq.deps = append(rq.deps, pyDep{name: n, extra: ex, file: name, line: lineNo})
			}
		}
		return nil
	}
	if err := parse(data, name, depth); err != nil {
		return nil, err
	}
	return rq, nil
}

type numberedLine struct {
	text string
	line int
}

// joinContinuations splits data into logical lines, joining those that end
// in a backslash, each numbered by the line it starts on.
func joinContinuations(data []byte) []numberedLine {
	var out []numberedLine
	var cur strings.Builder
	start := 0
	for i, l := range bytes.Split(data, []byte("\n")) {
		s := strings.TrimSuffix(string(l), "\r")
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(s, `\`) {
			cur.WriteString(strings.TrimSuffix(s, `\`))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(s)
		out = append(out, numberedLine{cur.String(), start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, numberedLine{cur.String(), start})
	}
	return out
}

// stripComment removes a "#" comment: at the start of the line or after
// whitespace (a "#" inside a URL fragment stays).
func stripComment(s string) string {
	if strings.HasPrefix(s, "#") {
		return ""
	}
	if i := strings.Index(s, " #"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "\t#"); i >= 0 {
		s = s[:i]
	}
	return s
}

// splitOption splits "-r file", "-rfile" and "--requirement=file".
func splitOption(line string) (opt, arg string) {
	if strings.HasPrefix(line, "--") {
		opt, arg, _ = strings.Cut(line, "=")
		if o, a, ok := strings.Cut(opt, " "); ok {
			opt, arg = o, a
		}
		return opt, strings.TrimSpace(arg)
	}
	if len(line) > 2 {
		return line[:2], strings.TrimSpace(line[2:])
	}
	return line, ""
}

// lineOf returns the first line (from 1) of data that contains needle
// outside a comment, or 0.
func lineOf(data []byte, needle string) int {
	for i, l := range bytes.Split(data, []byte("\n")) {
		s := string(l)
		if j := strings.Index(s, "#"); j >= 0 {
			s = s[:j]
		}
		if strings.Contains(s, needle) {
			return i + 1
		}
	}
	return 0
}

// pyprojectDeps lists the main dependencies a pyproject.toml declares:
// [project].dependencies and the keys of [tool.poetry.dependencies].
func pyprojectDeps(pp *pyproject, file string) []pyDep {
	var deps []pyDep
	for _, d := range pp.Project.Dependencies {
		if n, ex, ok := parsePEP508(d); ok {
			raw := strings.TrimSpace(d)
			if m := pyReqName.FindStringSubmatch(raw); m != nil {
				raw = m[1]
			}
			deps = append(deps, pyDep{name: n, extra: ex, file: file, line: quotedLine(pp.data, raw)})
		}
	}
	if pp.Tool.Poetry != nil {
		for k, v := range pp.Tool.Poetry.Dependencies {
			if strings.EqualFold(k, "python") {
				continue
			}
			d := pyDep{name: pyNormalize(k), file: file}
			if t, ok := v.(map[string]any); ok {
				if ex, ok := t["extras"].([]any); ok {
					for _, e := range ex {
						if s, ok := e.(string); ok {
							d.extra = append(d.extra, pyNormalize(s))
						}
					}
				}
			}
			d.line = poetryDepLine(pp.data, k)
			deps = append(deps, d)
		}
	}
	return deps
}

// quotedLine is the line of the first string in data that starts with s.
func quotedLine(data []byte, s string) int {
	for _, q := range []string{`"`, `'`} {
		if l := lineOf(data, q+s); l > 0 {
			return l
		}
	}
	return 0
}

// poetryDepLine finds the line of key in [tool.poetry.dependencies].
func poetryDepLine(data []byte, key string) int {
	in := false
	for i, l := range bytes.Split(data, []byte("\n")) {
		s := strings.TrimSpace(string(l))
		if strings.HasPrefix(s, "[") {
			in = s == "[tool.poetry.dependencies]"
			continue
		}
		if in {
			k, _, ok := strings.Cut(s, "=")
			if ok && strings.EqualFold(strings.Trim(strings.TrimSpace(k), `"'`), key) {
				return i + 1
			}
		}
	}
	return 0
}

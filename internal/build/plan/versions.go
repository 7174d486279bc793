package plan

import (
	"regexp"
	"strconv"
	"strings"
)

// Version constraints are evaluated just far enough to pick a base image:
// which of a few supported major (Node) or major.minor (Python) lines a
// constraint admits. A line is admitted when some release in it satisfies
// the constraint; that is tested on the line's first release, a late
// release, and every version the constraint names that falls in the line.

// rangeStyle selects the few places where Python's and npm's constraint
// languages differ.
type rangeStyle int

const (
	stylePython rangeStyle = iota // PEP 440, plus Poetry's ^, ~ and ||
	styleNode                     // node-semver
)

type version [3]int

func (a version) cmp(b version) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

var (
	constraintRe = regexp.MustCompile(`(===|==|!=|~=|<=|>=|<|>|\^|~|=)?\s*v?([0-9]+(?:\.(?:[0-9]+|[xX*]))*(?:\.[xX*])?|[xX*])`)
	hyphenRe     = regexp.MustCompile(`^\s*v?([0-9][0-9.xX*]*)\s+-\s+v?([0-9][0-9.xX*]*)\s*$`)
)

// parseParts parses "3.11", "20.x", "3.11.*" into its numeric parts; wild
// reports a trailing wildcard (or a lone "*").
func parseParts(s string) (parts []int, wild bool) {
	for _, p := range strings.Split(s, ".") {
		if p == "x" || p == "X" || p == "*" || p == "" {
			return parts, true
		}
		n, err := strconv.Atoi(p)
		if err != nil || n > 1<<20 {
			return parts, true
		}
		parts = append(parts, n)
		if len(parts) == 3 {
			break
		}
	}
	return parts, false
}

func pad(parts []int) version {
	var v version
	copy(v[:], parts)
	return v
}

func hasPrefix(v version, parts []int) bool {
	for i, p := range parts {
		if i >= 3 || v[i] != p {
			return false
		}
	}
	return true
}

// bump is the first version after every release that has prefix parts:
// bump([3 11]) = 3.12.0.
func bump(parts []int) version {
	if len(parts) == 0 {
		return version{1 << 30}
	}
	v := pad(parts[:len(parts)-1])
	v[len(parts)-1] = parts[len(parts)-1] + 1
	return v
}

type clause struct {
	op    string
	parts []int
	wild  bool
}

func (c clause) admits(v version, style rangeStyle) bool {
	p := pad(c.parts)
	switch c.op {
	case "", "=":
		return hasPrefix(v, c.parts)
	case "==":
		if c.wild {
			return hasPrefix(v, c.parts)
		}
		return v.cmp(p) == 0
	case "===":
		return v.cmp(p) == 0
	case "!=":
		if c.wild {
			return !hasPrefix(v, c.parts)
		}
		return v.cmp(p) != 0
	case ">=":
		return v.cmp(p) >= 0
	case "<":
		return v.cmp(p) < 0
	case ">":
		if style == styleNode && len(c.parts) < 3 {
			return v.cmp(bump(c.parts)) >= 0
		}
		return v.cmp(p) > 0
	case "<=":
		if (style == styleNode && len(c.parts) < 3) || c.wild {
			return v.cmp(bump(c.parts)) < 0
		}
		return v.cmp(p) <= 0
	case "~=":
		if len(c.parts) < 2 {
			return v.cmp(p) >= 0
		}
		return v.cmp(p) >= 0 && hasPrefix(v, c.parts[:len(c.parts)-1])
	case "~":
		n := min(len(c.parts), 2)
		return v.cmp(p) >= 0 && hasPrefix(v, c.parts[:n])
	case "^":
		// The first non-zero part may not change.
		i := 0
		for i < len(c.parts)-1 && c.parts[i] == 0 {
			i++
		}
		return v.cmp(p) >= 0 && (len(c.parts) == 0 || v.cmp(bump(c.parts[:i+1])) < 0)
	}
	return false
}

// constraint is a parsed version constraint: alternatives ("||") of
// conjunctions.
type constraint struct {
	alts  [][]clause
	named []version // every version the constraint names
}

func parseConstraint(s string, style rangeStyle) constraint {
	var c constraint
	for _, alt := range strings.Split(s, "||") {
		var cl []clause
		if m := hyphenRe.FindStringSubmatch(alt); m != nil && style == styleNode {
			lo, _ := parseParts(m[1])
			hi, hw := parseParts(m[2])
			op := "<="
			if hw || len(hi) < 3 {
				op = "<"
				b := bump(hi)
				hi = b[:max(len(hi), 1)]
			}
			cl = append(cl, clause{op: ">=", parts: lo}, clause{op: op, parts: hi})
			c.named = append(c.named, pad(lo))
		} else {
			for _, m := range constraintRe.FindAllStringSubmatch(alt, -1) {
				parts, wild := parseParts(m[2])
				if len(parts) == 0 {
					continue // "*": any
				}
				cl = append(cl, clause{op: m[1], parts: parts, wild: wild})
				c.named = append(c.named, pad(parts))
			}
		}
		c.alts = append(c.alts, cl)
	}
	return c
}

func (c constraint) satisfiedBy(v version, style rangeStyle) bool {
	for _, alt := range c.alts {
		ok := true
		for _, cl := range alt {
			if !cl.admits(v, style) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// admitsLine reports whether some release with prefix line (major, or
// major and minor) satisfies c.
func (c constraint) admitsLine(line []int, style rangeStyle) bool {
	late := pad(line)
	late[len(line)] = 9999 // a late release of the line
	probes := []version{pad(line), late}
	for _, v := range c.named {
		if hasPrefix(v, line) {
			probes = append(probes, v)
		}
	}
	for _, v := range probes {
		if c.satisfiedBy(v, style) {
			return true
		}
	}
	return false
}

// pickLine chooses among supported lines (oldest first) the one to use for
// constraint s: def when admitted, else the newest admitted. ok is false
// when none is admitted.
func pickLine(s string, style rangeStyle, supported [][]int, def []int) (line []int, ok bool) {
	c := parseConstraint(s, style)
	if c.admitsLine(def, style) {
		return def, true
	}
	for i := len(supported) - 1; i >= 0; i-- {
		if c.admitsLine(supported[i], style) {
			return supported[i], true
		}
	}
	return nil, false
}

func joinParts(parts []int) string {
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ".")
}

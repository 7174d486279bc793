package source

import (
	"strings"
)

// This file implements gitignore(5) pattern matching: blank lines and #
// comments, ! negation, a leading / (or any inner /) anchoring the pattern
// to the directory of the file that holds it, a trailing / matching
// directories only, *, ?, [...] classes (ranges, ! or ^ negation, POSIX
// [:name:] classes), \ escapes, and ** in its three forms (leading "**/",
// trailing "/**", inner "/**/"). Matching is byte-wise and case-sensitive,
// as git does on Linux.

// ignoreRule is one parsed pattern line.
type ignoreRule struct {
	base     string // directory holding the ignore file, relative to the tree root; "" for the root
	negate   bool   // "!pattern": re-include
	dirOnly  bool   // "pattern/": directories only
	anchored bool   // pattern holds a '/': match the path relative to base, not just the name
	toks     []token
	invalid  bool // pattern can never match (unterminated [ or trailing \), as in git
}

type tokKind uint8

const (
	tLit     tokKind = iota // one literal byte
	tAny                    // ?: one byte except '/'
	tClass                  // [...]: one byte except '/'
	tStar                   // *: any run of bytes without '/'
	tAll                    // trailing **: anything, '/' included
	tDirStar                // "**/": zero or more whole directories ("", "a/", "a/b/")
)

type token struct {
	kind  tokKind
	b     byte
	class *byteClass
}

// byteClass is a bracket expression as a 256-bit set.
type byteClass struct {
	set [4]uint64
	neg bool
}

func (c *byteClass) add(b byte)        { c.set[b>>6] |= 1 << (b & 63) }
func (c *byteClass) has(b byte) bool   { return c.set[b>>6]&(1<<(b&63)) != 0 }
func (c *byteClass) match(b byte) bool { return c.has(b) != c.neg }

// parseIgnore parses the content of an ignore file found in directory base
// (slash-separated, relative to the tree root, "" for the root).
func parseIgnore(base, content string) []ignoreRule {
	content = strings.TrimPrefix(content, "\ufeff")
	var rules []ignoreRule
	for line := range strings.SplitSeq(content, "\n") {
		if r, ok := parseIgnoreLine(base, line); ok {
			rules = append(rules, r)
		}
	}
	return rules
}

// parseIgnoreLine parses one line; ok is false for blank lines and comments.
func parseIgnoreLine(base, line string) (ignoreRule, bool) {
	line = strings.TrimSuffix(line, "\r")
	line = trimTrailingSpaces(line)
	if line == "" || line[0] == '#' {
		return ignoreRule{}, false
	}
	r := ignoreRule{base: base}
	if line[0] == '!' {
		r.negate = true
		line = line[1:]
	}
	if strings.HasSuffix(line, "/") {
		r.dirOnly = true
		line = line[:len(line)-1]
	}
	if line == "" {
		return ignoreRule{}, false
	}
	if strings.Contains(line, "/") {
		r.anchored = true
		line = strings.TrimPrefix(line, "/")
		if line == "" {
			return ignoreRule{}, false
		}
	}
	r.toks, r.invalid = compilePattern(line)
	return r, true
}

// trimTrailingSpaces removes unescaped trailing spaces ("foo\ " keeps one).
func trimTrailingSpaces(s string) string {
	end := len(s)
	for end > 0 && s[end-1] == ' ' {
		if end >= 2 && s[end-2] == '\\' {
			break
		}
		end--
	}
	return s[:end]
}

// compilePattern turns a pattern (without !, leading or trailing /) into
// tokens. invalid reports a pattern git would never match.
func compilePattern(p string) (toks []token, invalid bool) {
	for i := 0; i < len(p); {
		switch c := p[i]; c {
		case '\\':
			if i+1 >= len(p) {
				return nil, true
			}
			toks = append(toks, token{kind: tLit, b: p[i+1]})
			i += 2
		case '?':
			toks = append(toks, token{kind: tAny})
			i++
		case '[':
			cls, n, ok := parseClass(p[i:])
			if !ok {
				return nil, true
			}
			toks = append(toks, token{kind: tClass, class: cls})
			i += n
		case '*':
			j := i
			for j < len(p) && p[j] == '*' {
				j++
			}
			atStart := i == 0 || p[i-1] == '/'
			switch {
			case j-i >= 2 && atStart && j == len(p):
				toks = append(toks, token{kind: tAll})
			case j-i >= 2 && atStart && p[j] == '/':
				toks = append(toks, token{kind: tDirStar})
				j++ // the '/' is part of the token
			default:
				toks = append(toks, token{kind: tStar})
			}
			i = j
		default:
			toks = append(toks, token{kind: tLit, b: c})
			i++
		}
	}
	return toks, false
}

var posixClasses = map[string]func(byte) bool{
	"alnum":  func(b byte) bool { return isAlpha(b) || isDigit(b) },
	"alpha":  isAlpha,
	"blank":  func(b byte) bool { return b == ' ' || b == '\t' },
	"cntrl":  func(b byte) bool { return b < 0x20 || b == 0x7f },
	"digit":  isDigit,
	"graph":  func(b byte) bool { return b > 0x20 && b < 0x7f },
	"lower":  func(b byte) bool { return b >= 'a' && b <= 'z' },
	"print":  func(b byte) bool { return b >= 0x20 && b < 0x7f },
	"punct":  func(b byte) bool { return b > 0x20 && b < 0x7f && !isAlpha(b) && !isDigit(b) },
	"space":  func(b byte) bool { return b == ' ' || (b >= '\t' && b <= '\r') },
	"upper":  func(b byte) bool { return b >= 'A' && b <= 'Z' },
	"xdigit": func(b byte) bool { return isDigit(b) || (b|0x20 >= 'a' && b|0x20 <= 'f') },
}

func isAlpha(b byte) bool { return b|0x20 >= 'a' && b|0x20 <= 'z' }
func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// parseClass parses a bracket expression at the start of p ("[...]") and
// returns it with the number of bytes it spans; ok is false when it is not
// terminated or names an unknown [:class:].
func parseClass(p string) (cls *byteClass, n int, ok bool) {
	cls = &byteClass{}
	i := 1
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		cls.neg = true
		i++
	}
	first := true
	for i < len(p) {
		c := p[i]
		if c == ']' && !first {
			return cls, i + 1, true
		}
		first = false
		if c == '[' && i+1 < len(p) && p[i+1] == ':' {
			end := strings.Index(p[i+2:], ":]")
			if end < 0 {
				return nil, 0, false
			}
			fn, known := posixClasses[p[i+2:i+2+end]]
			if !known {
				return nil, 0, false
			}
			for b := 0; b < 256; b++ {
				if fn(byte(b)) {
					cls.add(byte(b))
				}
			}
			i += 2 + end + 2
			continue
		}
		if c == '\\' {
			i++
			if i >= len(p) {
				return nil, 0, false
			}
			c = p[i]
		}
		i++
		// A range "c-d", unless the '-' is the last byte before ']'.
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi := p[i+1]
			i += 2
			if hi == '\\' {
				if i >= len(p) {
					return nil, 0, false
				}
				hi = p[i]
				i++
			}
			for b := int(c); b <= int(hi); b++ {
				cls.add(byte(b))
			}
			continue
		}
		cls.add(c)
	}
	return nil, 0, false
}

// matchTokens reports whether toks match all of text. It runs in
// O(len(toks)·len(text)) time and O(len(text)) space, so no pattern can make
// it backtrack exponentially.
func matchTokens(toks []token, text string) bool {
	n := len(text)
	next := make([]bool, n+1) // next[i]: toks[k+1:] match text[i:]
	cur := make([]bool, n+1)
	next[n] = true
	for k := len(toks) - 1; k >= 0; k-- {
		t := toks[k]
		switch t.kind {
		case tLit, tAny, tClass:
			cur[n] = false
			for i := n - 1; i >= 0; i-- {
				c := text[i]
				var one bool
				switch t.kind {
				case tLit:
					one = c == t.b
				case tAny:
					one = c != '/'
				case tClass:
					one = c != '/' && t.class.match(c)
				}
				cur[i] = one && next[i+1]
			}
		case tStar:
			cur[n] = next[n]
			for i := n - 1; i >= 0; i-- {
				cur[i] = next[i] || (text[i] != '/' && cur[i+1])
			}
		case tAll:
			cur[n] = next[n]
			for i := n - 1; i >= 0; i-- {
				cur[i] = next[i] || cur[i+1]
			}
		case tDirStar:
			// Matches "" or any text[i:j] whose last byte is '/'.
			acc := false // OR of next[j] for j > i with text[j-1] == '/'
			cur[n] = next[n]
			for i := n - 1; i >= 0; i-- {
				if text[i] == '/' && next[i+1] {
					acc = true
				}
				cur[i] = next[i] || acc
			}
		}
		next, cur = cur, next
	}
	return next[0]
}

// matches reports whether the rule's pattern matches rel (a slash-separated
// path relative to the tree root), ignoring negation.
func (r *ignoreRule) matches(rel string, isDir bool) bool {
	if r.invalid || (r.dirOnly && !isDir) {
		return false
	}
	sub := rel
	if r.base != "" {
		if !strings.HasPrefix(rel, r.base+"/") {
			return false
		}
		sub = rel[len(r.base)+1:]
	}
	if !r.anchored {
		sub = sub[strings.LastIndexByte(sub, '/')+1:]
	}
	return matchTokens(r.toks, sub)
}

// ignoreList is an ordered list of rules; a later rule overrides an earlier
// one, so rules from deeper ignore files (and .slipwayignore) go last.
type ignoreList struct {
	rules []ignoreRule
}

// decide returns whether the last rule matching rel excludes it, and
// whether any rule matched at all. It looks at rel only, not its parents.
func (l *ignoreList) decide(rel string, isDir bool) (excluded, matched bool) {
	for i := len(l.rules) - 1; i >= 0; i-- {
		if l.rules[i].matches(rel, isDir) {
			return !l.rules[i].negate, true
		}
	}
	return false, false
}

// excluded reports whether git would ignore rel: it, or any directory above
// it, is excluded. (As in git, a file cannot be re-included when a parent
// directory is excluded.)
func (l *ignoreList) excluded(rel string, isDir bool) bool {
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' {
			if ex, _ := l.decide(rel[:i], true); ex {
				return true
			}
		}
	}
	ex, _ := l.decide(rel, isDir)
	return ex
}

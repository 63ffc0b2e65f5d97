package contention

import (
	"fmt"
	"regexp"
	"strings"
)

// Patterner groups keys into patterns: user rules first (first match wins),
// then the built-in rule that replaces variable segments with "*".
//
// Built-in rule: the key is split at the separators ':', '/', '.', '|', ',',
// '#', '=', '{', '}', '@' and space. A whole segment becomes "*" when it is
// all decimal digits, a UUID (8-4-4-4-12 hex digits), or hex of at least 8
// characters containing at least one digit (so hex-only words such as
// "deadbeef" or "feedface" stay: they are names more often than ids).
// Otherwise the segment is split again at '-' and '_', and each part is
// replaced by the same test, so "user-42" becomes "user-*" while a UUID,
// which contains '-', is still recognised whole.
type Patterner struct {
	rules []compiledRule
}

type compiledRule struct {
	re   *regexp.Regexp
	name string
}

// NewPatterner compiles rules; an invalid regular expression is an error.
func NewPatterner(rules []PatternRule) (*Patterner, error) {
	p := &Patterner{}
	for i, r := range rules {
		re, err := regexp.Compile(r.Match)
		if err != nil {
			return nil, fmt.Errorf("contention: pattern rule %d: %w", i, err)
		}
		p.rules = append(p.rules, compiledRule{re: re, name: r.Pattern})
	}
	return p, nil
}

// Pattern returns the pattern key belongs to.
func (p *Patterner) Pattern(key string) string {
	for _, r := range p.rules {
		m := r.re.FindStringSubmatchIndex(key)
		if m == nil {
			continue
		}
		if !strings.Contains(r.name, "$") {
			return r.name
		}
		return string(r.re.ExpandString(nil, r.name, key, m))
	}
	return builtinPattern(key)
}

func isMajorSep(c byte) bool {
	switch c {
	case ':', '/', '.', '|', ',', '#', '=', '{', '}', '@', ' ':
		return true
	}
	return false
}

func isMinorSep(c byte) bool { return c == '-' || c == '_' }

// builtinPattern allocates only when it changes something, since most keys
// of a hot workload repeat and most segments are fixed words.
func builtinPattern(key string) string {
	var b []byte // nil until the first replacement
	start := 0
	for i := 0; i <= len(key); i++ {
		if i < len(key) && !isMajorSep(key[i]) {
			continue
		}
		seg := key[start:i]
		if variableSegment(seg) {
			if b == nil {
				b = append(make([]byte, 0, len(key)), key[:start]...)
			}
			b = append(b, '*')
		} else if r, ok := minorPattern(seg); ok {
			if b == nil {
				b = append(make([]byte, 0, len(key)), key[:start]...)
			}
			b = append(b, r...)
		} else if b != nil {
			b = append(b, seg...)
		}
		if i < len(key) && b != nil {
			b = append(b, key[i])
		}
		start = i + 1
	}
	if b == nil {
		return key
	}
	return string(b)
}

// minorPattern rewrites the '-'/'_' separated parts of seg; ok is false when
// nothing changed.
func minorPattern(seg string) (string, bool) {
	if !strings.ContainsAny(seg, "-_") {
		return "", false
	}
	var b []byte
	start := 0
	changed := false
	for i := 0; i <= len(seg); i++ {
		if i < len(seg) && !isMinorSep(seg[i]) {
			continue
		}
		part := seg[start:i]
		if variableSegment(part) {
			b = append(b, '*')
			changed = true
		} else {
			b = append(b, part...)
		}
		if i < len(seg) {
			b = append(b, seg[i])
		}
		start = i + 1
	}
	return string(b), changed
}

// variableSegment reports a segment that is an identifier rather than a
// name: digits, a UUID, or hex of 8+ characters with at least one digit.
func variableSegment(s string) bool {
	if s == "" {
		return false
	}
	if allDigits(s) || isUUID(s) {
		return true
	}
	if len(s) < 8 {
		return false
	}
	digit := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
		default:
			return false
		}
	}
	return digit
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

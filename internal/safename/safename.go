// Package safename turns names a container chooses (process names, command
// lines, cgroup paths) into text that is safe to put in a log line, a metric
// label or a Kubernetes Event: valid UTF-8, no control characters, bounded
// length. A container can name itself anything; nothing it picks may panic
// oomhero, forge a log line or blow up a label.
package safename

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is the longest name Clean returns, in bytes.
const MaxLen = 256

// Clean returns s with every invalid UTF-8 byte and every control or
// non-printing character replaced by '?' and cut to at most MaxLen bytes (at
// a rune boundary, ending in "..." when cut), so Clean(Clean(s)) ==
// Clean(s). It returns s itself when s is already clean, so the common case
// does not allocate.
func Clean(s string) string {
	if isClean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), MaxLen+utf8.UTFMax))
	for i := 0; i < len(s) && b.Len() <= MaxLen; {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
		i += max(n, 1)
	}
	out := b.String()
	if len(out) > MaxLen {
		cut := MaxLen - len("...")
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = out[:cut] + "..."
	}
	return out
}

func isClean(s string) bool {
	if len(s) > MaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return isCleanSlow(s)
		}
	}
	return true
}

func isCleanSlow(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || !unicode.IsPrint(r) {
			return false
		}
		i += n
	}
	return true
}

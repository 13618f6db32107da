package safename

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClean(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"java", "java"},
		{"runc:[2:INIT]", "runc:[2:INIT]"},
		{"\xff\xfex", "??x"},
		{"a\nlevel=error msg=forged", "a?level=error msg=forged"},
		{"tab\there", "tab?here"},
		{"\x1b[31mred", "?[31mred"},
		{"héllo wörld", "héllo wörld"},
		{"zero\u200bwidth", "zero?width"},
		{"", ""},
	} {
		if got := Clean(c.in); got != c.want {
			t.Errorf("Clean(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	long := strings.Repeat("é", 400)
	got := Clean(long)
	if len(got) > MaxLen+3 || !strings.HasSuffix(got, "...") || !utf8.ValidString(got) {
		t.Errorf("Clean(long) = %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"java", "\xff\xfex", "a\nb", strings.Repeat("x", 300), "é\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Clean(s)
		if !utf8.ValidString(got) {
			t.Fatalf("Clean(%q) = %q: not valid UTF-8", s, got)
		}
		if len(got) > MaxLen+3 {
			t.Fatalf("Clean(%q) is %d bytes", s, len(got))
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("Clean(%q) = %q: control character %U", s, got, r)
			}
		}
		if Clean(got) != got {
			t.Fatalf("Clean is not idempotent on %q", s)
		}
	})
}

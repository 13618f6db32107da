package agent

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// A container that renames itself without end keeps its fourth name: labels
// stay bounded, and it is said once.
func TestBoundName(t *testing.T) {
	var logs bytes.Buffer
	a := &Agent{Log: slog.New(slog.NewTextHandler(&logs, nil))}
	for _, n := range []string{"runc:[2:INIT]", "sh", "app", "app", "sh"} {
		if got := a.boundName("/a", n); got != n {
			t.Fatalf("boundName(%q) = %q", n, got)
		}
	}
	if got := a.boundName("/a", "bloat"); got != "bloat" {
		t.Fatalf("fourth name refused: %q", got)
	}
	for i := range 100 {
		if got := a.boundName("/a", fmt.Sprint("churn", i)); got != "bloat" {
			t.Fatalf("churn %d: %q, want the last name given", i, got)
		}
	}
	if got := a.boundName("/a", "sh"); got != "sh" {
		t.Fatalf("a name used before: %q", got)
	}
	if n := strings.Count(logs.String(), "keeps renaming itself"); n != 1 {
		t.Fatalf("%d lines, want 1:\n%s", n, logs.String())
	}
	// Other paths are not affected; the book is bounded.
	for i := range maxNamedPaths + 10 {
		a.boundName(fmt.Sprint("/p", i), "x")
	}
	if len(a.names.byPath) != maxNamedPaths || len(a.names.order) != maxNamedPaths {
		t.Fatalf("book holds %d paths (%d in order), want %d", len(a.names.byPath), len(a.names.order), maxNamedPaths)
	}
}

package pods

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKubeFileText(t *testing.T) {
	in := "2026-12-01T15:08:13.311526758+00:00 stdout F {\"a\":1}\n" +
		"2026-12-01T15:08:13.4+00:00 stderr P half \n" +
		"2026-12-01T15:08:13.5+00:00 stderr F and half\n" +
		"2026-12-01T15:08:13.6+00:00 stdout F\n" +
		"not k8s-file\n"
	want := "{\"a\":1}\nhalf and half\n\nnot k8s-file\n"
	if got := KubeFileText(in); got != want {
		t.Errorf("KubeFileText = %q, want %q", got, want)
	}
}

func TestFileTailWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	tl := &FileTail{Path: path}
	if got := tl.Next(); got != "" {
		t.Fatalf("missing file: %q", got)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, step := range []struct{ write, want string }{
		{"one\ntw", "one\n"},
		{"o\n", "two\n"},
		{"", ""},
		{"three", ""},
		{"\nfour\n", "three\nfour\n"},
	} {
		if _, err := f.WriteString(step.write); err != nil {
			t.Fatal(err)
		}
		if got := tl.Next(); got != step.want {
			t.Errorf("after %q: Next = %q, want %q", step.write, got, step.want)
		}
	}
}

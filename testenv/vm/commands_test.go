package vm

import (
	"fmt"
	"testing"
	"time"
)

// TestCommands checks the hook that runs an arbitrary static binary in the
// VM's root namespaces: its output lines and exit status reach the host, in
// order and complete.
func TestCommands(t *testing.T) {
	const n = 20000
	m := machine(t)
	res := run(t, m, Spec{
		Timeout: D(40 * time.Second),
		Commands: []Command{
			{Name: "seq", Args: []string{"/bin/seq", "1", fmt.Sprint(n)}},
			{Name: "fail", Args: []string{"/bin/sh", "-c", "echo to-stderr >&2; exit 3"}},
			{Name: "slow", Args: []string{"/bin/sleep", "30"}, Timeout: D(time.Second)},
		},
	})
	lines := res.Lines("", "seq")
	if len(lines) != n {
		t.Fatalf("seq: %d lines, want %d", len(lines), n)
	}
	for i, l := range lines {
		if l.Text != fmt.Sprint(i+1) {
			t.Fatalf("seq line %d = %q", i, l.Text)
		}
	}
	span := time.Duration(lines[n-1].T - lines[0].T)
	t.Logf("serial channel: %d lines in %v", n, span)
	if e := res.Find(KindExit, "", "seq"); e == nil || e.Code != 0 {
		t.Errorf("seq exit: %+v", e)
	}
	if e := res.Find(KindExit, "", "fail"); e == nil || e.Code != 3 {
		t.Errorf("fail exit: %+v, want code 3", e)
	}
	if l := res.Lines("", "fail"); len(l) != 1 || l[0].Stream != "stderr" || l[0].Text != "to-stderr" {
		t.Errorf("fail output: %+v", l)
	}
	if e := res.Find(KindExit, "", "slow"); e == nil || e.Signal != "SIGKILL" || e.Text != "timeout" {
		t.Errorf("slow exit: %+v, want killed after its timeout", e)
	}
}

package applog

import (
	"strings"
	"testing"
	"time"
)

const sample = `event=start pid=16 mode=leak cgroup_dir=/sys/fs/cgroup/memory version=v1 limit=268435456 mono_ns=100
event=child-start pid=31
event=go mono_ns=150
event=sample mono_ns=200 usage=1000 working_set=900 inactive_file=100 leaked=65536
event=sample mono_ns=300 read_error=parse_x
2026-11-26T19:00:00Z stdout F event=sample mono_ns=400 usage=3000 working_set=2900 inactive_file=100 leaked=131072
not an event line
event=signal signal=SIGUSR1 signo=10 n=1 mono_ns=450 usage=3000 working_set=2900
event=signal signal=SIGUSR2 signo=12 n=1 mono_ns=460 read_error=x
event=child-exit pid=31 signal=SIGUSR1 code=-1 mono_ns=470 err=x
`

func TestParseLog(t *testing.T) {
	lg, err := ParseLog(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if lg.Start.Event != "start" || lg.Start.KV["limit"] != "268435456" {
		t.Errorf("start = %+v", lg.Start)
	}
	if len(lg.Samples) != 2 || lg.Samples[1].WorkingSet != 2900 || lg.Samples[1].Mono != 400 {
		t.Errorf("samples = %+v, want 2 (the read error skipped, the prefixed line kept)", lg.Samples)
	}
	if len(lg.Signals) != 2 || !lg.Signals[0].Figures || lg.Signals[1].Figures {
		t.Errorf("signals = %+v", lg.Signals)
	}
	if len(lg.ChildStarts) != 1 || lg.ChildStarts[0] != 31 || len(lg.ChildExits) != 1 {
		t.Errorf("children: starts %v exits %v", lg.ChildStarts, lg.ChildExits)
	}
	if at, ok := lg.Crossing(2000); !ok || at != 400*time.Nanosecond {
		t.Errorf("Crossing(2000) = %v, %v; want 400ns", at, ok)
	}
	if _, ok := lg.Crossing(5000); ok {
		t.Errorf("Crossing(5000) found a crossing that never happened")
	}
	if n := len(lg.SignalsNamed("SIGUSR2")); n != 1 {
		t.Errorf("SIGUSR2 receipts = %d", n)
	}
}

func TestMissingFigureIsAnError(t *testing.T) {
	_, err := ParseLog(strings.NewReader("event=sample mono_ns=1 working_set=3\n"))
	if err == nil {
		t.Fatal("a sample without usage parsed without error")
	}
}

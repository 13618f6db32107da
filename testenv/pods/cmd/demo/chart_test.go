package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/oomhero/oomhero/testenv/app/applog"
)

func TestChart(t *testing.T) {
	const limit = 256 << 20
	var log strings.Builder
	fmt.Fprintf(&log, "event=start pid=1 mode=leak limit=%d mono_ns=0\n", limit)
	for i := range 100 { // 1 % of the limit per 100 ms
		fmt.Fprintf(&log, "event=sample mono_ns=%d usage=%d working_set=%d\n", i*100_000_000, i*limit/100, i*limit/100)
	}
	fmt.Fprintf(&log, "event=signal signal=SIGUSR1 mono_ns=%d usage=1 working_set=1\n", 66*100_000_000)
	fmt.Fprintf(&log, "event=signal signal=SIGUSR2 mono_ns=%d usage=1 working_set=1\n", 91*100_000_000)
	lg, err := applog.ParseLog(strings.NewReader(log.String()))
	if err != nil {
		t.Fatal(err)
	}
	pic, err := chart(lg, limit, 65, 90, true, 60, 15)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + pic)
	lines := strings.Split(pic, "\n")
	var marks string
	for _, l := range lines {
		if strings.HasSuffix(l, "signals") {
			marks = l
		}
	}
	i1, i2, ix := strings.Index(marks, "1"), strings.Index(marks, "2"), strings.Index(marks, "X")
	if i1 < 0 || i2 < 0 || ix < 0 || !(i1 < i2 && i2 < ix) {
		t.Errorf("signal row %q: want 1, then 2, then X", marks)
	}
	for _, want := range []string{"WARNING 65%", "CRITICAL 90%", "256 MiB limit"} {
		if !strings.Contains(pic, want) {
			t.Errorf("chart lacks %q", want)
		}
	}
	// The curve rises: the first column's point is on the bottom row, the
	// last one's near the top.
	if n := strings.Count(pic, "*"); n < 50 {
		t.Errorf("%d points drawn, want one per column (about 59)", n)
	}

	if _, err := chart(applog.Log{}, limit, 65, 90, false, 60, 15); err == nil || !strings.Contains(err.Error(), "samples") {
		t.Errorf("no samples: error %v, want one naming the samples", err)
	}
	if _, err := chart(lg, 0, 65, 90, false, 60, 15); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("no limit: error %v, want one naming the limit", err)
	}
}

package main

import (
	"strings"
	"testing"
)

// TestPrintRatios: a reaction row is found under its key with its source,
// as baseline.json names it, and an idle row under its key; a figure the
// baseline lacks is new; a run wholly outside the baseline's range says so.
func TestPrintRatios(t *testing.T) {
	bl, err := loadBaseline("baseline.json")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printRatios(&b, bl, []measured{
		{key: "reaction 20 MiB/s warning p50 ms", value: 0.78, lo: 0.45, hi: 1.78, label: "cgroupfs"},
		{key: "idle app with 2000 processes at 30%, cgroupfs: CPU % of one core", value: 0.213, lo: 0.166, hi: 0.271},
		{key: "a figure no release had", value: 1, lo: 1, hi: 1},
	})
	out := b.String()
	row := func(prefix string) []string {
		for line := range strings.Lines(out) {
			if strings.HasPrefix(line, prefix) {
				return strings.Fields(strings.TrimPrefix(line, prefix))
			}
		}
		t.Fatalf("no row %q:\n%s", prefix, out)
		return nil
	}
	if got := strings.Join(row("reaction 20 MiB/s warning p50 ms (cgroupfs)"), " "); got != "0.78 (0.45..1.78) 1.72 (1.16..3.65) 0.45" {
		t.Errorf("reaction row %q, want its baseline and ratio", got)
	}
	if got := strings.Join(row("idle app with 2000 processes at 30%, cgroupfs: CPU % of one core"), " "); !strings.HasSuffix(got, "0.53 better than its range") {
		t.Errorf("idle row %q, want ratio 0.53, better than its range", got)
	}
	if got := strings.Join(row("a figure no release had"), " "); got != "1 (1..1) new -" {
		t.Errorf("new figure's row %q", got)
	}
}

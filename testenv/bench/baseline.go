package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// baseline is the previous release's figures (testenv/bench/baseline.json):
// each measured figure whose key is there gets a ratio, so a regression
// shows. Replace the file's figures with a release's own table when it is
// published.
type baseline struct {
	Release string   `json:"release"`
	Machine string   `json:"machine"`
	Figures []figure `json:"figures"`
}

type figure struct {
	Key   string  `json:"key"`
	Value float64 `json:"value"`
	Low   float64 `json:"low,omitempty"`
	High  float64 `json:"high,omitempty"`
	Note  string  `json:"note,omitempty"`
}

func loadBaseline(path string) (*baseline, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	var bl baseline
	if err := json.Unmarshal(b, &bl); err != nil {
		return nil, fmt.Errorf("baseline %s: %w", path, err)
	}
	for i, f := range bl.Figures {
		if f.Key == "" || f.Value <= 0 {
			return nil, fmt.Errorf("baseline %s: figure %d: want a key and a value > 0", path, i)
		}
	}
	return &bl, nil
}

// measured is one figure of this run, with the range of its repeats. key
// names it in the baseline; label, when not empty, adds what the baseline
// does not distinguish (the source of a reaction row).
type measured struct {
	key           string
	value, lo, hi float64
	label         string
}

// printRatios prints measured/baseline for every measured figure the
// baseline has; outside marks a ratio whose repeats all fall outside the
// baseline's range (or differ by more than 10% where it has none).
func printRatios(w io.Writer, bl *baseline, ms []measured) {
	byKey := map[string]figure{}
	for _, f := range bl.Figures {
		byKey[f.Key] = f
	}
	fmt.Fprintf(w, "\nAgainst %s (testenv/bench/baseline.json; machine: %s)\n\n", bl.Release, bl.Machine)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tnow (median, range)\tbaseline\tratio\t\t")
	for _, m := range ms {
		name := m.key
		if m.label != "" {
			name += " (" + m.label + ")"
		}
		// The baseline names a reaction row with its source, as printed.
		f, ok := byKey[name]
		if !ok {
			f, ok = byKey[m.key]
		}
		if !ok {
			fmt.Fprintf(tw, "%s\t%.3g (%.3g..%.3g)\tnew\t-\t\t\n", name, m.value, m.lo, m.hi)
			continue
		}
		lo, hi := f.Low, f.High
		if lo == 0 && hi == 0 {
			lo, hi = f.Value*0.9, f.Value*1.1
		}
		note := ""
		if m.hi < lo {
			note = "better than its range"
		} else if m.lo > hi {
			note = "WORSE than its range"
		}
		base := fmt.Sprintf("%.3g", f.Value)
		if f.Low != 0 || f.High != 0 {
			base += fmt.Sprintf(" (%.3g..%.3g)", f.Low, f.High)
		}
		fmt.Fprintf(tw, "%s\t%.3g (%.3g..%.3g)\t%s\t%.2f\t%s\t\n", name, m.value, m.lo, m.hi, base, m.value/f.Value, note)
	}
	tw.Flush()
}

package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/oomhero/oomhero/testenv/app/applog"
)

// chart draws the app's working set, as percent of its limit, over time in
// plain text: width columns by height rows for 0..100 %, the two thresholds
// as horizontal rules, and under the time axis a row marking each signal
// receipt (1 SIGUSR1, 2 SIGUSR2) and the OOM kill (X, a column after the last
// sample when killed is true). Every figure comes from the app's own log (its
// samples and signal lines, testenv/app/applog).
func chart(lg applog.Log, limit uint64, warn, crit float64, killed bool, width, height int) (string, error) {
	if limit == 0 {
		return "", fmt.Errorf("chart: the app's start line has no memory limit (limit=%q)", lg.Start.KV["limit"])
	}
	if len(lg.Samples) < 2 {
		return "", fmt.Errorf("chart: %d samples in the app's log, need 2", len(lg.Samples))
	}
	if width < 10 || height < 5 {
		return "", fmt.Errorf("chart: %dx%d is too small (at least 10x5)", width, height)
	}
	t0 := lg.Samples[0].Mono
	end := lg.Samples[len(lg.Samples)-1].Mono
	for _, s := range lg.Signals {
		end = max(end, s.Mono)
	}
	span := end - t0
	if killed {
		span += span / time.Duration(width-1) // one column for the kill
	}
	col := func(m time.Duration) int {
		if m < t0 {
			return 0
		}
		c := int(int64(m-t0) * int64(width-1) / int64(max(span, 1)))
		return min(c, width-1)
	}
	// row r (0 = top) covers percent (height-1-r)*step .. above.
	step := 100.0 / float64(height-1)
	row := func(pct float64) int {
		r := height - 1 - int(pct/step+0.5)
		return max(0, min(height-1, r))
	}

	grid := make([][]rune, height)
	for r := range grid {
		grid[r] = []rune(strings.Repeat(" ", width))
	}
	warnRow, critRow := row(warn), row(crit)
	for c := range width {
		grid[warnRow][c] = '-'
		grid[critRow][c] = '='
	}
	// The highest sample of each column.
	peak := make([]float64, width)
	have := make([]bool, width)
	for _, s := range lg.Samples {
		c := col(s.Mono)
		p := 100 * float64(s.WorkingSet) / float64(limit)
		if !have[c] || p > peak[c] {
			peak[c], have[c] = p, true
		}
	}
	for c := range width {
		if have[c] {
			grid[row(peak[c])][c] = '*'
		}
	}
	marks := []rune(strings.Repeat(" ", width))
	for _, s := range lg.Signals {
		c := col(s.Mono)
		switch {
		case s.Name == "SIGUSR2":
			marks[c] = '2'
		case s.Name == "SIGUSR1" && marks[c] != '2':
			marks[c] = '1'
		case marks[c] == ' ':
			marks[c] = '?'
		}
	}
	if killed {
		marks[width-1] = 'X'
		for r := range grid {
			if grid[r][width-1] == ' ' {
				grid[r][width-1] = ':'
			}
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "  working set, %% of the %d MiB limit (from the app's own samples)\n", limit>>20)
	for r := range grid {
		label, note := "    ", ""
		switch r {
		case critRow:
			label, note = fmt.Sprintf("%3.0f%%", crit), fmt.Sprintf(" CRITICAL %g%%", crit)
		case warnRow:
			label, note = fmt.Sprintf("%3.0f%%", warn), fmt.Sprintf(" WARNING %g%%", warn)
		case 0, height - 1:
			label = fmt.Sprintf("%3.0f%%", float64(height-1-r)*step)
		}
		fmt.Fprintf(&b, "  %s |%s|%s\n", label, string(grid[r]), note)
	}
	fmt.Fprintf(&b, "       +%s+\n", strings.Repeat("-", width))
	fmt.Fprintf(&b, "        %s  signals\n", string(marks))
	left := "0s"
	right := fmt.Sprintf("%.1fs", span.Seconds())
	fmt.Fprintf(&b, "        %s%*s\n", left, width-len(left), right)
	b.WriteString("        1 = SIGUSR1 (warning) received   2 = SIGUSR2 (critical) received")
	if killed {
		b.WriteString("   X = OOM kill")
	}
	b.WriteString("\n")
	return b.String(), nil
}

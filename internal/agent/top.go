package agent

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oomhero/oomhero/internal/discover"
)

// Which process: when a container has several processes, the level-change
// line and the OOM-kill report name its top memory users (resident memory
// from /proc/<pid>/statm) and which grew since the last level change;
// --targets largest signals only the largest eligible process.

// topN is how many processes a log line names.
const topN = 3

var pageSize = uint64(os.Getpagesize())

// memProc is one process and its resident memory.
type memProc struct {
	discover.Process
	rss uint64
}

// rss reads a process's resident memory in bytes from proc/<pid>/statm
// (second field, in pages).
func rss(proc string, pid int) (uint64, error) {
	f, err := os.Open(filepath.Join(proc, strconv.Itoa(pid), "statm"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var buf [256]byte
	n, _ := f.Read(buf[:])
	return parseStatm(buf[:n])
}

// parseStatm returns the resident bytes of a statm line
// ("size resident shared text lib data dt", in pages).
func parseStatm(b []byte) (uint64, error) {
	fields := bytes.Fields(b)
	if len(fields) < 2 {
		return 0, fmt.Errorf("statm %q: want at least 2 fields", b)
	}
	pages, err := strconv.ParseUint(string(fields[1]), 10, 64)
	if err != nil || pages > (1<<64-1)/pageSize {
		return 0, fmt.Errorf("statm %q: resident pages not a number", b)
	}
	return pages * pageSize, nil
}

// memProcs returns procs with their resident memory, largest first;
// processes that cannot be read (gone) are left out.
func (a *Agent) memProcs(procs []discover.Process) []memProc {
	out := make([]memProc, 0, len(procs))
	for _, p := range procs {
		if r, err := rss(a.Config.Proc, p.PID); err == nil {
			out = append(out, memProc{p, r})
		}
	}
	slices.SortStableFunc(out, func(x, y memProc) int { return cmp.Compare(y.rss, x.rss) })
	return out
}

func mib(b uint64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + "MiB" }

// topSnapshot is the container's processes at the last level change.
type topSnapshot struct {
	at   time.Time
	rss  map[procKey]uint64
	line string // the "top" text logged then
}

// topAttrs names the top memory users of container t and which grew since
// the last level change, for a log line, and remembers them. Nothing when
// the container has a single process.
func (a *Agent) topAttrs(t *tracked) []any {
	if t.group == nil || len(t.group.Procs) < 2 {
		return nil
	}
	ms := a.memProcs(t.group.Procs)
	if len(ms) < 2 {
		return nil
	}
	var top, grew []string
	type growth struct {
		memProc
		by uint64
	}
	var gs []growth
	snap := topSnapshot{at: a.now(), rss: make(map[procKey]uint64, len(ms))}
	for i, m := range ms {
		k := procKey{m.PID, m.Start}
		snap.rss[k] = m.rss
		if i < topN {
			top = append(top, fmt.Sprintf("%s(%d) %s", m.Comm, m.PID, mib(m.rss)))
		}
		if t.top.rss == nil {
			continue
		}
		before, seen := t.top.rss[k]
		switch {
		case !seen:
			gs = append(gs, growth{m, m.rss})
		case m.rss > before:
			gs = append(gs, growth{m, m.rss - before})
		}
	}
	slices.SortStableFunc(gs, func(x, y growth) int { return cmp.Compare(y.by, x.by) })
	for i, g := range gs {
		if i == topN {
			break
		}
		note := "+" + mib(g.by)
		if _, seen := t.top.rss[procKey{g.PID, g.Start}]; !seen {
			note = "new " + mib(g.rss)
		}
		grew = append(grew, fmt.Sprintf("%s(%d) %s", g.Comm, g.PID, note))
	}
	snap.line = strings.Join(top, ", ")
	attrs := []any{"top", snap.line}
	if t.top.rss != nil {
		attrs = append(attrs, "grew", strings.Join(grew, ", "))
	}
	t.top = snap
	return attrs
}

// killTopAttrs are the top memory users for the OOM-kill report: now (the
// victim may already be gone) and at the last level change.
func (a *Agent) killTopAttrs(t *tracked, at time.Time) []any {
	var attrs []any
	if t.group != nil && len(t.group.Procs) > 1 {
		var top []string
		for i, m := range a.memProcs(t.group.Procs) {
			if i == topN {
				break
			}
			top = append(top, fmt.Sprintf("%s(%d) %s", m.Comm, m.PID, mib(m.rss)))
		}
		attrs = append(attrs, "top_now", strings.Join(top, ", "))
	}
	if t.top.line != "" {
		attrs = append(attrs, "top_at_level_change", t.top.line, "level_change_ago", at.Sub(t.top.at).Round(time.Millisecond))
	}
	return attrs
}

// largest keeps the process with the most resident memory.
func (a *Agent) largest(procs []discover.Process) []discover.Process {
	if len(procs) < 2 {
		return procs
	}
	ms := a.memProcs(procs)
	if len(ms) == 0 {
		return nil
	}
	return []discover.Process{ms[0].Process}
}

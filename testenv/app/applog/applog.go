// Package applog parses the log of the test application (testenv/app): one
// event per line, space-separated key=value pairs, event=NAME first.
package applog

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Line is one parsed log line.
type Line struct {
	Event string
	KV    map[string]string
}

// Uint returns the unsigned number under key, or an error naming the key.
func (l Line) Uint(key string) (uint64, error) {
	s, ok := l.KV[key]
	if !ok {
		return 0, fmt.Errorf("event %s: no %q", l.Event, key)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("event %s: %s: %w", l.Event, key, err)
	}
	return n, nil
}

// Mono returns the line's CLOCK_MONOTONIC timestamp as a duration since boot.
func (l Line) Mono() (time.Duration, error) {
	n, err := l.Uint("mono_ns")
	return time.Duration(n), err
}

// ParseLine parses one line. ok is false for lines that are not events of the
// test application (other output interleaved in a container log).
func ParseLine(s string) (l Line, ok bool) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "event=") {
		// Log collectors may prefix lines (timestamps, stream names).
		i := strings.Index(s, " event=")
		if i < 0 {
			return Line{}, false
		}
		s = s[i+1:]
	}
	l.KV = make(map[string]string)
	for _, f := range strings.Fields(s) {
		k, v, found := strings.Cut(f, "=")
		if !found {
			continue
		}
		l.KV[k] = v
	}
	l.Event = l.KV["event"]
	return l, l.Event != ""
}

// Parse reads every event line of r.
func Parse(r io.Reader) ([]Line, error) {
	var out []Line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if l, ok := ParseLine(sc.Text()); ok {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

// Sample is one memory sample of the application's cgroup.
type Sample struct {
	Mono       time.Duration
	Usage      uint64
	WorkingSet uint64
}

// Signal is one signal receipt.
type Signal struct {
	Name string
	Mono time.Duration
	// Figures is false when the app could not read its cgroup at the
	// receipt: Usage and WorkingSet are then unknown (zero).
	Figures    bool
	Usage      uint64
	WorkingSet uint64
}

// Log is the application's log, split by event.
type Log struct {
	Start   Line
	Samples []Sample
	Signals []Signal
	// ChildExits are the event=child-exit lines.
	ChildExits []Line
	// ChildStarts are the pids of the children started.
	ChildStarts []int
	// Lines are all the event lines, in order.
	Lines []Line
}

// Split sorts parsed lines by event. Lines with missing or bad numbers are
// errors: a test must not read a zero for a figure it never got. Samples
// whose cgroup read failed (read_error=) are kept out of Samples (they stay
// in Lines); such signal receipts are in Signals with Figures false.
func Split(lines []Line) (Log, error) {
	var lg Log
	lg.Lines = lines
	for _, l := range lines {
		switch l.Event {
		case "start":
			lg.Start = l
		case "sample":
			if _, bad := l.KV["read_error"]; bad {
				continue
			}
			var s Sample
			var err error
			if s.Mono, err = l.Mono(); err != nil {
				return lg, err
			}
			if s.Usage, err = l.Uint("usage"); err != nil {
				return lg, err
			}
			if s.WorkingSet, err = l.Uint("working_set"); err != nil {
				return lg, err
			}
			lg.Samples = append(lg.Samples, s)
		case "signal":
			s := Signal{Name: l.KV["signal"]}
			var err error
			if s.Mono, err = l.Mono(); err != nil {
				return lg, err
			}
			if _, bad := l.KV["read_error"]; bad {
				lg.Signals = append(lg.Signals, s) // a receipt without figures
				continue
			}
			s.Figures = true
			if s.Usage, err = l.Uint("usage"); err != nil {
				return lg, err
			}
			if s.WorkingSet, err = l.Uint("working_set"); err != nil {
				return lg, err
			}
			lg.Signals = append(lg.Signals, s)
		case "child-exit":
			lg.ChildExits = append(lg.ChildExits, l)
		case "child-start":
			pid, err := l.Uint("pid")
			if err != nil {
				return lg, err
			}
			lg.ChildStarts = append(lg.ChildStarts, int(pid))
		}
	}
	return lg, nil
}

// ParseLog parses and splits a whole log.
func ParseLog(r io.Reader) (Log, error) {
	lines, err := Parse(r)
	if err != nil {
		return Log{}, err
	}
	return Split(lines)
}

// Crossing returns the time of the first sample whose working set is at or
// above bytes (the crossing happened between the previous sample and this
// one), and false when no sample reached it.
func (lg Log) Crossing(bytes uint64) (time.Duration, bool) {
	for _, s := range lg.Samples {
		if s.WorkingSet >= bytes {
			return s.Mono, true
		}
	}
	return 0, false
}

// SignalsNamed returns the receipts of one signal, in order.
func (lg Log) SignalsNamed(name string) []Signal {
	var out []Signal
	for _, s := range lg.Signals {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

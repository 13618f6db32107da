package pods

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Entry is one line of oomhero's JSON log (--log-format json).
type Entry struct {
	Msg string
	// Level is slog's own "level", the severity (INFO, WARN, ...).
	Level string
	// MemoryLevel is the container's memory level (warning, critical, ok)
	// of a line about signals and levels: its "memory_level" attribute.
	MemoryLevel string
	Attrs       map[string]any
	Raw         string
}

// ParseOomheroLog parses oomhero's JSON log. Lines that are not JSON objects
// (a panic, a message from podman) are returned with only Raw set.
func ParseOomheroLog(s string) []Entry {
	var out []Entry
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		e := Entry{Raw: line}
		if strings.HasPrefix(line, "{") {
			d := json.NewDecoder(strings.NewReader(line))
			d.UseNumber()
			var m map[string]any
			if err := d.Decode(&m); err == nil {
				e.Attrs = m
				e.Msg, _ = m["msg"].(string)
				e.Level, _ = m["level"].(string)
				e.MemoryLevel, _ = m["memory_level"].(string)
			}
		}
		out = append(out, e)
	}
	return out
}

// Str returns attribute k as a string ("" when missing).
func (e Entry) Str(k string) string {
	switch v := e.Attrs[k].(type) {
	case string:
		return v
	case nil:
		return ""
	case json.Number:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}

// Uint returns attribute k as an unsigned number.
func (e Entry) Uint(k string) (uint64, error) {
	s := e.Str(k)
	if s == "" {
		return 0, fmt.Errorf("oomhero log %q: no attribute %q", e.Msg, k)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f < 0 {
			return 0, fmt.Errorf("oomhero log %q: attribute %q: %w", e.Msg, k, err)
		}
		n = uint64(f)
	}
	return n, nil
}

// Int returns attribute k as an integer.
func (e Entry) Int(k string) (int, error) {
	n, err := e.Uint(k)
	return int(n), err
}

// Mentions tells whether any attribute's text contains s (a container id
// within a cgroup path, a name).
func (e Entry) Mentions(s string) bool {
	if s == "" {
		return false
	}
	for k, v := range e.Attrs {
		if k == "msg" || k == "time" || k == "level" || k == "memory_level" {
			continue
		}
		if strings.Contains(fmt.Sprint(v), s) {
			return true
		}
	}
	return false
}

// Select returns the entries with message msg that mention who (all of them
// when who is empty).
func Select(es []Entry, msg, who string) []Entry {
	var out []Entry
	for _, e := range es {
		if e.Msg == msg && (who == "" || e.Mentions(who)) {
			out = append(out, e)
		}
	}
	return out
}

// Short returns a compact form of a JSON log for humans: one line per entry,
// msg first.
func Short(es []Entry) string {
	var b bytes.Buffer
	for _, e := range es {
		if e.Attrs == nil {
			b.WriteString(e.Raw)
			b.WriteByte('\n')
			continue
		}
		fmt.Fprintf(&b, "%s %s %q", e.Str("time"), e.Level, e.Msg)
		keys := make([]string, 0, len(e.Attrs))
		for k := range e.Attrs {
			if k != "time" && k != "level" && k != "msg" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%v", k, e.Attrs[k])
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// SignalTimeInside is the time oomhero took for the first signal of level
// in es: from the kernel event behind it (BPF: event_age) or its reading
// (reading_age) to the send, as the "signal sent" line says.
func SignalTimeInside(es []Entry, level string) (time.Duration, bool) {
	for _, e := range Select(es, "signal sent", "") {
		if e.MemoryLevel != level {
			continue
		}
		v := e.Str("event_age")
		if v == "" {
			v = e.Str("reading_age")
		}
		d, err := time.ParseDuration(v)
		return d, err == nil
	}
	return 0, false
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/safename"
)

// forged are names a container can give itself (comm, cmdline, cgroup path)
// that try to end the log line and start a forged one.
var forged = []string{
	"app\nlevel=ERROR msg=\"oomhero stopped\"",
	"app\r\ntime=2026-01-01T00:00:00Z level=INFO msg=forged",
	"app\"} {\"level\":\"ERROR\",\"msg\":\"forged\"}\n{\"x\":\"",
	"app\u2028\u2029\u0085level=ERROR",
	"\xff\xfe\nx",
	"app\x00\x1b[2K\rlevel=ERROR",
}

// TestForgedNamesStayOneLogLine: a hostile name, raw or cleaned, is one
// attribute of one line in both log formats. The text handler quotes any
// value with a space, quote, '=', control or non-printing character
// (log/slog: text_handler.go needsQuoting, appendString); the JSON handler
// escapes control characters and U+2028/U+2029 (log/slog: json_handler.go
// appendEscapedJSONString) but leaves U+0085 (NEL) raw; safename.Clean on
// top leaves nothing that a terminal or a log reader could take for a line
// break.
func TestForgedNamesStayOneLogLine(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		for _, name := range forged {
			for _, value := range []string{name, safename.Clean(name)} {
				var buf bytes.Buffer
				cfg, err := config.Parse([]string{"--log-format", format}, func(string) (string, bool) { return "", false }, &buf)
				if err != nil {
					t.Fatal(err)
				}
				log := newLogger(cfg, &buf)
				log.Info("level changed", "container", value, "command", value)
				out := buf.String()
				if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
					t.Errorf("%s, %q: %d lines:\n%s", format, value, strings.Count(out, "\n"), out)
				}
				// The JSON handler leaves U+0085 (NEL) raw: not a JSON line
				// break, but one for some readers. Cleaned, no name carries it.
				for _, sep := range []string{"\r", "\u2028", "\u2029", "\u0085", "\x1b"} {
					if (value != name || format == "text") && strings.Contains(out, sep) {
						t.Errorf("%s, %q: raw %q in the line: %q", format, value, sep, out)
					}
				}
				if format == "json" {
					var rec map[string]any
					if err := json.Unmarshal([]byte(out), &rec); err != nil {
						t.Errorf("json, %q: not one JSON object: %v\n%s", value, err, out)
					} else if rec["msg"] != "level changed" || rec["level"] != "INFO" || len(rec) != 5 {
						t.Errorf("json, %q: fields %v", value, rec)
					}
				} else {
					keys, vals, err := logfmt(strings.TrimSuffix(out, "\n"))
					if err != nil || strings.Join(keys, " ") != "time level msg container command" {
						t.Errorf("text, %q: keys %v (%v) in %q", value, keys, err, out)
					} else if vals[3] != value || vals[4] != value {
						t.Errorf("text, %q: container read back as %q", value, vals[3])
					}
				}
			}
		}
	}
}

// logfmt splits one line of slog's text handler into keys and values:
// key=value pairs separated by one space, a value bare or Go-quoted.
func logfmt(line string) (keys, vals []string, err error) {
	for line != "" {
		k, rest, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \"") {
			return keys, vals, errors.New("no key=value at " + strconv.Quote(line))
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return keys, vals, err
			}
			if v, err = strconv.Unquote(q); err != nil {
				return keys, vals, err
			}
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
			rest = " " + rest
			if rest == " " {
				rest = ""
			}
		}
		keys, vals = append(keys, k), append(vals, v)
		if rest != "" && !strings.HasPrefix(rest, " ") {
			return keys, vals, errors.New("no space after a value at " + strconv.Quote(rest))
		}
		line = strings.TrimPrefix(rest, " ")
	}
	return keys, vals, nil
}

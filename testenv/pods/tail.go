package pods

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// FileTail reads a growing file (a container's k8s-file log, an app's log)
// by whole lines, without podman: a podman command costs tens of
// milliseconds of CPU, and polled by many tests at once it starved the apps
// being measured.
type FileTail struct {
	Path string
	off  int64
}

// Next returns the lines completed since the last call ("" when the file
// cannot be read yet).
func (t *FileTail) Next() string {
	f, err := os.Open(t.Path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, t.off, 1<<40))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, '\n')
	if i < 0 {
		return ""
	}
	t.off += int64(i + 1)
	return string(b[:i+1])
}

// logPaths keeps each container's log path (WaitLogFile), by podman name.
var logPaths sync.Map

// ErrNoLogFile: podman does not name a readable log file for the container
// (a log driver other than k8s-file); callers poll podman logs instead.
var ErrNoLogFile = errors.New("no readable log file")

// WaitLogFile waits until cond holds for everything container (podman's
// name) wrote so far, reading its log file (the k8s-file driver's, found by
// one inspect; a restarted container appends to it) every period. The log
// is given as podman logs gives it (KubeFileText).
//
// The path is inspected once per container and kept (logPaths): a wait of a
// few seconds must measure the container, not podman, whose answers under
// the adversarial suite's thirteen pods can wait on its lock for as long
// (a pod's removal took over a minute). A kept path whose file is gone (a container of the same name
// made again) is inspected anew.
func (l *Lab) WaitLogFile(ctx context.Context, container string, every time.Duration, cond func(log string) bool) (string, error) {
	path, _ := logPaths.Load(container)
	p, _ := path.(string)
	if _, err := os.Stat(p); p == "" || err != nil {
		out, err := l.Inspect(ctx, "--format", "{{.LogPath}}", container)
		p = strings.TrimSpace(string(out))
		if err != nil || p == "" {
			return "", fmt.Errorf("%s: %w (%v)", container, ErrNoLogFile, err)
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w: %v", container, ErrNoLogFile, err)
		}
		logPaths.Store(container, p)
	}
	t := &FileTail{Path: p}
	var log strings.Builder
	for {
		log.WriteString(KubeFileText(t.Next()))
		if s := log.String(); cond(s) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return log.String(), fmt.Errorf("wait for %s's log: %w", container, ctx.Err())
		case <-time.After(every):
		}
	}
}

// KubeFileText turns whole lines of a k8s-file log ("<time> <stream> <P|F>
// <text>", P for a line the runtime split) into the text the container
// wrote, as podman logs prints it. A line not in that format is kept.
func KubeFileText(lines string) string {
	var b strings.Builder
	for line := range strings.Lines(lines) {
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 4)
		if len(f) < 3 || (f[2] != "P" && f[2] != "F") {
			b.WriteString(line)
			continue
		}
		if len(f) == 4 {
			b.WriteString(f[3])
		}
		if f[2] == "F" {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

package adversarial

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/oomhero/oomhero/testenv/app/applog"
	"github.com/oomhero/oomhero/testenv/pods"
)

// Bounds of the sidecar over one case.
const (
	// MaxMemory bounds memory.max_usage_in_bytes of the sidecar's cgroup.
	MaxMemory = 64 << 20
	// MaxCPU bounds cpuacct.usage over the case, as a fraction of one core.
	MaxCPU = 0.20
	// MaxHealthGap is the longest time /healthz may go unanswered once it
	// first answered.
	MaxHealthGap = 10 * time.Second
	// FirstHealth bounds the time from the sidecar's start to its first
	// /healthz answer (loading BPF under load takes seconds).
	FirstHealth = 20 * time.Second
)

// Sidecar is a cgroup v1 container as the host sees it: memory and cpuacct
// directories of its cgroup path.
type Sidecar struct{ Memory, CPU string }

// NewSidecar returns the cgroup v1 directories of a container's cgroup path
// (podman's State.CgroupPath) under the host's cgroupfs at root
// (/sys/fs/cgroup).
func NewSidecar(root, path string) Sidecar {
	return Sidecar{Memory: filepath.Join(root, "memory", path), CPU: filepath.Join(root, "cpuacct", path)}
}

func readUint(name string) (uint64, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: want a decimal number, got %q", name, b)
	}
	return n, nil
}

// MaxUsage returns memory.max_usage_in_bytes.
func (s Sidecar) MaxUsage() (uint64, error) {
	return readUint(filepath.Join(s.Memory, "memory.max_usage_in_bytes"))
}

// CPUTime returns cpuacct.usage (all CPUs).
func (s Sidecar) CPUTime() (time.Duration, error) {
	n, err := readUint(filepath.Join(s.CPU, "cpuacct.usage"))
	return time.Duration(n), err
}

// Monitor samples a sidecar's cgroup every period: the highest
// memory.max_usage_in_bytes seen and the CPU time used, summed across
// re-created cgroups (a restarted container's counters start again at 0).
type Monitor struct {
	s    Sidecar
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	maxMem  uint64
	cpu     time.Duration
	lastCPU time.Duration
	samples int
	errs    int
	lastErr error
}

// StartMonitor starts sampling s.
func StartMonitor(s Sidecar, period time.Duration) *Monitor {
	m := &Monitor{s: s, stop: make(chan struct{}), done: make(chan struct{})}
	m.sample()
	go func() {
		defer close(m.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				m.sample()
				return
			case <-t.C:
				m.sample()
			}
		}
	}()
	return m
}

func (m *Monitor) sample() {
	mem, merr := m.s.MaxUsage()
	cpu, cerr := m.s.CPUTime()
	m.mu.Lock()
	defer m.mu.Unlock()
	if merr != nil || cerr != nil {
		m.errs++
		m.lastErr = errors.Join(merr, cerr)
		return
	}
	m.samples++
	m.maxMem = max(m.maxMem, mem)
	if cpu >= m.lastCPU {
		m.cpu += cpu - m.lastCPU
	} else {
		m.cpu += cpu // a new cgroup
	}
	m.lastCPU = cpu
}

// Stop ends the sampling and returns the highest memory use, the CPU time,
// and an error when no sample could be read.
func (m *Monitor) Stop() (uint64, time.Duration, error) {
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.samples == 0 {
		return 0, 0, fmt.Errorf("sidecar cgroup %s: no sample read (%d errors, last: %v)", m.s.Memory, m.errs, m.lastErr)
	}
	return m.maxMem, m.cpu, nil
}

// Checksum returns the SHA-256 of a file, or a text naming the error.
func Checksum(name string) string {
	f, err := os.Open(name)
	if err != nil {
		return "error: " + err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "error: " + err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Health polls GET /healthz of one address every Period until Stop.
type Health struct {
	URL    string
	Period time.Duration

	mu       sync.Mutex
	ok, fail int
	first    time.Time // first 200
	last     time.Time // last 200
	maxGap   time.Duration
	gapStart time.Time // first failure after an answer
	lastErr  string
	stop     chan struct{}
	done     chan struct{}
}

// StartHealth starts polling url.
func StartHealth(url string, period time.Duration) *Health {
	h := &Health{URL: url, Period: period, stop: make(chan struct{}), done: make(chan struct{})}
	go h.run()
	return h
}

func (h *Health) run() {
	defer close(h.done)
	c := &http.Client{Timeout: 2 * time.Second}
	t := time.NewTicker(h.Period)
	defer t.Stop()
	for {
		ok, msg := probe(c, h.URL)
		now := time.Now()
		h.mu.Lock()
		if ok {
			h.ok++
			if h.first.IsZero() {
				h.first = now
			}
			if !h.gapStart.IsZero() {
				h.maxGap = max(h.maxGap, now.Sub(h.last))
				h.gapStart = time.Time{}
			}
			h.last = now
		} else {
			h.fail++
			h.lastErr = msg
			if !h.last.IsZero() && h.gapStart.IsZero() {
				h.gapStart = now
			}
		}
		h.mu.Unlock()
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
	}
}

func probe(c *http.Client, url string) (bool, string) {
	resp, err := c.Get(url)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("%s: %q", resp.Status, b)
	}
	return true, ""
}

// HealthReport is what a Health poller saw.
type HealthReport struct {
	OK, Fail    int
	First, Last time.Time
	// MaxGap is the longest time without an answer after the first one,
	// an unanswered tail included.
	MaxGap  time.Duration
	LastErr string
	// Stopped is when the polling was stopped: an unanswered tail ends
	// there, not when the caller looks (podman's answers in between took
	// 14 s under the suite's thirteen pods).
	Stopped time.Time
}

// Stop ends the polling and reports.
func (h *Health) Stop() HealthReport {
	stopped := time.Now()
	close(h.stop)
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	r := HealthReport{OK: h.ok, Fail: h.fail, First: h.first, Last: h.last, MaxGap: h.maxGap, LastErr: h.lastErr, Stopped: stopped}
	if !h.gapStart.IsZero() {
		r.MaxGap = max(r.MaxGap, stopped.Sub(h.last))
	}
	return r
}

// logLine matches one record of slog's text handler.
var logLine = regexp.MustCompile(`^time=\S+ level=(DEBUG|INFO|WARN|ERROR)(\+\d+)? msg=`)

// CheckLog returns what is wrong with oomhero's log in format "json" or
// "text": lines that are not one record (a panic, a forged line), invalid
// UTF-8, control characters, and any of the secrets.
func CheckLog(log, format string, secrets ...string) []string {
	var out []string
	add := func(n int, what, line string) {
		if len(out) < 12 {
			if len(line) > 200 {
				line = line[:200] + "..."
			}
			out = append(out, fmt.Sprintf("oomhero log line %d %s: %q", n, what, line))
		}
	}
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" {
			continue
		}
		if !utf8.ValidString(line) {
			add(n, "is not valid UTF-8", line)
		}
		isControl := func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }
		if i := strings.IndexFunc(line, isControl); i >= 0 {
			r, _ := utf8.DecodeRuneInString(line[i:])
			add(n, fmt.Sprintf("holds control character %U", r), line)
		}
		switch format {
		case "text":
			if !logLine.MatchString(line) {
				add(n, "is not one slog text record", line)
			}
		default:
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				add(n, "is not one JSON object", line)
			} else if _, ok := m["level"].(string); !ok {
				add(n, "has no level", line)
			}
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				add(n, "holds a planted secret", line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		out = append(out, fmt.Sprintf("oomhero log: %v", err))
	}
	return out
}

// Runs splits the victim's log into its runs: each starts at an
// "event=start" line (the first, then one per restart after an OOM kill).
func Runs(log string) []string {
	var out []string
	for {
		i := strings.Index(log, "event=start ")
		if i < 0 {
			return out
		}
		j := strings.Index(log[i+1:], "event=start ")
		if j < 0 {
			return append(out, log[i:])
		}
		out = append(out, log[i:i+1+j])
		log = log[i+1+j:]
	}
}

// reactionWindow returns the time from the victim's first sample at or
// above crit bytes of working set to its last sample, and false when no
// sample reached crit.
func reactionWindow(lg applog.Log, crit uint64) (time.Duration, bool) {
	for _, s := range lg.Samples {
		if s.WorkingSet >= crit {
			return lg.Samples[len(lg.Samples)-1].Mono - s.Mono, true
		}
	}
	return 0, false
}

// getBody GETs url and returns the body (at most 4 MiB).
func getBody(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, b, err
}

// Sink is an HTTP listener on the host (all addresses) that records every
// request: where a notification must never arrive.
type Sink struct {
	ln  net.Listener
	srv *http.Server

	mu   sync.Mutex
	reqs []string
}

// StartSink listens on a free port of every host address.
func StartSink() (*Sink, error) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s := &Sink{ln: ln}
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, fmt.Sprintf("%s %s from %s", r.Method, r.URL, r.RemoteAddr))
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go s.srv.Serve(ln)
	return s, nil
}

// Port returns the sink's port.
func (s *Sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Requests returns the requests received, but the reachability probe
// (path /probe).
func (s *Sink) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.reqs {
		if !strings.HasPrefix(r, "GET /probe ") {
			out = append(out, r)
		}
	}
	return out
}

// Probed tells whether the reachability probe arrived.
func (s *Sink) Probed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.reqs {
		if strings.HasPrefix(r, "GET /probe ") {
			return true
		}
	}
	return false
}

// Close stops the sink.
func (s *Sink) Close() error { return s.srv.Close() }

// kubeNetwork is the network podman kube play attaches pods to.
const kubeNetwork = "podman-default-kube-network"

// gateway returns the host's address on the kube play network (created as
// kube play would, when missing).
func gateway(ctx context.Context, l *pods.Lab) (string, error) {
	if _, err := l.Podman(ctx, "network", "exists", kubeNetwork); err != nil {
		if _, err := l.Podman(ctx, "network", "create", kubeNetwork); err != nil && !strings.Contains(err.Error(), "already") {
			return "", fmt.Errorf("create network %s: %w", kubeNetwork, err)
		}
	}
	out, err := l.Podman(ctx, "network", "inspect", "--format", "{{range .Subnets}}{{.Gateway}} {{end}}", kubeNetwork)
	if err != nil {
		return "", err
	}
	for _, f := range strings.Fields(string(out)) {
		if ip := net.ParseIP(f); ip != nil && ip.To4() != nil {
			return f, nil
		}
	}
	return "", fmt.Errorf("network %s: no IPv4 gateway in %q", kubeNetwork, out)
}

// containerLabels returns the distinct values of the container label in a
// Prometheus text exposition.
func containerLabels(body []byte) []string {
	seen := map[string]bool{}
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.Index(line, `container="`)
		if i < 0 {
			continue
		}
		rest := line[i+len(`container="`):]
		j := strings.Index(rest, `"`)
		for j > 0 && rest[j-1] == '\\' {
			k := strings.Index(rest[j+1:], `"`)
			if k < 0 {
				break
			}
			j += 1 + k
		}
		if j < 0 {
			continue
		}
		if v := rest[:j]; !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// Package watch holds the types every part of oomhero shares: a watched
// container, a memory reading of one container, and the Source interface that
// the BPF loader and the cgroupfs fallback both implement.
//
// It is a leaf package: it imports nothing of oomhero.
package watch

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// CgroupVersion is the cgroup hierarchy version of a container's memory cgroup.
type CgroupVersion int

// Cgroup versions.
const (
	V1 CgroupVersion = 1
	V2 CgroupVersion = 2
)

func (v CgroupVersion) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return fmt.Sprintf("v?(%d)", int(v))
}

// Level is a container's memory level.
type Level int

// Levels, in increasing order of danger.
const (
	OK Level = iota
	Warning
	Critical
)

func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// Metric names the memory figure compared with the thresholds.
type Metric string

// Metrics.
const (
	// WorkingSet is usage minus inactive file cache, as kubelet judges it.
	WorkingSet Metric = "workingset"
	// Usage is the kernel's charge counter, page cache included (the seed's figure).
	Usage Metric = "usage"
	// RSS is anonymous memory only.
	RSS Metric = "rss"
)

// ParseMetric parses a metric name.
func ParseMetric(s string) (Metric, error) {
	switch Metric(s) {
	case WorkingSet, Usage, RSS:
		return Metric(s), nil
	case "working-set", "working_set", "ws":
		return WorkingSet, nil
	}
	return "", fmt.Errorf("unknown metric %q (accepted: workingset, usage, rss)", s)
}

// Container is one container oomhero watches: the processes that share one
// memory cgroup.
type Container struct {
	// ID is the cgroup id: the inode number of the container's memory cgroup
	// directory (on cgroup v1 the memory hierarchy's directory). It equals the
	// kernel's memcg->css.cgroup->kn->id.
	ID uint64
	// Name is a human name: the container name when known, else the cgroup path.
	Name string
	// Namespace and Pod name the container's pod when known (node mode:
	// from the API server or the cgroup path; sidecar: its own pod's
	// POD_NAMESPACE and POD_NAME); "" otherwise.
	Namespace, Pod string
	// PodUID is the pod's UID when known (node mode), for Events.
	PodUID string
	// Path is the cgroup path as /proc/<pid>/cgroup shows it.
	Path string
	// Dir is the directory oomhero reads the cgroup files from.
	Dir CgroupDir
	// Version is the cgroup version of Dir.
	Version CgroupVersion
	// Limit is the effective memory limit in bytes (0 when there is none).
	Limit uint64
	// PIDs are the container's processes, in increasing order.
	PIDs []int
}

// CgroupDir names a container's cgroup directory as two parts kept apart: a
// trusted Root that oomhero chose (/proc/<pid>/root under its own --proc,
// the --cgroup-root mount) and an untrusted Rel resolved beneath it without
// following links (package safefs). Ino, when not zero, is the inode the
// directory had when it was resolved: an open that finds another directory
// there is refused. CgroupDir is comparable.
type CgroupDir struct {
	Root string
	Rel  string
	Ino  uint64
}

// String returns the directory as one path, for logs.
func (d CgroupDir) String() string {
	rel := d.Rel
	for len(rel) > 0 && rel[0] == '/' {
		rel = rel[1:]
	}
	switch {
	case rel == "" || rel == ".":
		return d.Root
	case d.Root == "" || d.Root[len(d.Root)-1] == '/':
		return d.Root + rel
	}
	return d.Root + "/" + rel
}

// MarshalText makes a CgroupDir one string in structured logs.
func (d CgroupDir) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// IsZero tells whether d names no directory.
func (d CgroupDir) IsZero() bool { return d.Root == "" && d.Rel == "" }

// Target is a container together with its thresholds, what a Source is told
// to watch.
type Target struct {
	Container
	// Warn and Crit are the thresholds in bytes of the configured Metric.
	Warn, Crit uint64
	// Metric is the figure the thresholds apply to.
	Metric Metric
}

// Reading is one memory sample of one container. All sizes are in bytes.
type Reading struct {
	// ID is the container's cgroup id.
	ID uint64
	// Time is when the figures were read.
	Time time.Time
	// Usage is the kernel's charge counter (memory.usage_in_bytes on v1,
	// memory.current on v2), page cache included.
	Usage uint64
	// InactiveFile is the inactive file cache (total_inactive_file on v1,
	// inactive_file on v2).
	InactiveFile uint64
	// ActiveFile is the active file cache (total_active_file on v1,
	// active_file on v2); 0 where memory.stat lacks it.
	ActiveFile uint64
	// Anon is anonymous memory (total_rss on v1, anon on v2).
	Anon uint64
	// Limit is the memory limit in effect.
	Limit uint64
	// Origin says what produced the reading, for logs and metrics
	// ("poll", "bpf", "resync").
	Origin string
	// Latency, when not zero, is the time from the kernel event that caused
	// the reading to its delivery.
	Latency time.Duration
	// Err, when not nil, says the figures could not be read (the cgroup may
	// be gone); the other figures are then meaningless.
	Err error
	// Sent lists the signals sent ahead of the agent for this reading
	// (package express), from the goroutine that read it.
	Sent []Sent
}

// Sent is one signal that the source's goroutine sent for a reading, as
// the agent had armed it (package express): to process PID (started at
// Start) at At; Err, when not nil, says why it was not sent.
type Sent struct {
	Level  Level
	PID    int
	Start  uint64
	Signal int
	At     time.Time
	Err    error
	// Kernel: the source's BPF program sent it itself, on the crossing.
	Kernel bool
}

// WorkingSet returns usage minus inactive file cache (never below zero).
func (r Reading) WorkingSet() uint64 {
	if r.InactiveFile > r.Usage {
		return 0
	}
	return r.Usage - r.InactiveFile
}

// Value returns the figure named by m.
func (r Reading) Value(m Metric) uint64 {
	switch m {
	case Usage:
		return r.Usage
	case RSS:
		return r.Anon
	default:
		return r.WorkingSet()
	}
}

// Source reports memory readings of the watched containers. Two
// implementations exist: the BPF loader (package loader) and the cgroupfs
// poller (package fallback). Nothing above a Source knows which is active.
type Source interface {
	// Name describes the source, for example "cgroupfs" or
	// "bpf tp_btf/mod_memcg_lruvec_state".
	Name() string
	// Update replaces the set of watched targets. It is safe to call
	// concurrently with Run; a source reports a reading of each new target
	// soon after Update.
	Update(targets []Target)
	// Run sends readings to out whenever something changed that policy must
	// see, until ctx ends. It releases every file descriptor, link and map
	// before it returns. It returns nil when ctx ended, an error otherwise.
	Run(ctx context.Context, out chan<- Reading) error
}

// ErrUnavailable marks an error of a source that cannot work on this host
// (missing kernel feature, missing privilege). Callers fall back to another
// source on it; any other error is inconclusive and must be reported.
var ErrUnavailable = errors.New("source unavailable")

// ErrNoLimit is returned when a cgroup has no memory limit.
var ErrNoLimit = errors.New("no memory limit")

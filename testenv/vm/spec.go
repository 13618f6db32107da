package vm

import (
	"encoding/json"
	"fmt"
	"time"
)

// Spec is what the guest runner does in one boot. Pods and Commands run
// concurrently; the guest powers off when all of them are done or when
// Timeout has passed.
type Spec struct {
	Pods     []Pod     `json:"pods,omitempty"`
	Commands []Command `json:"commands,omitempty"`
	// Timeout bounds the whole run inside the guest (default 60 s).
	Timeout Duration `json:"timeout,omitempty"`
	// DataMiB, when not zero, makes a RAM disk of that size (brd, not
	// charged to any cgroup) with an ext2 file system mounted on /data:
	// files there make real page cache (tmpfs pages are shmem).
	DataMiB int `json:"data_mib,omitempty"`
	// Sysctls are "name=value" pairs written under /proc/sys before
	// anything starts (name with dots, like sysctl(8)).
	Sysctls []string `json:"sysctls,omitempty"`
}

// Pod is a set of containers sharing one PID namespace, like a Kubernetes pod
// with shareProcessNamespace: true.
type Pod struct {
	Name string `json:"name"`
	// MemoryMax is the pod-level memory.max in bytes; 0 means none.
	MemoryMax int64 `json:"memory_max,omitempty"`
	// Containers start in order, each after its StartDelay.
	Containers []Container `json:"containers"`
	// Duration is the longest the pod runs; then every container still
	// running gets SIGTERM, and SIGKILL one second later.
	Duration Duration `json:"duration"`
	// Linger, when not zero, ends the pod this long after every container
	// marked Main has exited.
	Linger Duration `json:"linger,omitempty"`
}

// Container is one process tree in its own cgroup, mount namespace and
// cgroup namespace.
type Container struct {
	Name string `json:"name"`
	// MemoryMax is memory.max in bytes; 0 means no limit ("max").
	MemoryMax int64 `json:"memory_max,omitempty"`
	// Args is the command line; Args[0] is a path in the guest.
	Args []string `json:"args"`
	// Env is added to a minimal environment (PATH, HOME).
	Env []string `json:"env,omitempty"`
	// StartDelay is how long after the pod started the container starts.
	StartDelay Duration `json:"start_delay,omitempty"`
	// Main marks the containers whose exit ends the pod (after Pod.Linger).
	Main bool `json:"main,omitempty"`
	// EndOn, when not empty, ends the pod EndWait after the first output
	// line of this container that contains EndOn: scenarios end on what
	// happened, not on a guess of how fast the emulated machine is.
	EndOn   string   `json:"end_on,omitempty"`
	EndWait Duration `json:"end_wait,omitempty"`
}

// Command is a program run in the VM's root namespaces, for example a test
// binary built with go test -c.
type Command struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	// Timeout kills the command (SIGKILL) after this long; 0 means the
	// Spec's timeout.
	Timeout Duration `json:"timeout,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as "1.5s".
type Duration time.Duration

// D is a shorthand for Duration(d).
func D(d time.Duration) Duration { return Duration(d) }

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Event kinds the guest reports.
const (
	KindBoot  = "boot"  // runner started: Text is the kernel release
	KindStart = "start" // container or command started: PID
	KindLine  = "line"  // one output line: Stream, Text
	KindExit  = "exit"  // container or command ended: Code, Signal
	KindFile  = "file"  // a container cgroup file at pod end: Stream is its name, Text its content
	KindKmsg  = "kmsg"  // a kernel log line: Text, T is the kernel's timestamp
	KindError = "error" // the runner failed at something: Text
	KindDone  = "done"  // a pod or command is finished
	KindEnd   = "end"   // the runner is about to power off
)

// Event is one JSON line the guest writes to ttyS1.
type Event struct {
	Kind string `json:"k"`
	// T is the guest's CLOCK_MONOTONIC in nanoseconds.
	T int64 `json:"t"`
	// Pod and Container name where the event comes from; for commands Pod is
	// empty and Container is the command's name.
	Pod       string `json:"pod,omitempty"`
	Container string `json:"c,omitempty"`
	Stream    string `json:"s,omitempty"`
	Text      string `json:"x,omitempty"`
	PID       int    `json:"pid,omitempty"`
	Code      int    `json:"code,omitempty"`
	Signal    string `json:"sig,omitempty"`
}

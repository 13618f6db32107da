// Package config reads oomhero's configuration from flags and environment.
//
// Every option is a flag and has an OOMHERO_<NAME> environment mirror; the
// five names of the original contract (WARNING, CRITICAL, WARNING_SIGNAL,
// CRITICAL_SIGNAL, COOLDOWN) are accepted too. Precedence: flag, then
// OOMHERO_<NAME>, then the contract name, then the default. Bad input is an
// error naming the variable, the value and what is accepted: never a silent
// default.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/watch"
)

// Targets says which processes of a container receive the signals.
type Targets string

// Target modes.
const (
	// Handlers: only processes whose SigCgt shows a handler for the signal.
	Handlers Targets = "handlers"
	// Main: the container's first process only.
	Main Targets = "main"
	// All: every process of the container (the original behaviour).
	All Targets = "all"
	// Largest: the process with the most resident memory among those with
	// a handler for the signal.
	Largest Targets = "largest"
)

// Repeat says how often a level's signal goes out while the container stays
// at that level.
type Repeat string

// Repeat modes.
const (
	// Cooldown: again every cooldown while at the level (the original
	// contract).
	Cooldown Repeat = "cooldown"
	// Once: once per crossing; a level left and entered again is a new
	// crossing.
	Once Repeat = "once"
)

// Allow opts in one runtime handler that the runtime safety table calls
// harmful: signal Signal may be sent to processes of runtime Runtime.
type Allow struct {
	Runtime string
	Signal  unix.Signal
}

func (a Allow) String() string { return a.Runtime + ":" + SignalName(a.Signal) }

// Config is oomhero's effective configuration.
type Config struct {
	Warning, Critical int // percent of the limit, 1..100
	WarningSignal     unix.Signal
	CriticalSignal    unix.Signal
	Cooldown          time.Duration
	Repeat            Repeat
	Hysteresis        int // percentage points below a threshold to leave its level
	// WarningPressure and CriticalPressure are memory pressure triggers:
	// percent of time all tasks stalled on memory ("full avg10" of PSI);
	// 0 is off.
	WarningPressure, CriticalPressure int
	Metric                            watch.Metric
	Targets                           Targets
	// Allow lists the runtime handlers opted in with --allow.
	Allow []Allow
	// NotifyURL is the HTTP channel's default URL ("" none).
	NotifyURL string
	// NotifyRemote allows notification URLs whose host is not loopback.
	NotifyRemote          bool
	Source                string // auto, bpf, cgroupfs
	Interval, MinInterval time.Duration
	Rescan                time.Duration
	Proc                  string
	CgroupRoot            string // host cgroupfs mount, optional (node mode)
	CgroupMatch           string
	LogFormat             string
	LogLevel              slog.Level
	Listen                string
	HealthSocket          string // unix socket for exec probes (oomhero probe); "" = none
	Events                bool
	Realtime              bool // BPF ring reader at SCHED_FIFO
	KernelSend            bool // BPF program sends armed levels itself
	Version               bool

	// Mode is ModeSidecar (oomhero [options]) or ModeNode (oomhero node
	// [options]).
	Mode string
	// OptIn says which containers are watched: OptInAll (every container
	// that did not opt out: the sidecar's default) or OptInDeclared (only
	// containers that opted in: node mode's default).
	OptIn string
	// NodeName is the node's name (node mode: pods are listed for this
	// node only).
	NodeName string
	// Kubeconfig is the kubeconfig file of the API server (node mode; ""
	// is the in-cluster service account).
	Kubeconfig string
	// Kube is KubeAuto (use the API server when in a cluster or
	// Kubeconfig is set) or KubeOff (node mode).
	Kube string

	// DryRun: everything runs, but signals and notifications are logged
	// and counted instead of sent.
	DryRun bool
	// IncludeContainer and ExcludeContainer select containers by the name
	// oomhero gives them; IncludeCommand and ExcludeCommand select the
	// processes that may be signalled by their command (/proc/<pid>/comm).
	// nil: no pattern. An exclude wins over an include.
	IncludeContainer, ExcludeContainer *regexp.Regexp
	IncludeCommand, ExcludeCommand     *regexp.Regexp
}

// Modes.
const (
	ModeSidecar = "sidecar"
	ModeNode    = "node"
)

// Opt-in policies (--opt-in).
const (
	// OptInAll: every container is watched unless it opted out
	// (OOMHERO=off, or the pod annotation oomhero.dev/watch: "false").
	OptInAll = "all"
	// OptInDeclared: a container is watched only if it opted in (OOMHERO=on
	// or any OOMHERO_* declaration in its environment, or the pod
	// annotation oomhero.dev/watch).
	OptInDeclared = "declared"
)

// API server use (--kube).
const (
	KubeAuto = "auto"
	KubeOff  = "off"
)

// Node reports whether oomhero runs as the node agent.
func (c *Config) Node() bool { return c.Mode == ModeNode }

// Error is a configuration error: which variable, which value, what is accepted.
type Error struct {
	Name, Value, Accepted string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s=%q: %s", e.Name, e.Value, e.Accepted)
}

// ErrHelp is returned when --help was asked for; usage has been printed.
var ErrHelp = flag.ErrHelp

type option struct {
	name    string // flag name
	seed    string // contract env name, if any
	def     string
	usage   string
	set     func(c *Config, v string) error
	flagVal *string
	// boolean: the flag alone means true (--dry-run); --dry-run=false
	// also works.
	boolean bool
	// nodeDef, when not empty, is the default in node mode ("\x01": the
	// empty string).
	nodeDef string
	// nodeOnly options exist only in node mode.
	nodeOnly bool
}

// defIn returns the option's default in mode.
func (o *option) defIn(mode string) string {
	if mode == ModeNode && o.nodeDef != "" {
		if o.nodeDef == "\x01" {
			return ""
		}
		return o.nodeDef
	}
	return o.def
}

// boolFlag is a string flag that may be given without a value.
type boolFlag struct{ p *string }

func (b boolFlag) String() string {
	if b.p == nil {
		return ""
	}
	return *b.p
}
func (b boolFlag) Set(v string) error { *b.p = v; return nil }
func (b boolFlag) IsBoolFlag() bool   { return true }

func (o *option) env() string {
	return "OOMHERO_" + strings.ToUpper(strings.ReplaceAll(o.name, "-", "_"))
}

// Accepted values, for errors naming a variable.
const (
	TargetsAccepted   = "one of handlers, main, all, largest"
	RepeatAccepted    = "one of cooldown, once"
	SignalAccepted    = "a Linux signal name (SIGUSR1, usr1, SIGTERM, RTMIN+2, ...), number 1..64, or none"
	CooldownAccepted  = "a positive Go duration (like 1s, 1m30s) or a whole number of seconds"
	ThresholdAccepted = thresholdAccepted
	URLAccepted       = "an absolute http:// URL with a host, like http://127.0.0.1:8080/oomhero (https:// only with --notify-remote)"
)

const (
	thresholdAccepted = "a whole number of percent from 1 to 100"
	pressureAccepted  = "a whole number of percent from 0 (off) to 100"
)

// percent parses a whole number of percent from lo to 100 ("65" or "65%").
func percent(dst *int, lo int, accepted string) func(*Config, string) error {
	return func(_ *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), "%"))
		if err != nil || n < lo || n > 100 {
			return errors.New(accepted)
		}
		*dst = n
		return nil
	}
}

func options(c *Config) []*option {
	return []*option{
		{name: "warning", seed: "WARNING", def: "75", usage: "warning threshold, percent of the memory limit (1..100)",
			set: func(c *Config, v string) error { return percent(&c.Warning, 1, thresholdAccepted)(c, v) }},
		{name: "critical", seed: "CRITICAL", def: "90", usage: "critical threshold, percent of the memory limit (1..100, >= warning)",
			set: func(c *Config, v string) error { return percent(&c.Critical, 1, thresholdAccepted)(c, v) }},
		{name: "warning-signal", seed: "WARNING_SIGNAL", def: "SIGUSR1", usage: "signal sent at the warning level (name with or without SIG, any case, or number; none: no signal)",
			set: func(c *Config, v string) (err error) { c.WarningSignal, err = ParseSignalOrNone(v); return }},
		{name: "critical-signal", seed: "CRITICAL_SIGNAL", def: "SIGUSR2", usage: "signal sent at the critical level (none: no signal)",
			set: func(c *Config, v string) (err error) { c.CriticalSignal, err = ParseSignalOrNone(v); return }},
		{name: "cooldown", seed: "COOLDOWN", def: "1s", usage: "while at a level, signal again every cooldown (Go duration, or a whole number of seconds; --repeat cooldown)",
			set: func(c *Config, v string) (err error) { c.Cooldown, err = ParseCooldown(v); return }},
		{name: "repeat", def: string(Cooldown), usage: "repeat policy: cooldown (signal again every cooldown while at a level), once (once per crossing: for handlers that reload or dump)",
			set: func(c *Config, v string) (err error) { c.Repeat, err = ParseRepeat(v); return }},
		{name: "hysteresis", def: "1", usage: "percentage points of the limit below a threshold before its level is left (0..10)",
			set: func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err != nil || n < 0 || n > 10 {
					return errors.New("a whole number from 0 to 10")
				}
				c.Hysteresis = n
				return nil
			}},
		{name: "warning-pressure", def: "0", usage: "also warn when the container's memory pressure (PSI full avg10, percent of time all its tasks stalled on memory; cgroup v2) reaches this (0: off)",
			set: percent(&c.WarningPressure, 0, pressureAccepted)},
		{name: "critical-pressure", def: "0", usage: "also go critical when memory pressure (PSI full avg10) reaches this percent (0: off)",
			set: percent(&c.CriticalPressure, 0, pressureAccepted)},
		{name: "metric", def: string(watch.WorkingSet), usage: "memory figure compared with the thresholds: workingset (usage minus inactive file cache, as kubelet judges), usage (page cache included), rss (anonymous memory)",
			set: func(c *Config, v string) (err error) {
				c.Metric, err = watch.ParseMetric(strings.ToLower(v))
				if err != nil {
					return errors.New("one of workingset, usage, rss")
				}
				return nil
			}},
		{name: "targets", def: string(Handlers), usage: "processes signalled: handlers (those with a handler for the signal, minus runtime handlers the safety table calls harmful), main (the container's first process), all (every process), largest (the handler with the most resident memory)",
			set: func(c *Config, v string) (err error) { c.Targets, err = ParseTargets(v); return }},
		{name: "allow", def: "", usage: "runtime handlers to signal although the safety table calls them harmful: runtime:SIGNAL[,runtime:SIGNAL...], e.g. node:SIGUSR2,hotspot:SIGUSR1",
			set: func(c *Config, v string) (err error) { c.Allow, err = ParseAllow(v); return }},
		{name: "notify-url", def: "", usage: "HTTP channel: POST a JSON notification to this URL on every decision that would signal (containers may declare their own OOMHERO_NOTIFY_URL; empty: none)",
			set: func(c *Config, v string) (err error) { c.NotifyURL, err = ParseURL(v); return }},
		{name: "notify-remote", def: "false", usage: "HTTP channel: allow URLs whose host is not a loopback address (default: only 127.0.0.0/8, ::1, localhost)",
			set: func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return errors.New("true or false")
				}
				c.NotifyRemote = b
				return nil
			}},
		{name: "source", def: "auto", usage: "memory source: auto (BPF, else cgroupfs polling), bpf (fail if BPF cannot load), cgroupfs",
			set: func(c *Config, v string) error {
				switch v = strings.ToLower(v); v {
				case "auto", "bpf", "cgroupfs":
					c.Source = v
					return nil
				}
				return errors.New("one of auto, bpf, cgroupfs")
			}},
		{name: "interval", def: "100ms", usage: "cgroupfs source: longest poll interval; it tightens as usage nears a threshold",
			set: durationIn(&c.Interval, time.Millisecond, time.Minute)},
		{name: "min-interval", def: "2ms", usage: "cgroupfs source: shortest poll interval",
			set: durationIn(&c.MinInterval, 100*time.Microsecond, time.Minute)},
		{name: "rescan", def: "1s", usage: "how often processes and containers are rediscovered",
			set: durationIn(&c.Rescan, 10*time.Millisecond, time.Hour)},
		{name: "proc", def: "/proc", nodeDef: "/proc", usage: "procfs mount to scan for processes (oomhero's own PID namespace: the pod's with shareProcessNamespace, the host's with hostPID in node mode)",
			set: func(c *Config, v string) error { c.Proc = v; return nonEmpty(v) }},
		{name: "cgroup-root", def: "", nodeDef: "/host/sys/fs/cgroup", usage: "host cgroupfs mount point (node mode: a read-only hostPath mount of the node's /sys/fs/cgroup); empty: each container's cgroup is read through /proc/<pid>/root/sys/fs/cgroup",
			set: func(c *Config, v string) error { c.CgroupRoot = v; return nil }},
		{name: "opt-in", def: OptInAll, nodeDef: OptInDeclared, usage: "which containers are watched: declared (only those that opted in: OOMHERO=on or any OOMHERO_* variable in their environment, or the pod annotation oomhero.dev/watch), all (every container that did not opt out: OOMHERO=off, or oomhero.dev/watch: \"false\")",
			set: func(c *Config, v string) (err error) { c.OptIn, err = ParseOptIn(v); return }},
		{name: "node-name", seed: "NODE_NAME", def: "", nodeOnly: true, usage: "node mode: this node's name (the Downward API's spec.nodeName): pods are listed for this node only; empty: containers are named by their cgroup path",
			set: func(c *Config, v string) (err error) { c.NodeName, err = ParseNodeName(v); return }},
		{name: "kubeconfig", seed: "KUBECONFIG", def: "", nodeOnly: true, usage: "node mode: kubeconfig file of the API server (empty: the in-cluster service account)",
			set: func(c *Config, v string) error { c.Kubeconfig = strings.TrimSpace(v); return nil }},
		{name: "kube", def: KubeAuto, nodeOnly: true, usage: "node mode: auto (name pods through the API server when in a cluster or --kubeconfig is set), off (never: containers are named by their cgroup path, pod annotations are not read)",
			set: func(c *Config, v string) error {
				switch v = strings.ToLower(strings.TrimSpace(v)); v {
				case KubeAuto, KubeOff:
					c.Kube = v
					return nil
				}
				return errors.New("one of auto, off")
			}},
		{name: "cgroup-match", def: "", usage: "watch only containers whose cgroup path contains this string (empty: all)",
			set: func(c *Config, v string) error { c.CgroupMatch = v; return nil }},
		{name: "dry-run", def: "false", boolean: true, usage: "try before you trust: discovery, sources, policy, runtime safety and target choice all run, but each signal and HTTP notification is logged (\"signal not sent (dry run)\") and counted as result dry_run instead of sent; a container may declare OOMHERO_DRY_RUN=true or false for itself",
			set: func(c *Config, v string) (err error) { c.DryRun, err = ParseBool(v); return }},
		{name: "include-container", def: "", usage: "watch only containers whose name (as oomhero logs it) matches this regular expression (Go RE2, unanchored; empty: all)",
			set: func(c *Config, v string) (err error) { c.IncludeContainer, err = ParsePattern(v); return }},
		{name: "exclude-container", def: "", usage: "never signal nor report containers whose name matches this regular expression (Go RE2, unanchored; wins over --include-container)",
			set: func(c *Config, v string) (err error) { c.ExcludeContainer, err = ParsePattern(v); return }},
		{name: "include-command", def: "", usage: "signal only processes whose command (/proc/<pid>/comm) matches this regular expression (Go RE2, unanchored; empty: all)",
			set: func(c *Config, v string) (err error) { c.IncludeCommand, err = ParsePattern(v); return }},
		{name: "exclude-command", def: "", usage: "never signal processes whose command matches this regular expression (Go RE2, unanchored; wins over --include-command)",
			set: func(c *Config, v string) (err error) { c.ExcludeCommand, err = ParsePattern(v); return }},
		{name: "log-format", def: "text", usage: "log format: text or json",
			set: func(c *Config, v string) error {
				switch v = strings.ToLower(v); v {
				case "text", "json":
					c.LogFormat = v
					return nil
				}
				return errors.New("one of text, json")
			}},
		{name: "log-level", def: "info", usage: "log level: debug (also logs every sample), info, warn, error",
			set: func(c *Config, v string) error {
				if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
					return errors.New("one of debug, info, warn, error")
				}
				return nil
			}},
		{name: "realtime", def: "false", usage: "BPF source: read the ring buffer from a SCHED_FIFO thread, so signals go out on time on a busy node (needs CAP_SYS_NICE)",
			set: func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return errors.New("true or false")
				}
				c.Realtime = b
				return nil
			}},
		{name: "kernel-send", def: "true", usage: "BPF source: the program signals the processes the agent vetted itself, on the page that crosses a threshold (Linux 6.13 or later, the tp_btf attach point); false: every signal goes from oomhero's reader",
			set: func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return errors.New("true or false")
				}
				c.KernelSend = b
				return nil
			}},
		{name: "listen", def: ":9090", usage: "address of the HTTP server for /healthz, /readyz and /metrics (empty: no server)",
			set: func(c *Config, v string) error { c.Listen = v; return nil }},
		{name: "health-socket", def: "", usage: "unix socket serving /healthz and /readyz for exec probes (oomhero probe SOCKET); put it in a directory only oomhero's container mounts (empty: none)",
			set: func(c *Config, v string) error { c.HealthSocket = v; return nil }},
		{name: "events", def: "auto", usage: "Kubernetes Events on the pod: auto (on when running in a pod whose service account may create them), off",
			set: func(c *Config, v string) error {
				switch strings.ToLower(v) {
				case "auto", "on", "true":
					c.Events = true
				case "off", "false":
					c.Events = false
				default:
					return errors.New("one of auto, off")
				}
				return nil
			}},
	}
}

func nonEmpty(v string) error {
	if v == "" {
		return errors.New("a path")
	}
	return nil
}

func durationIn(dst *time.Duration, lo, hi time.Duration) func(*Config, string) error {
	return func(_ *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < lo || d > hi {
			return fmt.Errorf("a Go duration from %v to %v", lo, hi)
		}
		*dst = d
		return nil
	}
}

// ParseCooldown parses a cooldown: a positive Go duration or a whole number
// of seconds.
func ParseCooldown(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if n, err := strconv.Atoi(v); err == nil {
		if n < 1 {
			return 0, errors.New(CooldownAccepted)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New(CooldownAccepted)
	}
	return d, nil
}

// ParseThreshold parses a threshold: a whole number of percent from 1 to
// 100 ("65" or "65%").
func ParseThreshold(v string) (int, error) {
	var n int
	err := percent(&n, 1, thresholdAccepted)(nil, v)
	return n, err
}

// OptInAccepted is what --opt-in accepts.
const OptInAccepted = "one of declared, all"

// ParseOptIn parses an --opt-in policy, in any case.
func ParseOptIn(v string) (string, error) {
	switch v = strings.ToLower(strings.TrimSpace(v)); v {
	case OptInAll, OptInDeclared:
		return v, nil
	}
	return "", errors.New(OptInAccepted)
}

// ParseNodeName checks a node name: empty, or a DNS-1123 subdomain (at most
// 253 of a-z, 0-9, '-' and '.', starting and ending with a letter or
// digit), as Kubernetes requires of node names.
func ParseNodeName(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", nil
	}
	ok := len(v) <= 253
	for _, label := range strings.Split(v, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			ok = false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				ok = false
			}
		}
	}
	if !ok {
		return "", errors.New("a Kubernetes node name: lower-case letters, digits, '-' and '.', at most 253 characters (spec.nodeName)")
	}
	return v, nil
}

// ParseTargets parses a --targets mode, in any case.
func ParseTargets(v string) (Targets, error) {
	switch t := Targets(strings.ToLower(strings.TrimSpace(v))); t {
	case Handlers, Main, All, Largest:
		return t, nil
	}
	return "", errors.New(TargetsAccepted)
}

// BoolAccepted is what a boolean option accepts.
const BoolAccepted = "true or false (1, t, T, TRUE, True, 0, f, F, FALSE, False)"

// ParseBool parses a boolean option as strconv.ParseBool does.
func ParseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		return false, errors.New(BoolAccepted)
	}
	return b, nil
}

// ParsePattern compiles a selection pattern: a Go RE2 regular expression
// (https://github.com/google/re2/wiki/Syntax), unanchored; "" is no pattern
// (nil).
func ParsePattern(v string) (*regexp.Regexp, error) {
	if v == "" {
		return nil, nil
	}
	re, err := regexp.Compile(v)
	if err != nil {
		return nil, fmt.Errorf("a Go RE2 regular expression (%v)", err)
	}
	return re, nil
}

// selected applies an include and an exclude pattern to s: the exclude
// wins; no include means everything is included. why says which pattern
// decided a "no".
func selected(s string, include, exclude *regexp.Regexp, incName, exName string) (ok bool, why string) {
	if exclude != nil && exclude.MatchString(s) {
		return false, fmt.Sprintf("matches %s %q", exName, exclude.String())
	}
	if include != nil && !include.MatchString(s) {
		return false, fmt.Sprintf("does not match %s %q", incName, include.String())
	}
	return true, ""
}

// ContainerSelected reports whether the container named name is selected by
// --include-container and --exclude-container, and when it is not, why.
func (c *Config) ContainerSelected(name string) (bool, string) {
	return selected(name, c.IncludeContainer, c.ExcludeContainer, "--include-container", "--exclude-container")
}

// CommandSelected reports whether a process whose command is comm may be
// signalled by --include-command and --exclude-command, and when it may
// not, why.
func (c *Config) CommandSelected(comm string) (bool, string) {
	return selected(comm, c.IncludeCommand, c.ExcludeCommand, "--include-command", "--exclude-command")
}

// ParseRepeat parses a repeat policy, in any case.
func ParseRepeat(v string) (Repeat, error) {
	switch r := Repeat(strings.ToLower(strings.TrimSpace(v))); r {
	case Cooldown, Once:
		return r, nil
	}
	return "", errors.New(RepeatAccepted)
}

// ParseSignalOrNone parses a signal as ParseSignal does, or "none" (any
// case), which is 0: no signal at that level.
func ParseSignalOrNone(v string) (unix.Signal, error) {
	if strings.EqualFold(strings.TrimSpace(v), "none") {
		return 0, nil
	}
	sig, err := ParseSignal(v)
	if err != nil {
		return 0, errors.New(SignalAccepted)
	}
	return sig, nil
}

// ParseURL checks a notification URL: empty (none), or an absolute http://
// or https:// URL with a host. Whether its host may be reached is decided
// when it is used (loopback only unless --notify-remote).
func ParseURL(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", errors.New(URLAccepted)
	}
	return v, nil
}

// ParseAllow parses --allow: runtime:SIGNAL pairs separated by commas
// (empty: none). A runtime is a short lower-case id as the runtime safety
// table names it (hotspot, node, postgres, ...).
func ParseAllow(v string) ([]Allow, error) {
	const accepted = "runtime:SIGNAL pairs separated by commas, like node:SIGUSR2,hotspot:SIGUSR1 (runtime: lower-case letters, digits, '-' and '_')"
	var out []Allow
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		rt, sigName, ok := strings.Cut(item, ":")
		if !ok || rt == "" || strings.TrimLeft(rt, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return nil, errors.New(accepted)
		}
		sig, err := ParseSignal(sigName)
		if err != nil {
			return nil, errors.New(accepted)
		}
		out = append(out, Allow{Runtime: rt, Signal: sig})
	}
	return out, nil
}

// Allowed reports whether --allow opts in signal sig for runtime rt.
func (c *Config) Allowed(rt string, sig unix.Signal) bool {
	for _, a := range c.Allow {
		if a.Runtime == rt && a.Signal == sig {
			return true
		}
	}
	return false
}

// ParseSignal parses a Linux signal: a name with or without "SIG" in any
// case (USR1, sigterm, RTMIN+2), or a number from 1 to 64.
func ParseSignal(v string) (unix.Signal, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	if n, err := strconv.Atoi(s); err == nil {
		if n >= 1 && n <= 64 {
			return unix.Signal(n), nil
		}
	} else {
		if !strings.HasPrefix(s, "SIG") {
			s = "SIG" + s
		}
		if sig := unix.SignalNum(s); sig != 0 {
			return sig, nil
		}
		if rt, ok := strings.CutPrefix(s, "SIGRTMIN"); ok {
			off, perr := 0, error(nil)
			if rt != "" {
				off, perr = strconv.Atoi(strings.TrimPrefix(rt, "+"))
			}
			if perr == nil && off >= 0 && 34+off <= 64 {
				return unix.Signal(34 + off), nil
			}
		}
		if rt, ok := strings.CutPrefix(s, "SIGRTMAX"); ok {
			off, perr := 0, error(nil)
			if rt != "" {
				off, perr = strconv.Atoi(rt)
			}
			if perr == nil && off <= 0 && 64+off >= 34 {
				return unix.Signal(64 + off), nil
			}
		}
	}
	return 0, errors.New("a Linux signal name (SIGUSR1, usr1, SIGTERM, RTMIN+2, ...) or number 1..64")
}

// SignalName returns the conventional name of a signal; 0 is "none".
func SignalName(s unix.Signal) string {
	if s == 0 {
		return "none"
	}
	if n := unix.SignalName(s); n != "" {
		return n
	}
	if s >= 34 && s <= 64 {
		return fmt.Sprintf("SIGRTMIN+%d", int(s)-34)
	}
	return strconv.Itoa(int(s))
}

// Parse parses args (without the program name) and the environment given by
// lookupEnv (os.LookupEnv). An OOMHERO_<NAME> variable that is set counts
// even when empty (OOMHERO_LISTEN= turns the HTTP server off); an empty
// contract variable (WARNING=) counts as unset. It writes --help output to
// out. It returns ErrHelp when help was asked for, and an *Error for bad
// input.
func Parse(args []string, lookupEnv func(string) (string, bool), out io.Writer) (*Config, error) {
	return parse(ModeSidecar, args, lookupEnv, out)
}

// ParseNode parses the arguments of "oomhero node" (without "node") as
// Parse does: the sidecar's options plus --node-name, --kubeconfig and
// --kube, and node mode's defaults (--cgroup-root=/host/sys/fs/cgroup,
// --opt-in=declared).
func ParseNode(args []string, lookupEnv func(string) (string, bool), out io.Writer) (*Config, error) {
	return parse(ModeNode, args, lookupEnv, out)
}

func parse(mode string, args []string, lookupEnv func(string) (string, bool), out io.Writer) (*Config, error) {
	c := &Config{Mode: mode}
	var opts []*option
	for _, o := range options(c) {
		if !o.nodeOnly || mode == ModeNode {
			opts = append(opts, o)
		}
	}
	name := "oomhero"
	if mode == ModeNode {
		name = "oomhero node"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	for _, o := range opts {
		o.flagVal = new(string)
		envs := o.env()
		if o.seed != "" {
			envs += " or " + o.seed
		}
		def := o.defIn(mode)
		if def == "" {
			def = `""`
		}
		usage := fmt.Sprintf("%s\n(env %s; default %s)", o.usage, envs, def)
		if o.boolean {
			*o.flagVal = "\x00"
			fs.Var(boolFlag{o.flagVal}, o.name, usage)
			continue
		}
		fs.StringVar(o.flagVal, o.name, "\x00", usage)
	}
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(out, "oomhero warns applications before the kernel OOM killer strikes.\n\n"+
			"It watches each container's memory against its limit and sends a warning\n"+
			"signal, then a critical signal, as use crosses two percentages of the limit.\n\n"+
			"An application container may set, in its own environment, OOMHERO=off or\n"+
			"OOMHERO_WARNING, _CRITICAL, _WARNING_SIGNAL, _CRITICAL_SIGNAL, _TARGETS,\n"+
			"_NOTIFY_URL, _REPEAT, _COOLDOWN, _NAME, _DRY_RUN: they apply to that container\n"+
			"only, and a declared signal is sent even to a runtime handler the safety\n"+
			"table refuses.\n\n"+
			"New to oomhero? Start with --dry-run: it logs each signal it would send.\n\n")
		if mode == ModeNode {
			fmt.Fprintf(out, "Node mode: one oomhero per node (a DaemonSet with hostPID and the node's\n"+
				"cgroupfs) watches the containers of every pod on the node that opted in:\n"+
				"OOMHERO=on or any OOMHERO_* variable in the container's environment, or the\n"+
				"pod annotation oomhero.dev/watch (\"true\", or a comma list of container\n"+
				"names). Annotations oomhero.dev/warning, critical, warning-signal,\n"+
				"critical-signal, targets, notify-url, repeat, cooldown, dry-run set the same\n"+
				"values pod-wide; the container's environment wins. Only cgroups of the\n"+
				"kubelet's layout are watched.\n\n"+
				"Usage: oomhero node [options]\n\nOptions (a flag wins over its environment variables):\n")
		} else {
			fmt.Fprintf(out, "Usage: oomhero [options]       the sidecar (this pod's containers)\n"+
				"       oomhero node [options]  the node agent (see oomhero node --help)\n"+
				"       oomhero probe SOCKET    exec probe\n\nOptions (a flag wins over its environment variables):\n")
		}
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(out, "  --%s\n", f.Name)
			for _, l := range strings.Split(f.Usage, "\n") {
				fmt.Fprintf(out, "        %s\n", l)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, &Error{Name: "arguments", Value: strings.Join(args, " "), Accepted: err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, &Error{Name: "arguments", Value: strings.Join(fs.Args(), " "), Accepted: "no positional arguments (see --help)"}
	}
	used := map[string]string{}
	for _, o := range opts {
		name, val := "--"+o.name, *o.flagVal
		if val == "\x00" {
			ev, set := lookupEnv(o.env())
			sv, _ := lookupEnv(o.seed)
			switch {
			case set:
				name, val = o.env(), ev
			case o.seed != "" && sv != "":
				name, val = o.seed, sv
			default:
				name, val = "default of --"+o.name, o.defIn(mode)
			}
		}
		if err := o.set(c, val); err != nil {
			return nil, &Error{Name: name, Value: val, Accepted: err.Error()}
		}
		used[o.name] = strings.TrimPrefix(name, "default of ")
	}
	if c.Warning > c.Critical {
		return nil, &Error{Name: used["warning"], Value: strconv.Itoa(c.Warning),
			Accepted: fmt.Sprintf("at most the critical threshold (%s=%d)", used["critical"], c.Critical)}
	}
	if c.WarningPressure > 0 && c.CriticalPressure > 0 && c.WarningPressure > c.CriticalPressure {
		return nil, &Error{Name: used["warning-pressure"], Value: strconv.Itoa(c.WarningPressure),
			Accepted: fmt.Sprintf("at most the critical pressure (%s=%d)", used["critical-pressure"], c.CriticalPressure)}
	}
	if c.Kubeconfig != "" && c.Kube != KubeOff {
		for _, f := range filepath.SplitList(c.Kubeconfig) {
			if st, err := os.Stat(f); err != nil || !st.Mode().IsRegular() {
				accepted := "a readable kubeconfig file"
				if err != nil {
					accepted += " (" + err.Error() + ")"
				}
				return nil, &Error{Name: used["kubeconfig"], Value: c.Kubeconfig, Accepted: accepted}
			}
		}
	}
	if c.MinInterval > c.Interval {
		return nil, &Error{Name: "--min-interval", Value: c.MinInterval.String(), Accepted: "at most --interval " + c.Interval.String()}
	}
	return c, nil
}

// LogValue lists the effective configuration for the start-up log line.
func (c *Config) LogValue() slog.Value {
	allow := make([]string, len(c.Allow))
	for i, a := range c.Allow {
		allow[i] = a.String()
	}
	return slog.GroupValue(
		slog.Int("warning_percent", c.Warning),
		slog.Int("critical_percent", c.Critical),
		slog.String("warning_signal", SignalName(c.WarningSignal)),
		slog.String("critical_signal", SignalName(c.CriticalSignal)),
		slog.Duration("cooldown", c.Cooldown),
		slog.String("repeat", string(c.Repeat)),
		slog.Int("hysteresis_points", c.Hysteresis),
		slog.Int("warning_pressure", c.WarningPressure),
		slog.Int("critical_pressure", c.CriticalPressure),
		slog.String("metric", string(c.Metric)),
		slog.String("targets", string(c.Targets)),
		slog.String("allow", strings.Join(allow, ",")),
		slog.String("notify_url", c.NotifyURL),
		slog.Bool("notify_remote", c.NotifyRemote),
		slog.String("source", c.Source),
		slog.Duration("interval", c.Interval),
		slog.Duration("min_interval", c.MinInterval),
		slog.Duration("rescan", c.Rescan),
		slog.String("proc", c.Proc),
		slog.String("cgroup_root", c.CgroupRoot),
		slog.String("cgroup_match", c.CgroupMatch),
		slog.Bool("dry_run", c.DryRun),
		slog.String("include_container", patternString(c.IncludeContainer)),
		slog.String("exclude_container", patternString(c.ExcludeContainer)),
		slog.String("include_command", patternString(c.IncludeCommand)),
		slog.String("exclude_command", patternString(c.ExcludeCommand)),
		slog.String("listen", c.Listen),
		slog.String("health_socket", c.HealthSocket),
		slog.Bool("realtime", c.Realtime),
		slog.Bool("kernel_send", c.KernelSend),
		slog.Bool("events", c.Events),
		slog.String("mode", c.Mode),
		slog.String("opt_in", c.OptIn),
		slog.String("node_name", c.NodeName),
		slog.String("kubeconfig", c.Kubeconfig),
		slog.String("kube", c.Kube),
	)
}

func patternString(re *regexp.Regexp) string {
	if re == nil {
		return ""
	}
	return re.String()
}

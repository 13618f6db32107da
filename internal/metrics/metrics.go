package metrics

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/oomhero/oomhero/internal/safename"
	"github.com/oomhero/oomhero/internal/watch"
)

// Signal results, the values of the result label of
// oomhero_signals_total.
const (
	// ResultSent counts a signal delivered to a process.
	ResultSent = "sent"
	// ResultError counts a signal whose delivery failed.
	ResultError = "error"
	// ResultNoTarget counts a level crossing no process could take a signal
	// for (no handler installed, --targets handlers).
	ResultNoTarget = "no_target"
	// ResultRefused counts a signal not sent because the runtime safety
	// table calls its effect on the target's runtime harmful and neither the
	// container (declaration) nor the operator (--allow) opted in.
	ResultRefused = "refused"
	// ResultDryRun counts a signal logged instead of sent (--dry-run, or a
	// container's OOMHERO_DRY_RUN=true).
	ResultDryRun = "dry_run"
)

// Options configures New.
type Options struct {
	// Pod and PodNamespace are the values of the pod and namespace labels
	// of a container whose target names no pod (the sidecar: its own pod,
	// POD_NAME and POD_NAMESPACE); empty is allowed. A target that names
	// its pod (node mode: watch.Container.Pod, Namespace) uses its own.
	Pod, PodNamespace string
	// Namespace prefixes metric names; empty means "oomhero".
	Namespace string
	// NoProcessCollectors leaves out the Go runtime and process
	// collectors (tests compare exact outputs).
	NoProcessCollectors bool
	// Retain is how long the counters (signals, OOM kills) of a forgotten
	// container stay exported, so a scrape after an OOM kill and restart
	// still sees them; 0 means 10 minutes.
	Retain time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Metrics holds oomhero's Prometheus registry. The zero value is not usable;
// call New. All methods are safe for concurrent use.
type Metrics struct {
	pod, podNS string
	reg        *prometheus.Registry

	usage, workingSet, limit, threshold, level *prometheus.GaugeVec
	signals, oomKills                          *prometheus.CounterVec
	notifications                              *prometheus.CounterVec // HTTP channel (package notify)
	source                                     *prometheus.GaugeVec
	lost                                       prometheus.Counter
	watched                                    prometheus.Gauge
	lastScan                                   prometheus.Gauge

	retain time.Duration
	now    func() time.Time

	mu         sync.Mutex
	sourceName string               // current source label values, "source\x00attach"
	forgotten  map[string]forgotten // who.key() -> the container and when Forget was called
	shown      map[targetKey]shown  // what SetWatched last set per target, until Forget

	scanned   atomic.Bool
	sourceSet atomic.Bool

	ns      string           // metric name prefix
	live    liveness         // components /healthz watches (health.go)
	ageDesc *prometheus.Desc // oomhero_progress_age_seconds
}

// New returns Metrics with every collector registered on a fresh registry.
func New(o Options) *Metrics {
	ns := o.Namespace
	if ns == "" {
		ns = "oomhero"
	}
	cl := []string{"namespace", "pod", "container"}
	if o.Retain <= 0 {
		o.Retain = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Metrics{
		pod:       safename.Clean(o.Pod),
		podNS:     safename.Clean(o.PodNamespace),
		retain:    o.Retain,
		now:       o.Now,
		forgotten: map[string]forgotten{},
		shown:     map[targetKey]shown{},
		reg:       prometheus.NewRegistry(),
		usage: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "memory_usage_bytes",
			Help: "Memory charged to the container's cgroup, page cache included (bytes).",
		}, cl),
		workingSet: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "memory_working_set_bytes",
			Help: "Memory usage minus inactive file cache (bytes), as kubelet judges it.",
		}, cl),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "memory_limit_bytes",
			Help: "Effective memory limit of the container (bytes).",
		}, cl),
		threshold: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "threshold_bytes",
			Help: "Threshold of each level in bytes of the configured metric.",
		}, []string{"namespace", "pod", "container", "level"}),
		level: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "level",
			Help: "Current memory level of the container: 0 ok, 1 warning, 2 critical.",
		}, cl),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "signals_total",
			Help: "Signals oomhero sent or tried to send, by level and result (sent, error, no_target, refused, dry_run).",
		}, []string{"namespace", "pod", "container", "level", "result"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "notifications_total",
			Help: "HTTP notifications (OOMHERO_NOTIFY_URL), by level and result (sent, failed, refused, dry_run).",
		}, []string{"namespace", "pod", "container", "level", "result"}),
		oomKills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "oom_kills_total",
			Help: "OOM kills seen in the container's cgroup since oomhero started watching it.",
		}, cl),
		source: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "source_info",
			Help: "The active memory source (bpf or cgroupfs) and its attach point; value 1.",
		}, []string{"source", "attach"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "lost_events_total",
			Help: "Events the kernel side could not deliver (ring buffer full).",
		}),
		watched: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "watched_containers",
			Help: "Containers watched after the last discovery scan.",
		}),
		lastScan: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "last_scan_timestamp_seconds",
			Help: "Unix time of the last finished discovery scan.",
		}),
	}
	m.ns = ns
	m.ageDesc = prometheus.NewDesc(ns+"_progress_age_seconds",
		"Seconds since the component (agent loop, source) last made progress; /healthz fails past its limit.",
		[]string{"component"}, nil)
	m.reg.MustRegister(collectorFunc{m.ageDesc, m.ages})
	m.reg.MustRegister(m.usage, m.workingSet, m.limit, m.threshold, m.level,
		m.signals, m.oomKills, m.source, m.lost, m.watched, m.lastScan, m.notifications)
	if !o.NoProcessCollectors {
		m.reg.MustRegister(collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry returns the registry, for tests and for callers that add their
// own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// who is a container's identity in the labels: namespace, pod, container.
type who struct{ ns, pod, name string }

// key names the container in the forgotten set.
func (w who) key() string { return w.ns + "\x00" + w.pod + "\x00" + w.name }

func (w who) labels() prometheus.Labels {
	return prometheus.Labels{"namespace": w.ns, "pod": w.pod, "container": w.name}
}

// whoOf returns the labels of target t: its own pod when it names one,
// else oomhero's (Options.Pod, PodNamespace).
func (m *Metrics) whoOf(t watch.Target) who {
	w := who{ns: m.podNS, pod: m.pod, name: safename.Clean(t.Name)}
	if t.Pod != "" {
		w.ns, w.pod = safename.Clean(t.Namespace), safename.Clean(t.Pod)
	}
	return w
}

// Observe records one reading of a watched target and the level policy
// decided for it.
func (m *Metrics) Observe(t watch.Target, r watch.Reading, l watch.Level) {
	w := m.whoOf(t)
	m.remember(w)
	m.usage.WithLabelValues(w.ns, w.pod, w.name).Set(float64(r.Usage))
	m.workingSet.WithLabelValues(w.ns, w.pod, w.name).Set(float64(r.WorkingSet()))
	lim := r.Limit
	if lim == 0 {
		lim = t.Limit
	}
	m.limit.WithLabelValues(w.ns, w.pod, w.name).Set(float64(lim))
	m.level.WithLabelValues(w.ns, w.pod, w.name).Set(float64(l))
}

// SetWatched records the targets of the last discovery scan: their count and
// thresholds. Call Forget for the ones that went away. A target's gauges
// are set again only when its thresholds or limit changed since the last
// call (a node agent's scan passes every container, every few seconds).
func (m *Metrics) SetWatched(targets []watch.Target) {
	m.watched.Set(float64(len(targets)))
	for _, t := range targets {
		k, v := targetKey{t.Namespace, t.Pod, t.Name}, shown{t.Warn, t.Crit, t.Limit}
		m.mu.Lock()
		old, ok := m.shown[k]
		m.shown[k] = v
		m.mu.Unlock()
		if ok && old == v {
			continue
		}
		w := m.whoOf(t)
		m.remember(w)
		m.threshold.WithLabelValues(w.ns, w.pod, w.name, watch.Warning.String()).Set(float64(t.Warn))
		m.threshold.WithLabelValues(w.ns, w.pod, w.name, watch.Critical.String()).Set(float64(t.Crit))
		if t.Limit > 0 {
			m.limit.WithLabelValues(w.ns, w.pod, w.name).Set(float64(t.Limit))
		}
	}
}

// targetKey names a target as SetWatched last saw it.
type targetKey struct{ ns, pod, name string }

// shown is what SetWatched set for a target.
type shown struct{ warn, crit, limit uint64 }

// ScanDone marks a finished discovery scan. /readyz reports ready once a
// scan finished and a source is set.
func (m *Metrics) ScanDone() {
	m.lastScan.Set(float64(m.now().UnixNano()) / 1e9)
	m.scanned.Store(true)
	m.mu.Lock()
	m.sweep()
	m.mu.Unlock()
}

// Signal counts one signal oomhero sent, or tried to send, to the processes
// of target t's container because it reached level l. result is one of the
// Result constants.
func (m *Metrics) Signal(t watch.Target, l watch.Level, result string) {
	w := m.whoOf(t)
	m.signals.WithLabelValues(w.ns, w.pod, w.name, l.String(), safename.Clean(result)).Inc()
}

// Notification counts one HTTP notification to target t's container for
// level l; result is one of notify.Sent, Failed, Refused, DryRun.
func (m *Metrics) Notification(t watch.Target, l watch.Level, result string) {
	w := m.whoOf(t)
	m.notifications.WithLabelValues(w.ns, w.pod, w.name, l.String(), safename.Clean(result)).Inc()
}

// OOMKill counts one OOM kill seen in target t's container.
func (m *Metrics) OOMKill(t watch.Target) {
	w := m.whoOf(t)
	m.oomKills.WithLabelValues(w.ns, w.pod, w.name).Inc()
}

// LostEvents adds n events the kernel side dropped.
func (m *Metrics) LostEvents(n uint64) {
	m.lost.Add(float64(n))
}

// SetSource records the active source from its Name(): the first word is
// the source ("bpf", "cgroupfs"), the rest the attach point ("" for
// cgroupfs). The previous source's series is removed.
func (m *Metrics) SetSource(name string) {
	src, attach, _ := strings.Cut(strings.TrimSpace(safename.Clean(name)), " ")
	key := src + "\x00" + strings.TrimSpace(attach)
	m.mu.Lock()
	if m.sourceName != "" && m.sourceName != key {
		old, oldAttach, _ := strings.Cut(m.sourceName, "\x00")
		m.source.DeleteLabelValues(old, oldAttach)
	}
	m.sourceName = key
	m.mu.Unlock()
	m.source.WithLabelValues(src, strings.TrimSpace(attach)).Set(1)
	m.sourceSet.Store(src != "")
}

// Forget deletes the gauges of a container that is no longer watched (or
// renamed), so names of containers long gone do not pile up. Its counters
// (signals, OOM kills) stay for Options.Retain, so the scrape after an OOM
// kill still counts it; a container observed again is kept.
func (m *Metrics) Forget(t watch.Target) {
	w := m.whoOf(t)
	match := w.labels()
	for _, v := range []*prometheus.GaugeVec{m.usage, m.workingSet, m.limit, m.level, m.threshold} {
		v.DeletePartialMatch(match)
	}
	m.mu.Lock()
	delete(m.shown, targetKey{t.Namespace, t.Pod, t.Name})
	if _, ok := m.forgotten[w.key()]; !ok {
		m.forgotten[w.key()] = forgotten{who: w, at: m.now()}
	}
	m.sweep()
	m.mu.Unlock()
}

// forgotten is a container whose counters are deleted after Retain.
type forgotten struct {
	who who
	at  time.Time
}

// remember undoes Forget for a container watched again.
func (m *Metrics) remember(w who) {
	m.mu.Lock()
	if len(m.forgotten) > 0 {
		delete(m.forgotten, w.key())
	}
	m.mu.Unlock()
}

// sweep deletes the counters of containers forgotten longer than retain
// ago. m.mu must be held.
func (m *Metrics) sweep() {
	now := m.now()
	for k, f := range m.forgotten {
		if now.Sub(f.at) < m.retain {
			continue
		}
		match := f.who.labels()
		m.signals.DeletePartialMatch(match)
		m.notifications.DeletePartialMatch(match)
		m.oomKills.DeletePartialMatch(match)
		delete(m.forgotten, k)
	}
}

// Ready reports whether the first scan finished and a source is active.
func (m *Metrics) Ready() bool {
	return m.scanned.Load() && m.sourceSet.Load()
}

package pods

import (
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/testenv/app/applog"
)

func TestPodYAML(t *testing.T) {
	p := Pod{Name: "x", Labels: map[string]string{"b": "2", "a": "1"}, Containers: []Container{
		{Name: "app", Image: AppImage, Args: []string{"-mode", "leak"}, Memory: "256Mi",
			Liveness: &Probe{Path: "/healthz", Port: 8080, PeriodSeconds: 3, FailureThreshold: 1}},
		OomheroContainer(OomheroImage, "cgroupfs", EnvVar{"WARNING", "65"}),
	}}
	y := string(p.YAML())
	for _, want := range []string{
		"shareProcessNamespace: true",
		`restartPolicy: "Never"`,
		`args: ["-mode", "leak"]`,
		"limits:\n          memory: \"256Mi\"",
		"securityContext:\n        privileged: true",
		`args: ["--log-format=json", "--source=cgroupfs"]`,
		"- name: \"WARNING\"\n          value: \"65\"",
		"httpGet:\n          path: \"/healthz\"\n          port: 8080",
		"\"a\": \"1\"\n    \"b\": \"2\"",
	} {
		if !strings.Contains(y, want) {
			t.Errorf("YAML lacks %q:\n%s", want, y)
		}
	}
}

func TestReact(t *testing.T) {
	const mib = 1 << 20
	lg := applog.Log{
		Samples: []applog.Sample{{Mono: 10, WorkingSet: 50 * mib}, {Mono: 20, WorkingSet: 90 * mib}, {Mono: 30, WorkingSet: 110 * mib}},
		Signals: []applog.Signal{{Name: "SIGUSR1", Mono: 32}, {Name: "SIGUSR1", Mono: 40}},
	}
	r := React(lg, 100*mib, "SIGUSR1")
	if !r.Crossed || r.CrossAt != 30 || r.LastBelow != 20 || r.AheadBelow != 20 || !r.Received || r.At != 32 || r.Count != 2 {
		t.Fatalf("React = %+v", r)
	}
	if r.Latency() != 2*time.Nanosecond || r.Early() {
		t.Errorf("latency %v early %v", r.Latency(), r.Early())
	}
	early := React(applog.Log{Samples: lg.Samples, Signals: []applog.Signal{{Name: "SIGUSR1", Mono: 15}}}, 100*mib, "SIGUSR1")
	if !early.Early() {
		t.Errorf("a signal before the last sample below the threshold is not Early: %+v", early)
	}
	if none := React(lg, 1000*mib, "SIGUSR2"); none.Crossed || none.Received {
		t.Errorf("React(1000 MiB, SIGUSR2) = %+v", none)
	}
	// The kernel's counter runs up to ChargeAhead above the app's samples:
	// a signal after the last sample more than that below is not early, one
	// before it is.
	ahead := ChargeAhead()
	near := applog.Log{Samples: []applog.Sample{
		{Mono: 10, WorkingSet: 100*mib - ahead - 1}, {Mono: 20, WorkingSet: 100*mib - ahead/2}, {Mono: 30, WorkingSet: 100 * mib},
	}}
	for _, c := range []struct {
		at    time.Duration
		early bool
	}{{15, false}, {25, false}, {5, true}} {
		near.Signals = []applog.Signal{{Name: "SIGUSR1", Mono: c.at}}
		if r := React(near, 100*mib, "SIGUSR1"); r.Early() != c.early || r.AheadBelow != 10 {
			t.Errorf("signal at %v with samples within the charge-ahead (%d bytes): Early %v, want %v (%+v)", c.at, ahead, r.Early(), c.early, r)
		}
	}
}

func TestParseOomheroLog(t *testing.T) {
	log := `{"time":"t","level":"INFO","msg":"container watched","cgroup":"/libpod_parent/p/libpod-abc123","limit_bytes":268435456,"warning_bytes":174483010,"critical_bytes":241591860}
failed to connect to syslog: Initialization
{"time":"t","level":"INFO","msg":"container not watched","container":"x","reason":"no memory limit"}
{"time":"t","level":"INFO","msg":"signal sent","pid":10,"command":"app","container":"app","memory_level":"critical","signal":"SIGUSR2"}
`
	es := ParseOomheroLog(log)
	if len(es) != 4 || es[1].Attrs != nil {
		t.Fatalf("entries = %+v", es)
	}
	if e := es[3]; e.Level != "INFO" || e.MemoryLevel != "critical" || e.Mentions("critical") || !e.Mentions("app") {
		t.Errorf("signal line: Level %q (slog's), MemoryLevel %q, Mentions(critical) %v", e.Level, e.MemoryLevel, e.Mentions("critical"))
	}
	if es[0].MemoryLevel != "" {
		t.Errorf("a line without memory_level has MemoryLevel %q", es[0].MemoryLevel)
	}
	w, ok, err := FindWatched(es, "abc123")
	if err != nil || !ok || w.Warning != 174483010 || w.Critical != 241591860 || w.Limit != 268435456 {
		t.Errorf("FindWatched = %+v, %v, %v", w, ok, err)
	}
	if _, ok, _ := FindWatched(es, "zzz"); ok {
		t.Errorf("FindWatched found a container never named")
	}
	if n := len(Select(es, "container not watched", "")); n != 1 {
		t.Errorf("Select = %d entries", n)
	}
}

// TestSignalTimeInside: the first signal of the level counts, event_age
// before reading_age.
func TestSignalTimeInside(t *testing.T) {
	es := ParseOomheroLog(`{"msg":"signal sent","memory_level":"warning","reading_age":"300µs"}
{"msg":"signal sent","memory_level":"critical","reading_age":"200µs","event_age":"1.5ms"}
{"msg":"signal sent","memory_level":"warning","reading_age":"9ms"}
`)
	if d, ok := SignalTimeInside(es, "warning"); !ok || d != 300*time.Microsecond {
		t.Errorf("warning: %v %v, want 300µs", d, ok)
	}
	if d, ok := SignalTimeInside(es, "critical"); !ok || d != 1500*time.Microsecond {
		t.Errorf("critical: %v %v, want 1.5ms", d, ok)
	}
	if _, ok := SignalTimeInside(es, "ok"); ok {
		t.Error("a level without a signal gave a time")
	}
}

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
	lg := applog.Log{
		Samples: []applog.Sample{{Mono: 10, WorkingSet: 50}, {Mono: 20, WorkingSet: 90}, {Mono: 30, WorkingSet: 110}},
		Signals: []applog.Signal{{Name: "SIGUSR1", Mono: 32}, {Name: "SIGUSR1", Mono: 40}},
	}
	r := React(lg, 100, "SIGUSR1")
	if !r.Crossed || r.CrossAt != 30 || r.LastBelow != 20 || !r.Received || r.At != 32 || r.Count != 2 {
		t.Fatalf("React = %+v", r)
	}
	if r.Latency() != 2*time.Nanosecond || r.Early() {
		t.Errorf("latency %v early %v", r.Latency(), r.Early())
	}
	early := React(applog.Log{Samples: lg.Samples, Signals: []applog.Signal{{Name: "SIGUSR1", Mono: 15}}}, 100, "SIGUSR1")
	if !early.Early() {
		t.Errorf("a signal before the last sample below the threshold is not Early: %+v", early)
	}
	if none := React(lg, 1000, "SIGUSR2"); none.Crossed || none.Received {
		t.Errorf("React(1000, SIGUSR2) = %+v", none)
	}
}

func TestParseOomheroLog(t *testing.T) {
	log := `{"time":"t","level":"INFO","msg":"container watched","cgroup":"/libpod_parent/p/libpod-abc123","limit_bytes":268435456,"warning_bytes":174483010,"critical_bytes":241591860}
failed to connect to syslog: Initialization
{"time":"t","level":"INFO","msg":"container not watched","container":"x","reason":"no memory limit"}
`
	es := ParseOomheroLog(log)
	if len(es) != 3 || es[1].Attrs != nil {
		t.Fatalf("entries = %+v", es)
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

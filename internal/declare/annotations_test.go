package declare

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/config"
)

func TestFromAnnotations(t *testing.T) {
	d := FromAnnotations(map[string]string{
		"oomhero.dev/warning":         "60",
		"oomhero.dev/critical":        "85%",
		"oomhero.dev/warning-signal":  "none",
		"oomhero.dev/critical-signal": "usr2",
		"oomhero.dev/targets":         "largest",
		"oomhero.dev/notify-url":      "http://127.0.0.1:8080/x",
		"oomhero.dev/repeat":          "once",
		"oomhero.dev/cooldown":        "3",
		"oomhero.dev/dry-run":         "true",
		"oomhero.dev/watch":           "true",
		"other.io/warning":            "1",
	})
	if len(d.Errors) != 0 {
		t.Fatalf("errors: %v", d.Errors)
	}
	if d.Warning != 60 || d.Critical != 85 || !d.WarningSignal.Declared || d.WarningSignal.Sig != 0 ||
		d.CriticalSignal.Sig != unix.SIGUSR2 || d.Targets != config.Largest || d.NotifyURL != "http://127.0.0.1:8080/x" ||
		d.Repeat != config.Once || d.Cooldown != 3*time.Second || d.DryRun == nil || !*d.DryRun || d.Off || d.Name != "" {
		t.Fatalf("declaration: %+v", d)
	}
	want := "oomhero.dev/warning=60 oomhero.dev/critical=85% oomhero.dev/warning-signal=none oomhero.dev/critical-signal=usr2 " +
		"oomhero.dev/targets=largest oomhero.dev/notify-url=http://127.0.0.1:8080/x oomhero.dev/repeat=once oomhero.dev/cooldown=3 oomhero.dev/dry-run=true"
	if got := strings.Join(d.Set, " "); got != want {
		t.Fatalf("Set:\n got %s\nwant %s", got, want)
	}
}

func TestFromAnnotationsErrorsNameTheAnnotation(t *testing.T) {
	d := FromAnnotations(map[string]string{
		"oomhero.dev/warning":  "95",
		"oomhero.dev/critical": "90",
		"oomhero.dev/targets":  "biggest",
		"oomhero.dev/warnign":  "60",
		"oomhero.dev/name":     "x", // names come from the API server
	})
	var names []string
	for _, e := range d.Errors {
		names = append(names, e.Name+"="+e.Value)
		if strings.Contains(e.Accepted, "OOMHERO_") {
			t.Errorf("%s: accepted names a variable: %s", e.Name, e.Accepted)
		}
	}
	want := "oomhero.dev/targets=biggest oomhero.dev/warning=95 oomhero.dev/name=x oomhero.dev/warnign=60"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("errors:\n got %s\nwant %s", got, want)
	}
	if d.Warning != 0 || d.Critical != 90 || d.Targets != "" {
		t.Fatalf("bad values kept: %+v", d)
	}
}

func TestMergeEnvWins(t *testing.T) {
	env := Parse([]byte("OOMHERO_WARNING=70\x00OOMHERO_CRITICAL_SIGNAL=SIGTERM\x00OOMHERO_DRY_RUN=false\x00"))
	pod := FromAnnotations(map[string]string{"oomhero.dev/warning": "50", "oomhero.dev/critical": "80",
		"oomhero.dev/critical-signal": "usr2", "oomhero.dev/dry-run": "true", "oomhero.dev/cooldown": "bad"})
	d := Merge(env, pod)
	if d.Warning != 70 || d.Critical != 80 || d.CriticalSignal.Sig != unix.SIGTERM || d.DryRun == nil || *d.DryRun {
		t.Fatalf("merge: %+v", d)
	}
	if got := strings.Join(d.Set, " "); got != "OOMHERO_WARNING=70 OOMHERO_CRITICAL_SIGNAL=SIGTERM OOMHERO_DRY_RUN=false oomhero.dev/critical=80" {
		t.Fatalf("Set: %s", got)
	}
	if len(d.Errors) != 1 || d.Errors[0].Name != "oomhero.dev/cooldown" {
		t.Fatalf("errors: %v", d.Errors)
	}
	if len(env.Set) != 3 {
		t.Fatalf("Merge changed its argument: %v", env.Set)
	}
	// Nothing annotated: the environment's declaration as it is.
	if m := Merge(env, FromAnnotations(nil)); !m.Equal(&env) {
		t.Fatalf("merge with nothing: %+v", m)
	}
}

func TestWatchAnnotation(t *testing.T) {
	for _, tc := range []struct {
		v         *string
		container string
		in, out   bool
		bad       bool
	}{
		{nil, "app", false, false, false},
		{ptr("true"), "app", true, false, false},
		{ptr(" True "), "", true, false, false},
		{ptr("false"), "app", false, true, false},
		{ptr("app,worker"), "worker", true, false, false},
		{ptr("app, worker"), "worker", true, false, false},
		{ptr("app,worker"), "sidecar", false, false, false},
		{ptr("app"), "", false, false, false},
		{ptr("yes"), "yes", true, false, false}, // a container named yes
		{ptr("App"), "app", false, false, true},
		{ptr(""), "app", false, false, true},
		{ptr("app,,x"), "app", false, false, true},
	} {
		ann := map[string]string{}
		if tc.v != nil {
			ann[WatchAnnotation] = *tc.v
		}
		in, out, err := Watch(ann, tc.container)
		if in != tc.in || out != tc.out || (err != nil) != tc.bad {
			t.Errorf("watch %v container %q: in %v out %v err %v", tc.v, tc.container, in, out, err)
		}
	}
}

func ptr(s string) *string { return &s }

func FuzzFromAnnotations(f *testing.F) {
	f.Add("oomhero.dev/warning", "65", "oomhero.dev/watch", "app,worker", "app")
	f.Add("oomhero.dev/critical-signal", "RTMIN+2", "oomhero.dev/cooldown", "1m", "")
	f.Add("oomhero.dev/notify-url", "http://[::1]:1/x", "oomhero.dev/x\x00y", "\xff", "a")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, container string) {
		ann := map[string]string{k1: v1, k2: v2}
		d := FromAnnotations(ann)
		for _, s := range d.Set {
			name, _, _ := strings.Cut(s, "=")
			if !strings.HasPrefix(name, AnnotationPrefix) {
				t.Fatalf("Set entry %q does not name an annotation", s)
			}
		}
		for _, e := range d.Errors {
			if len(e.Value) > 64+3 || len(e.Name) > 64+3 {
				t.Fatalf("error not clipped: %q=%q", e.Name, e.Value)
			}
		}
		if d.Off || d.Name != "" {
			t.Fatalf("annotations declared OOMHERO or OOMHERO_NAME: %+v", d)
		}
		if d.Warning > 0 && d.Critical > 0 && d.Warning > d.Critical {
			t.Fatalf("warning %d above critical %d", d.Warning, d.Critical)
		}
		m := Merge(Parse(nil), d)
		if !m.Equal(&d) {
			t.Fatalf("merge over nothing changed the declaration: %+v vs %+v", m, d)
		}
		in, out, _ := Watch(ann, container)
		if in && out {
			t.Fatalf("watch %q: both in and out", ann[WatchAnnotation])
		}
		_ = utf8.ValidString(container)
	})
}

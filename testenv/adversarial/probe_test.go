package adversarial

import (
	"strings"
	"testing"

	"github.com/oomhero/oomhero/testenv/pods"
)

func TestCheckLog(t *testing.T) {
	good := `{"time":"t","level":"INFO","msg":"container watched","container":"\ufffd\ufffdx"}` + "\n"
	for _, tc := range []struct {
		name, log, format string
		want              []string // substrings of the problems, in order
	}{
		{"json ok", good, "json", nil},
		{"panic", good + "panic: label value \"\\xff\" is not valid UTF-8\n\ngoroutine 1 [running]:\n", "json", []string{"line 2 is not one JSON object", "line 4 is not one JSON object"}},
		{"invalid utf8", `{"level":"INFO","msg":"x` + "\xff" + `"}` + "\n", "json", []string{"not valid UTF-8"}},
		{"control", `{"level":"INFO","msg":"x` + "\x1b[2K" + `"}` + "\n", "json", []string{"control character U+001B", "not one JSON object"}},
		{"delete", `{"level":"INFO","msg":"x` + "\x7f" + `"}` + "\n", "json", []string{"control character U+007F"}},
		{"c1", `{"level":"INFO","msg":"x` + "\u009b2J" + `"}` + "\n", "json", []string{"control character U+009B"}},
		{"secret", `{"level":"INFO","msg":"x","reason":"` + secretTag + `-other-1"}` + "\n", "json", []string{"planted secret"}},
		{"text ok", "time=2026-11-30T12:00:00Z level=INFO msg=\"container watched\" container=\"x\\nlevel=ERROR\"\n", "text", nil},
		{"text forged", "time=2026-11-30T12:00:00Z level=INFO msg=\"container watched\" container=x\nlevel=ERROR msg=\"oomhero stopped\"\n", "text", []string{"line 2 is not one slog text record"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckLog(tc.log, tc.format, secretTag)
			if len(got) != len(tc.want) {
				t.Fatalf("CheckLog = %q, want %d problems", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to hold %q", i, got[i], w)
				}
			}
		})
	}
}

func TestRuns(t *testing.T) {
	log := "event=start pid=1\nevent=signal signal=SIGUSR1\nevent=start pid=2\nevent=waiting\n"
	runs := Runs(log)
	if len(runs) != 2 || runs[0] != "event=start pid=1\nevent=signal signal=SIGUSR1\n" || runs[1] != "event=start pid=2\nevent=waiting\n" {
		t.Errorf("Runs = %q", runs)
	}
	if runs := Runs("podman: noise\n"); len(runs) != 0 {
		t.Errorf("Runs without a start = %q", runs)
	}
}

func TestSpecYAML(t *testing.T) {
	s := Spec{Name: "p", Volumes: []HostPath{{"host", "/tmp/x", "Directory"}}, Containers: []Container{
		{Container: pods.Container{Name: "hostile", Image: HostileImage, Args: []string{"-attack", "fifo-procs"}, Memory: "64Mi"},
			Mounts: []Mount{{"host", "/host"}}},
	}}
	y := string(s.YAML())
	for _, want := range []string{
		"shareProcessNamespace: true",
		`restartPolicy: "Always"`,
		`"` + ownerLabel + `": "`,
		`args: ["-attack", "fifo-procs"]`,
		"volumeMounts:\n        - name: \"host\"\n          mountPath: \"/host\"",
		"volumes:\n    - name: \"host\"\n      hostPath:\n        path: \"/tmp/x\"\n        type: \"Directory\"",
	} {
		if !strings.Contains(y, want) {
			t.Errorf("YAML lacks %q:\n%s", want, y)
		}
	}
}

func TestContainerLabels(t *testing.T) {
	body := "# HELP x\n" +
		`oomhero_level{container="a",pod=""} 0` + "\n" +
		`oomhero_level{container="b\"c",pod=""} 1` + "\n" +
		`oomhero_signals_total{container="a",level="warning"} 3` + "\n" +
		`go_goroutines 7` + "\n"
	got := containerLabels([]byte(body))
	if len(got) != 2 || got[0] != "a" || got[1] != `b\"c` {
		t.Errorf("containerLabels = %q, want [a b\\\"c]", got)
	}
}

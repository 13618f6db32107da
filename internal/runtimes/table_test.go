package runtimes

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// knownNames are the names classify can return; every table row must use one.
var knownNames = map[string]bool{
	"hotspot": true, "openj9": true, "node": true, "go": true, "python": true, "gunicorn": true,
	"uwsgi": true, "ruby": true, "puma": true, "unicorn": true, "postgres": true, "nginx": true,
	"php-fpm": true, "httpd": true, "redis": true, "haproxy": true, "mysqld": true, "envoy": true,
	"beam": true, "shell": true, "tini": true, "dumb-init": true, "php": true, "perl": true, "dotnet": true,
}

func TestNames(t *testing.T) {
	names := Names()
	if !sort.StringsAreSorted(names) || len(names) != len(knownNames) {
		t.Fatalf("Names() = %v", names)
	}
	for _, n := range names {
		if !knownNames[n] {
			t.Errorf("Names() has %q, which classify never returns", n)
		}
	}
}

func TestTableRowsAreComplete(t *testing.T) {
	type key struct{ rt, role, sig, when string }
	seen := map[key]bool{}
	for i, r := range Table() {
		k := key{r.Runtime, r.Role, r.Signal, r.When}
		if seen[k] {
			t.Errorf("row %d: duplicate %+v", i, k)
		}
		seen[k] = true
		if !knownNames[r.Runtime] {
			t.Errorf("row %d: runtime %q is not a name Identify returns", i, r.Runtime)
		}
		if unix.SignalNum(r.Signal) == 0 {
			t.Errorf("row %d (%s): signal %q is not a Linux signal name", i, r.Runtime, r.Signal)
		}
		if r.Effect.What == "" || r.Effect.Source == "" {
			t.Errorf("row %d (%s %s): effect and source are required: %+v", i, r.Runtime, r.Signal, r.Effect)
		}
		if r.Effect.Harm < Safe || r.Effect.Harm > Harmful {
			t.Errorf("row %d: harm %d out of range", i, r.Effect.Harm)
		}
		if r.Effect.Forwards && r.Effect.Harm != Harmful {
			t.Errorf("row %d (%s): a forwarder's row must be Harmful so it is never used to get around the child's row", i, r.Runtime)
		}
		if strings.ContainsAny(r.Effect.What+r.Effect.Source, "\n|") {
			t.Errorf("row %d: newline or '|' in effect or source breaks the README table", i)
		}
	}
}

// Every row is what EffectOf returns for a process that matches it exactly.
func TestEveryRowIsReachable(t *testing.T) {
	for _, r := range Table() {
		rt := Runtime{Name: r.Runtime, Role: r.Role, Options: r.When}
		got := EffectOf(rt, unix.SignalNum(r.Signal))
		if got != r.Effect {
			t.Errorf("EffectOf(%+v, %s) = %+v, want the row's %+v", rt, r.Signal, got, r.Effect)
		}
	}
}

func TestEffectOf(t *testing.T) {
	cases := []struct {
		rt   Runtime
		sig  unix.Signal
		want Harm
		what string // substring of What
	}{
		{Runtime{Name: "hotspot", Version: "17"}, unix.SIGUSR2, Harmful, "SR_handler"},
		{Runtime{Name: "hotspot"}, unix.SIGUSR1, Safe, "sun.misc.Signal"},
		{Runtime{Name: "hotspot", Options: "Xrs"}, unix.SIGTERM, Safe, "-Xrs"},
		{Runtime{Name: "hotspot", Options: "Xrs"}, unix.SIGUSR2, Harmful, "SR_handler"},
		{Runtime{Name: "node"}, unix.SIGUSR1, Harmful, "inspector"},
		{Runtime{Name: "node", Options: "disable-sigusr1"}, unix.SIGUSR1, Safe, "--disable-sigusr1"},
		{Runtime{Name: "node"}, unix.SIGUSR2, Safe, "no runtime handler"},
		{Runtime{Name: "node", Options: "heapsnapshot-signal=SIGUSR2"}, unix.SIGUSR2, Harmful, "heap snapshot"},
		{Runtime{Name: "node", Options: "disable-sigusr1 report-signal=SIGUSR2"}, unix.SIGUSR2, Harmful, "diagnostic report"},
		{Runtime{Name: "node", Options: "report-signal=SIGUSR1"}, unix.SIGUSR2, Safe, ""},
		{Runtime{Name: "postgres", Role: "checkpointer"}, unix.SIGUSR2, Harmful, "crash recovery"},
		{Runtime{Name: "postgres", Role: "backend"}, unix.SIGUSR2, Dropped, "SIG_IGN"},
		{Runtime{Name: "postgres", Role: "postmaster"}, unix.SIGUSR2, Dropped, "dummy"},
		{Runtime{Name: "postgres", Role: RoleUntitled}, unix.SIGUSR2, Harmful, "checkpointer"},
		{Runtime{Name: "postgres", Role: RoleUntitled}, unix.SIGUSR1, Harmful, "logger"},
		{Runtime{Name: "postgres", Role: "postmaster"}, unix.SIGHUP, Harmful, "reloads"},
		{Runtime{Name: "postgres", Role: "bgwriter"}, unix.SIGUSR1, Dropped, "procsignal"},
		{Runtime{Name: "nginx", Role: "master"}, unix.SIGUSR1, Harmful, "reopens"},
		{Runtime{Name: "nginx", Role: "worker"}, unix.SIGUSR2, Dropped, "ignoring"},
		{Runtime{Name: "php-fpm", Role: "master"}, unix.SIGUSR2, Harmful, "reload"},
		{Runtime{Name: "php-fpm", Role: "pool"}, unix.SIGUSR1, Harmful, "worker exits"},
		{Runtime{Name: "httpd", Role: "parent"}, unix.SIGUSR1, Harmful, "graceful restart"},
		{Runtime{Name: "httpd", Role: "child", Options: "mpm=event"}, unix.SIGUSR1, Dropped, "blocked"},
		{Runtime{Name: "httpd", Role: "child", Options: "mpm=prefork"}, unix.SIGUSR1, Harmful, "prefork"},
		{Runtime{Name: "redis", Role: "fork-child"}, unix.SIGUSR1, Harmful, "exits"},
		{Runtime{Name: "redis", Role: "server"}, unix.SIGUSR1, Safe, "no handler"},
		{Runtime{Name: "go"}, unix.SIGUSR1, Dropped, "signal.Notify"},
		{Runtime{Name: "go"}, unix.SIGTERM, Harmful, "signal.Notify"},
		{Runtime{Name: "python"}, unix.SIGUSR1, Safe, "no interpreter handler"},
		{Runtime{Name: "gunicorn", Role: "arbiter"}, unix.SIGUSR2, Harmful, "re-executes"},
		{Runtime{Name: "gunicorn", Role: "worker"}, unix.SIGUSR2, Safe, "default action"},
		{Runtime{Name: "gunicorn", Role: "worker"}, unix.SIGINT, Harmful, "exit"},
		{Runtime{Name: "puma", Role: "worker"}, unix.SIGUSR1, Harmful, "SignalException"}, // ruby's row
		{Runtime{Name: "unicorn", Role: "master"}, unix.SIGUSR2, Harmful, "re-executes"},
		{Runtime{Name: "tini"}, unix.SIGUSR1, Harmful, "forwarded"},
		{Runtime{Name: "shell"}, unix.SIGUSR1, Safe, "trap"},
		{Runtime{Name: "dotnet"}, unix.SIGUSR1, Safe, ""},
		{Runtime{}, unix.SIGUSR1, Safe, ""},
		{Runtime{Name: "node"}, unix.Signal(40), Safe, ""},
	}
	for _, c := range cases {
		got := EffectOf(c.rt, c.sig)
		if got.Harm != c.want || !strings.Contains(got.What, c.what) {
			t.Errorf("EffectOf(%+v, %v) = %v %q, want %v with %q", c.rt, unix.SignalName(c.sig), got.Harm, got.What, c.want, c.what)
		}
	}
	if e := EffectOf(Runtime{Name: "dumb-init"}, unix.SIGUSR2); !e.Forwards {
		t.Errorf("dumb-init SIGUSR2: Forwards not set: %+v", e)
	}
}

func TestHarmStrings(t *testing.T) {
	for h, want := range map[Harm][2]string{Safe: {"safe", "sent"}, Dropped: {"dropped", "sent-with-note"}, Harmful: {"harmful", "refused"}} {
		if h.String() != want[0] || h.Default() != want[1] {
			t.Errorf("%d: %s/%s, want %v", h, h, h.Default(), want)
		}
	}
	if s := Harm(7).String(); s != "harm(7)" {
		t.Errorf("Harm(7) = %q", s)
	}
	rt := Runtime{Name: "hotspot", Version: "17", Role: ""}
	if rt.String() != "hotspot 17" || (Runtime{}).String() != "unknown" || (Runtime{Name: "nginx", Role: "master"}).String() != "nginx (master)" {
		t.Errorf("String: %q", rt.String())
	}
}

// README's section must be what gentable writes from the table.
func TestREADMESectionMatchesTable(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	readme := filepath.Join(filepath.Dir(file), "..", "..", "README.md")
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatalf("reading %s: %v", readme, err)
	}
	got, err := Section(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := Markdown(); got != want {
		gl, wl := strings.Split(got, "\n"), strings.Split(want, "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("README.md runtime section differs from the table at line %d:\nREADME: %s\ntable:  %s\nrun: go run ./internal/runtimes/cmd/gentable", i+1, g, w)
			}
		}
	}
	// ReplaceSection is idempotent and keeps what surrounds the markers.
	again, err := ReplaceSection(b)
	if err != nil || string(again) != string(b) {
		t.Errorf("ReplaceSection changed an up-to-date README (err %v)", err)
	}
	if _, err := ReplaceSection([]byte("no markers")); err == nil || !strings.Contains(err.Error(), BeginMarker) {
		t.Errorf("missing markers: err = %v", err)
	}
}

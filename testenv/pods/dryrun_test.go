package pods

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDryRunAndExclusion (issue 13): oomhero runs with OOMHERO_DRY_RUN=true
// next to a leaking app and an app held above the warning threshold that
// --exclude-container names. The leaking app's two would-be signals are
// logged ("signal not sent (dry run)") at the right percentages and it
// receives nothing; the excluded app is neither signalled nor reported
// (no "container watched", level change or signal line: one "container
// excluded").
func TestDryRunAndExclusion(t *testing.T) {
	t.Parallel()
	l := needLab(t)
	ctx := testCtx(t, 90*time.Second)
	const warning, critical = 65, 90
	r := startPod(t, ctx, l, Pod{Name: "dryrun", Containers: []Container{
		// Both run the test app: OOMHERO_NAME tells them apart.
		{Name: "app", Image: AppImage, Env: env("OOMHERO_NAME", "bloat"), Memory: "256Mi",
			Args: []string{"-mode", "leak", "-rate", "50", "-cap-percent", "95", "-start-signal", "SIGWINCH"}},
		{Name: "limited", Image: AppImage, Env: env("OOMHERO_NAME", "canary"), Memory: "256Mi",
			Args: []string{"-mode", "hold", "-rate", "50", "-percent", "80"}},
		OomheroContainer(OomheroImage, SourceFromEnv(), env("WARNING", strconv.Itoa(warning), "CRITICAL", strconv.Itoa(critical),
			"OOMHERO_DRY_RUN", "true", "OOMHERO_EXCLUDE_CONTAINER", "^canary$")...),
	}})
	st, err := r.State(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitLog(ctx, "oomhero", func(s string) bool {
		_, ok, _ := FindWatched(ParseOomheroLog(s), st.ID)
		return ok
	}); err != nil {
		t.Fatalf("oomhero never watched the app (%s): %v", st.ID[:12], err)
	}
	if _, err := r.WaitLog(ctx, "app", func(s string) bool { return strings.Contains(s, "event=waiting") }); err != nil {
		t.Fatalf("app not waiting for its start signal: %v", err)
	}
	if _, err := l.Podman(ctx, "kill", "--signal", "SIGWINCH", r.ContainerName("app")); err != nil {
		t.Fatalf("start the leak: %v", err)
	}
	wouldBe := func(es []Entry, level string) []Entry {
		var out []Entry
		for _, e := range Select(es, "signal not sent (dry run)", "") {
			if e.Str("container") == "bloat" && e.MemoryLevel == level {
				out = append(out, e)
			}
		}
		return out
	}
	if _, err := r.WaitLog(ctx, "oomhero", func(s string) bool { return len(wouldBe(ParseOomheroLog(s), "critical")) > 0 }); err != nil {
		t.Fatalf("no would-be critical signal: %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // cooldown repeats, and any signal on its way
	olog, err := r.Logs(ctx, "oomhero")
	if err != nil {
		t.Fatal(err)
	}
	es := ParseOomheroLog(olog)
	checkSource(t, es)

	// Said loudly, at start.
	var dry []Entry
	for _, e := range es {
		if strings.HasPrefix(e.Msg, "DRY RUN") {
			dry = append(dry, e)
		}
	}
	if len(dry) != 1 || dry[0].Level != "WARN" {
		t.Errorf("want one WARN line starting \"DRY RUN\", got:\n%s", Short(dry))
	} else {
		t.Logf("start: %s", strings.TrimSpace(Short(dry)))
	}

	alog, err := r.Logs(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	lg := parseApp(t, alog)
	appPid, err := lg.Start.Uint("pid")
	if err != nil {
		t.Fatal(err)
	}

	// Both would-be signals, at the right percentages, with the attributes
	// of "signal sent".
	for _, c := range []struct {
		level, signal string
		lo, hi        float64
	}{{"warning", "SIGUSR1", warning, critical}, {"critical", "SIGUSR2", critical, 100}} {
		ws := wouldBe(es, c.level)
		if len(ws) == 0 {
			t.Errorf("no \"signal not sent (dry run)\" at %s", c.level)
			continue
		}
		t.Logf("%s: %d lines, first: %s", c.level, len(ws), strings.TrimSpace(Short(ws[:1])))
		e := ws[0]
		pct, err := strconv.ParseFloat(e.Str("percent"), 64)
		if err != nil || pct < c.lo || pct >= c.hi {
			t.Errorf("%s logged at %s%%, want within [%v, %v)", c.level, e.Str("percent"), c.lo, c.hi)
		}
		if e.Str("signal") != c.signal {
			t.Errorf("%s: signal %s, want %s", c.level, e.Str("signal"), c.signal)
		}
		for _, k := range []string{"pid", "command", "working_set_bytes", "usage_bytes", "limit_bytes"} {
			if e.Str(k) == "" {
				t.Errorf("%s line lacks %s", c.level, k)
			}
		}
		if pid, err := e.Uint("pid"); err != nil || pid != appPid {
			t.Errorf("%s: would-be target pid %s, want the app's %d (pod PID namespace)", c.level, e.Str("pid"), appPid)
		}
	}
	if s := Select(es, "signal sent", ""); len(s) > 0 {
		t.Errorf("dry run sent signals:\n%s", Short(s))
	}
	if lc := Select(es, "level changed", "bloat"); len(lc) < 2 {
		t.Errorf("dry run must still report the levels: %d \"level changed\" lines", len(lc))
	}
	if n := len(lg.Signals); n > 0 {
		t.Errorf("the app received %d signals in a dry run (first %+v)", n, lg.Signals[0])
	}

	// The excluded container: held above the warning, never reported.
	ex := Select(es, "container excluded", "")
	if len(ex) != 1 || ex[0].Str("container") != "canary" {
		t.Errorf("want one \"container excluded\" for canary, got:\n%s", Short(ex))
	} else {
		t.Logf("excluded: %s", strings.TrimSpace(Short(ex)))
	}
	for _, e := range es {
		if e.Str("container") == "canary" && e.Msg != "container excluded" && e.Msg != "container named as declared" {
			t.Errorf("excluded container reported: %s", strings.TrimSpace(Short([]Entry{e})))
		}
	}
	clog, err := r.Logs(ctx, "limited")
	if err != nil {
		t.Fatal(err)
	}
	cl := parseApp(t, clog)
	if n := len(cl.Signals); n > 0 {
		t.Errorf("the excluded app received %d signals", n)
	}
	if n := len(cl.Samples); n == 0 || cl.Samples[n-1].WorkingSet < 256<<20*warning/100 {
		t.Errorf("the excluded app did not hold above the warning threshold: the test proves nothing")
	}
}

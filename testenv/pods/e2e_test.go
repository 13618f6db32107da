package pods

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oomhero/oomhero/testenv/app/applog"
)

var (
	labOnce sync.Once
	lab     *Lab
	labErr  error
)

func TestMain(m *testing.M) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigc
		fmt.Fprintf(os.Stderr, "pods: %v: tearing down pods\n", s)
		DownAll()
		os.Exit(2)
	}()
	code := m.Run()
	DownAll()
	if lab != nil {
		lab.Close()
	}
	os.Exit(code)
}

// needLab skips the test when the machine cannot run pods (fails under
// CI=true) and builds the images once.
func needLab(t *testing.T) *Lab {
	t.Helper()
	if err := Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	labOnce.Do(func() {
		root, err := FindRoot()
		if err != nil {
			labErr = err
			return
		}
		if lab, labErr = NewLab(root); labErr != nil {
			return
		}
		lab.Log = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "pods: "+format+"\n", args...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if labErr = lab.SweepOrphans(ctx); labErr != nil {
			return
		}
		if os.Getenv("OOMHERO_E2E_NO_BUILD") == "1" {
			for _, im := range []string{OomheroImage, AppImage} {
				if !lab.ImageExists(ctx, im) {
					labErr = fmt.Errorf("OOMHERO_E2E_NO_BUILD=1 but image %s is missing", im)
					return
				}
			}
			return
		}
		labErr = lab.BuildImages(ctx)
	})
	if labErr != nil {
		t.Fatalf("pod lab: %v", labErr)
	}
	return lab
}

// testCtx returns a context that ends a minute before the test binary's
// deadline (go test -timeout), so clean-ups still run.
func testCtx(t *testing.T, max time.Duration) context.Context {
	d := time.Now().Add(max)
	if td, ok := t.Deadline(); ok && td.Add(-time.Minute).Before(d) {
		d = td.Add(-time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// saveLogs writes full logs to $TMPDIR/oomhero-e2e-logs/<test>/ and returns
// the directory.
func saveLogs(t *testing.T, logs map[string]string) string {
	dir := filepath.Join(os.TempDir(), "oomhero-e2e-logs", strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ""
	}
	for name, s := range logs {
		os.WriteFile(filepath.Join(dir, name+".log"), []byte(s), 0o644)
	}
	return dir
}

// appDigest is the app log without most samples: every non-sample line,
// the first 3 samples, the samples just before and after each signal, the
// last 5.
func appDigest(log string) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	keep := make([]bool, len(lines))
	var samples []int
	for i, l := range lines {
		if strings.HasPrefix(l, "event=sample") {
			samples = append(samples, i)
			continue
		}
		keep[i] = true
		if strings.HasPrefix(l, "event=signal") {
			for j := i - 2; j <= i+2; j++ {
				if j >= 0 && j < len(lines) {
					keep[j] = true
				}
			}
		}
	}
	for k, i := range samples {
		if k < 3 || k >= len(samples)-5 {
			keep[i] = true
		}
	}
	var b strings.Builder
	skipped := 0
	for i, l := range lines {
		if !keep[i] {
			skipped++
			continue
		}
		if skipped > 0 {
			fmt.Fprintf(&b, "    ... %d samples\n", skipped)
			skipped = 0
		}
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

// dump prints both logs on failure (always with -v).
func dump(t *testing.T, logs map[string]string) {
	t.Helper()
	if !t.Failed() && !testing.Verbose() {
		return
	}
	dir := saveLogs(t, logs)
	for _, name := range []string{"oomhero", "app", "nolimit", "limited"} {
		s, ok := logs[name]
		if !ok {
			continue
		}
		if name == "oomhero" {
			t.Logf("oomhero log:\n%s", indent(Short(ParseOomheroLog(s))))
		} else {
			t.Logf("%s log (digest):\n%s", name, appDigest(s))
		}
	}
	if st := logs["states"]; st != "" {
		t.Logf("containers:\n%s", indent(st))
	}
	if dir != "" {
		t.Logf("full logs in %s", dir)
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// checkSource fails when OOMHERO_E2E_SOURCE asked for a source that oomhero
// did not activate.
func checkSource(t *testing.T, es []Entry) {
	t.Helper()
	want := SourceFromEnv()
	act := Select(es, "source active", "")
	if len(act) == 0 {
		t.Errorf("oomhero never logged \"source active\"")
		return
	}
	got := act[len(act)-1].Str("source")
	t.Logf("source active: %s %s", got, act[len(act)-1].Str("reason"))
	if want != "" && want != "auto" && !strings.HasPrefix(got, want) {
		t.Errorf("OOMHERO_E2E_SOURCE=%s but oomhero's active source is %q", want, got)
	}
}

func env(kv ...string) []EnvVar {
	var out []EnvVar
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, EnvVar{kv[i], kv[i+1]})
	}
	return out
}

// startPod plays p and registers its tear-down and the log dump.
func startPod(t *testing.T, ctx context.Context, l *Lab, p Pod) *Running {
	t.Helper()
	p.Name = PodName(p.Name)
	r, err := l.Play(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		logs := map[string]string{}
		for _, c := range p.Containers {
			if s, err := r.Logs(lctx, c.Name); err == nil {
				logs[c.Name] = s
			} else {
				t.Logf("logs of %s: %v", c.Name, err)
			}
		}
		logs["states"] = r.States(lctx)
		dump(t, logs)
		if err := r.Down(); err != nil {
			t.Errorf("tear down: %v", err)
		}
	})
	return r
}

func parseApp(t *testing.T, log string) applog.Log {
	t.Helper()
	lg, err := applog.ParseLog(strings.NewReader(log))
	if err != nil {
		t.Fatalf("parse app log: %v", err)
	}
	return lg
}

func leakDump(t *testing.T, res *LeakResult) {
	t.Helper()
	if res == nil {
		return
	}
	dump(t, map[string]string{"app": res.AppLog, "oomhero": res.OomheroLog, "states": res.States})
}

// TestLeak20 (issue 2, 8a): a 20 MiB/s leak gets its warning, then its
// critical signal, each within 50 ms of the crossing.
func TestLeak20(t *testing.T) {
	l := needLab(t)
	ctx := testCtx(t, 3*time.Minute)
	// At debug level: a first signal that did not go out express is
	// explained by the agent's "express plan" lines (what it had armed).
	res, err := l.RunLeak(ctx, LeakSpec{Name: "leak20", Rate: 20, Memory: "256Mi", Cap: 95,
		Env: env("WARNING", "65", "CRITICAL", "90", "OOMHERO_LOG_LEVEL", "debug"), Source: SourceFromEnv()})
	defer leakDump(t, res)
	if err != nil {
		t.Fatal(err)
	}
	checkSource(t, res.Oomhero)
	if res.Watched.Limit == 0 {
		t.Fatalf("oomhero did not log \"container watched\" with thresholds for the app (%s)", res.AppID)
	}
	if want := uint64(256 << 20); res.Watched.Limit != want {
		t.Errorf("oomhero's limit_bytes = %d, want %d", res.Watched.Limit, want)
	}
	const maxLatency = 50 * time.Millisecond
	t.Log(res.Warn)
	t.Log(res.Crit)
	for _, p := range CheckReactions(res.Warn, res.Crit, maxLatency) {
		t.Error(p)
	}
	// The first signal of each level went out from the source's goroutine
	// (express sends: armed long before the crossing).
	for _, lv := range []string{"warning", "critical"} {
		var first *Entry
		for _, e := range Select(res.Oomhero, "signal sent", "") {
			if e.Str("memory_level") == lv {
				first = &e
				break
			}
		}
		switch {
		case first == nil:
			t.Errorf("no %s \"signal sent\" line", lv)
		case first.Str("express") != "true":
			t.Errorf("the first %s signal was not an express send: %s", lv, first.Raw)
			for _, e := range Select(res.Oomhero, "express plan", "") {
				t.Log(e.Raw)
			}
		}
	}
}

// TestLeak200 (issue 2, 8b): a 200 MiB/s leak into 256 MiB gets its
// critical signal before the kernel's OOM kill (three runs).
func TestLeak200(t *testing.T) {
	l := needLab(t)
	for i := 1; i <= 3; i++ {
		t.Run(fmt.Sprintf("run%d", i), func(t *testing.T) {
			ctx := testCtx(t, 2*time.Minute)
			res, err := l.RunLeak(ctx, LeakSpec{Name: fmt.Sprintf("leak200-%d", i), Rate: 200, Memory: "256Mi",
				Env: env("WARNING", "65", "CRITICAL", "90"), Source: SourceFromEnv()})
			defer leakDump(t, res)
			if err != nil {
				t.Fatal(err)
			}
			checkSource(t, res.Oomhero)
			if res.AppState.ExitCode != 137 {
				t.Fatalf("app exit code %d (status %s), want 137 (OOM kill)", res.AppState.ExitCode, res.AppState.Status)
			}
			switch {
			case res.KmsgErr != nil:
				t.Logf("kernel log not readable (%v); judging the kill by exit code 137", res.KmsgErr)
			case len(res.Kills) == 0:
				t.Errorf("exit code 137 but the kernel log has no OOM kill of pid %d", res.AppPid)
			default:
				t.Logf("kernel: %s", res.Kills[0].Line)
			}
			t.Log(res.Warn)
			t.Log(res.Crit)
			if !res.Crit.Crossed {
				t.Fatalf("the app never crossed the critical threshold (%d): the test proves nothing", res.Crit.Threshold)
			}
			if !res.Crit.Received {
				t.Fatalf("no %s before the OOM kill", res.Crit.Signal)
			}
			if n := len(res.App.Samples); n > 0 {
				t.Logf("critical arrived %v before the app's last sample", res.App.Samples[n-1].Mono-res.Crit.At)
			}
			// Issue 4, item 3 on cgroup v1: one report line per kill, with
			// the limit, the last reading and when the signals went out.
			kills := Select(res.Oomhero, "oom kill", "")
			if len(kills) != 1 {
				t.Fatalf("oomhero logged %d \"oom kill\" lines, want 1:\n%s", len(kills), Short(kills))
			}
			k := kills[0]
			for _, key := range []string{"container", "limit_bytes", "last_percent", "last_working_set_bytes", "last_warning_ago", "last_critical_ago"} {
				if k.Str(key) == "" {
					t.Errorf("\"oom kill\" line lacks %s: %s", key, Short(kills))
				}
			}
			if lim, err := k.Uint("limit_bytes"); err != nil || lim != 256<<20 {
				t.Errorf("\"oom kill\" limit_bytes = %d (%v), want %d", lim, err, 256<<20)
			}
			t.Logf("report: %s", Short(kills))
		})
	}
}

// TestPageCache (issue 2, 8c): an app whose usage sits near 100% of its
// limit with page cache, working set low, gets no signal in 30 s.
func TestPageCache(t *testing.T) {
	t.Parallel()
	l := needLab(t)
	ctx := testCtx(t, 3*time.Minute)
	r := startPod(t, ctx, l, Pod{Name: "pagecache", Containers: []Container{
		{Name: "app", Image: AppImage, Args: []string{"-mode", "churn", "-anon", "16", "-sample-interval", "250ms"}, Memory: "256Mi"},
		OomheroContainer(OomheroImage, SourceFromEnv(), env("WARNING", "65", "CRITICAL", "90")...),
	}})
	st, err := r.State(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Second)
	olog, err := r.Logs(ctx, "oomhero")
	if err != nil {
		t.Fatal(err)
	}
	alog, err := r.Logs(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	es := ParseOomheroLog(olog)
	checkSource(t, es)
	w, ok, err := FindWatched(es, st.ID)
	if err != nil || !ok {
		t.Fatalf("oomhero did not watch the app's container (%v): a quiet oomhero proves nothing", err)
	}
	lg := parseApp(t, alog)
	var maxUsage, maxWS uint64
	for _, s := range lg.Samples {
		maxUsage = max(maxUsage, s.Usage)
		maxWS = max(maxWS, s.WorkingSet)
	}
	t.Logf("limit %d: max usage %.1f%%, max working set %.1f%%, %d samples",
		w.Limit, 100*float64(maxUsage)/float64(w.Limit), 100*float64(maxWS)/float64(w.Limit), len(lg.Samples))
	if maxUsage < w.Warning || maxUsage < w.Limit*9/10 {
		t.Errorf("usage never reached 90%% of the limit (max %d): the test proves nothing", maxUsage)
	}
	if maxWS >= w.Warning {
		t.Errorf("the app's working set reached the warning threshold (%d >= %d): the scenario is wrong", maxWS, w.Warning)
	}
	if n := len(lg.Signals); n > 0 {
		t.Errorf("the page-cache app got %d signals, want none (first: %+v)", n, lg.Signals[0])
	}
	if s := Select(es, "signal sent", ""); len(s) > 0 {
		t.Errorf("oomhero sent %d signals, want none", len(s))
	}
	if s := Select(es, "level changed", st.ID); len(s) > 0 {
		t.Errorf("oomhero changed level %d times, want none", len(s))
	}
	if len(lg.Lines) > 0 && !strings.Contains(alog, "event=churn-pass") {
		t.Errorf("the app never finished a churn pass")
	}
}

// TestPageCacheInFlux: an app reading a hot file (its pages active) and
// streaming a file three times its limit drives reclaim at the limit,
// which drains the inactive file list for moments of a few milliseconds:
// its working set then reads as 80-100 % of the limit though it holds 8 MiB
// of anonymous memory, near 60 % between. oomhero rereads such readings
// before they count (internal/agent/flux.go) and must not signal. The app's
// own probe (its cgroup read every millisecond) shows that the moments came.
func TestPageCacheInFlux(t *testing.T) {
	t.Parallel()
	l := needLab(t)
	ctx := testCtx(t, 3*time.Minute)
	r := startPod(t, ctx, l, Pod{Name: "pagecache-flux", Containers: []Container{
		// 8 MiB anonymous and 24 MiB hot: a working set near 60 % of the
		// limit between the moments.
		{Name: "app", Image: AppImage, Args: []string{"-mode", "churn", "-anon", "8", "-hot", "24", "-file-size", "200",
			"-probe", "1ms", "-sample-interval", "0"}, Memory: "64Mi"},
		OomheroContainer(OomheroImage, SourceFromEnv(), env("WARNING", "75", "CRITICAL", "90", "OOMHERO_LOG_LEVEL", "debug")...),
	}})
	st, err := r.State(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	// Until the probe saw the working set at the warning threshold (at
	// most 90 s), then 5 s more.
	warnAt := uint64(64<<20) * 75 / 100
	var peak uint64
	var alog string
	for deadline := time.Now().Add(90 * time.Second); peak < warnAt && time.Now().Before(deadline); {
		time.Sleep(2 * time.Second)
		if alog, err = r.Logs(ctx, "app"); err != nil {
			t.Fatal(err)
		}
		peak, _ = probePeak(alog)
	}
	time.Sleep(5 * time.Second)
	olog, err := r.Logs(ctx, "oomhero")
	if err != nil {
		t.Fatal(err)
	}
	if alog, err = r.Logs(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	es := ParseOomheroLog(olog)
	checkSource(t, es)
	if _, ok, err := FindWatched(es, st.ID); err != nil || !ok {
		t.Fatalf("oomhero did not watch the app's container (%v): a quiet oomhero proves nothing", err)
	}
	peak, passes := probePeak(alog)
	t.Logf("%d churn passes, the app's probe saw a working set of up to %.1f %% of its limit", passes, 100*float64(peak)/float64(64<<20))
	if peak < warnAt {
		t.Errorf("the probe never saw the working set at the warning threshold (%d < %d): the moments this test is about did not come", peak, warnAt)
	}
	lg := parseApp(t, alog)
	if n := len(lg.Signals); n > 0 {
		t.Errorf("the page-cache app got %d signals, want none (first: %+v)", n, lg.Signals[0])
	}
	if s := Select(es, "level changed", st.ID); len(s) > 0 {
		t.Errorf("oomhero changed level %d times, want none: %v", len(s), s[0].Raw)
	}
	// The BPF source reads the cgroup on the kernel's crossing events, so
	// it meets the moments; the poller may read between them.
	held := Select(es, "reading in flux (reclaim at the limit), reading again before judging it", "")
	t.Logf("%d readings in flux held for a reread", len(held))
	if len(held) == 0 && SourceFromEnv() == "bpf" {
		t.Errorf("the BPF source never read a moment in flux: the rereads were not tried")
	}
}

// probePeak returns the highest max_working_set of the app's churn-pass
// lines and how many passes it logged.
func probePeak(alog string) (peak, passes uint64) {
	for line := range strings.Lines(alog) {
		if !strings.Contains(line, "event=churn-pass") {
			continue
		}
		passes++
		_, v, ok := strings.Cut(line, "max_working_set=")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.Fields(v)[0], 10, 64); err == nil {
			peak = max(peak, n)
		}
	}
	return peak, passes
}

// TestChildrenSurvive (issue 2, 8d): three child processes without a
// handler survive while the app is warned.
func TestChildrenSurvive(t *testing.T) {
	t.Parallel()
	l := needLab(t)
	ctx := testCtx(t, 3*time.Minute)
	r := startPod(t, ctx, l, Pod{Name: "children", Containers: []Container{
		{Name: "app", Image: AppImage, Args: []string{"-mode", "hold", "-rate", "50", "-percent", "75", "-children", "3"}, Memory: "256Mi"},
		OomheroContainer(OomheroImage, SourceFromEnv(), env("WARNING", "65", "CRITICAL", "90")...),
	}})
	if _, err := r.WaitLog(ctx, "app", func(s string) bool { return strings.Count(s, "signal=SIGUSR1") >= 1 }); err != nil {
		t.Fatalf("no warning: %v", err)
	}
	time.Sleep(3500 * time.Millisecond) // cooldown repeats
	alog, err := r.Logs(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	olog, err := r.Logs(ctx, "oomhero")
	if err != nil {
		t.Fatal(err)
	}
	es := ParseOomheroLog(olog)
	checkSource(t, es)
	lg := parseApp(t, alog)
	warns := lg.SignalsNamed("SIGUSR1")
	t.Logf("%d warnings received, %d children started", len(warns), len(lg.ChildStarts))
	if len(warns) < 2 {
		t.Errorf("%d warnings in 3.5 s after the first, want at least 2 (cooldown 1 s)", len(warns))
	}
	if len(lg.ChildStarts) != 3 {
		t.Fatalf("%d children started, want 3", len(lg.ChildStarts))
	}
	for _, l := range lg.ChildExits {
		t.Errorf("child exited: %v", l.KV)
	}
	appPid, err := lg.Start.Uint("pid")
	if err != nil {
		t.Fatal(err)
	}
	sent := Select(es, "signal sent", "")
	if len(sent) == 0 {
		t.Errorf("oomhero logged no \"signal sent\"")
	}
	for _, e := range sent {
		if pid, err := e.Uint("pid"); err != nil || pid != appPid {
			t.Errorf("oomhero signalled pid %s, want only the app (%d)", e.Str("pid"), appPid)
		}
	}
	// The children are alive now: their parent would have logged their exit,
	// and podman must still show them.
	out, err := l.Podman(ctx, "top", r.ContainerName("app"), "pid", "args")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), "-mode child"); n != 3 {
		t.Errorf("podman top shows %d children, want 3:\n%s", n, out)
	}
}

// TestNoLimit (issue 2, 8e): a container without a memory limit gets
// nothing and oomhero's log says why, while its limited neighbour is warned.
func TestNoLimit(t *testing.T) {
	t.Parallel()
	l := needLab(t)
	ctx := testCtx(t, 3*time.Minute)
	r := startPod(t, ctx, l, Pod{Name: "nolimit", Containers: []Container{
		{Name: "nolimit", Image: AppImage, Args: []string{"-mode", "hold", "-rate", "100", "-cap", "200"}},
		{Name: "limited", Image: AppImage, Args: []string{"-mode", "hold", "-rate", "50", "-percent", "75"}, Memory: "256Mi"},
		OomheroContainer(OomheroImage, SourceFromEnv(), env("WARNING", "65", "CRITICAL", "90")...),
	}})
	nl, err := r.State(ctx, "nolimit")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitLog(ctx, "limited", func(s string) bool { return strings.Contains(s, "signal=SIGUSR1") }); err != nil {
		t.Fatalf("the limited neighbour got no warning: %v", err)
	}
	if _, err := r.WaitLog(ctx, "oomhero", func(s string) bool {
		return len(Select(ParseOomheroLog(s), "container not watched", "")) > 0
	}); err != nil {
		t.Fatalf("oomhero never logged \"container not watched\": %v", err)
	}
	time.Sleep(2 * time.Second)
	olog, err := r.Logs(ctx, "oomhero")
	if err != nil {
		t.Fatal(err)
	}
	es := ParseOomheroLog(olog)
	checkSource(t, es)
	not := Select(es, "container not watched", nl.ID)
	if len(not) == 0 {
		all := Select(es, "container not watched", "")
		t.Logf("no \"container not watched\" names the container id %s; all such lines:\n%s", nl.ID[:12], Short(all))
		if len(all) != 1 {
			t.Fatalf("cannot tell which \"container not watched\" line is the unlimited container's")
		}
		not = all
	}
	reason := not[0].Str("reason")
	t.Logf("container not watched: reason=%q", reason)
	if !strings.Contains(strings.ToLower(reason), "limit") {
		t.Errorf("reason %q does not mention the missing limit", reason)
	}
	if n := len(Select(es, "container not watched", nl.ID)); n > 1 {
		t.Errorf("\"container not watched\" logged %d times for one container, want once", n)
	}
	if _, ok, _ := FindWatched(es, nl.ID); ok {
		t.Errorf("oomhero watches the container without a limit")
	}
	alog, err := r.Logs(ctx, "nolimit")
	if err != nil {
		t.Fatal(err)
	}
	lg := parseApp(t, alog)
	if n := len(lg.Signals); n > 0 {
		t.Errorf("the container without a limit got %d signals", n)
	}
	if len(lg.Samples) == 0 || lg.Samples[len(lg.Samples)-1].Usage < 150<<20 {
		t.Errorf("the unlimited app does not hold its memory: the test proves little")
	}
}

// TestCooldown (issue 2, 8f): COOLDOWN=2s, held above warning for 10 s:
// 5 ± 1 warnings.
func TestCooldown(t *testing.T) {
	t.Parallel()
	l := needLab(t)
	ctx := testCtx(t, 3*time.Minute)
	r := startPod(t, ctx, l, Pod{Name: "cooldown", Containers: []Container{
		{Name: "app", Image: AppImage, Args: []string{"-mode", "hold", "-rate", "50", "-percent", "70"}, Memory: "256Mi"},
		OomheroContainer(OomheroImage, SourceFromEnv(), env("WARNING", "50", "CRITICAL", "90", "COOLDOWN", "2s")...),
	}})
	var first time.Duration
	alog, err := r.WaitLog(ctx, "app", func(s string) bool {
		lg, err := applog.ParseLog(strings.NewReader(s))
		if err != nil {
			return false
		}
		w := lg.SignalsNamed("SIGUSR1")
		if len(w) == 0 {
			return false
		}
		first = w[0].Mono
		n := len(lg.Samples)
		return n > 0 && lg.Samples[n-1].Mono > first+10*time.Second+300*time.Millisecond
	})
	if err != nil {
		t.Fatalf("waiting for the first warning and 10 s more: %v", err)
	}
	olog, err := r.Logs(ctx, "oomhero")
	if err != nil {
		t.Fatal(err)
	}
	es := ParseOomheroLog(olog)
	checkSource(t, es)
	st, err := r.State(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	w, ok, err := FindWatched(es, st.ID)
	if err != nil || !ok {
		t.Fatalf("no \"container watched\" with thresholds for the app (%v)", err)
	}
	lg := parseApp(t, alog)
	// The app must really have stayed between warning and critical. The
	// first warning comes at the crossing, while the app still grows, and
	// its working set moves by a few pages either way meanwhile (page
	// cache turning inactive): a dip of less than the hysteresis (one
	// point, 2.6 MiB here) does not end the level, so it does not change
	// what the cooldown must give.
	const noise = 1 << 20
	for _, s := range lg.Samples {
		if s.Mono >= first && s.Mono < first+10*time.Second && (s.WorkingSet+noise < w.Warning || s.WorkingSet >= w.Critical) {
			t.Fatalf("working set %d at +%v outside [warning %d - 1 MiB, critical %d): the scenario is wrong",
				s.WorkingSet, s.Mono-first, w.Warning, w.Critical)
		}
	}
	var in []time.Duration
	for _, s := range lg.SignalsNamed("SIGUSR1") {
		if s.Mono >= first && s.Mono < first+10*time.Second {
			in = append(in, s.Mono-first)
		}
	}
	t.Logf("warnings within 10 s of the first: %d at %v", len(in), in)
	if len(in) < 4 || len(in) > 6 {
		t.Errorf("%d warnings in 10 s with COOLDOWN=2s, want 5 ± 1", len(in))
	}
	if n := len(lg.SignalsNamed("SIGUSR2")); n > 0 {
		t.Errorf("%d critical signals while held below critical", n)
	}
}

// TestLeak1000 (issue 3, item 7): with the BPF source, a 1000 MiB/s leak
// into 256 MiB gets both signals before the OOM kill in at least 9 of 10
// runs. The cgroupfs source is not held to this (it polls); its pass skips.
func TestLeak1000(t *testing.T) {
	if SourceFromEnv() == "cgroupfs" {
		t.Skip("the 1000 MiB/s target is the BPF source's; this pass runs --source cgroupfs")
	}
	l := needLab(t)
	const runs, want = 10, 9
	both := 0
	for i := 1; i <= runs; i++ {
		ctx := testCtx(t, 2*time.Minute)
		res, err := l.RunLeak(ctx, LeakSpec{Name: fmt.Sprintf("leak1000-%d", i), Rate: 1000, Memory: "256Mi",
			Env: env("WARNING", "65", "CRITICAL", "90"), Source: SourceFromEnv()})
		if err != nil {
			leakDump(t, res)
			t.Fatal(err)
		}
		if i == 1 {
			checkSource(t, res.Oomhero)
		}
		if res.AppState.ExitCode != 137 {
			leakDump(t, res)
			t.Fatalf("run %d: app exit code %d (status %s), want 137 (OOM kill)", i, res.AppState.ExitCode, res.AppState.Status)
		}
		if !res.Crit.Crossed {
			leakDump(t, res)
			t.Fatalf("run %d: the app never crossed the critical threshold: the test proves nothing", i)
		}
		ok := res.Warn.Received && res.Crit.Received && res.Warn.At <= res.Crit.At
		if ok {
			both++
		}
		t.Logf("run %d: both signals before the kill: %v (%v; %v)", i, ok, res.Warn, res.Crit)
	}
	t.Logf("1000 MiB/s into 256 MiB: both signals before the OOM kill in %d of %d runs", both, runs)
	if both < want {
		t.Errorf("both signals before the OOM kill in %d of %d runs, want at least %d", both, runs, want)
	}
}

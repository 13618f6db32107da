package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/heartbeat"
	"github.com/oomhero/oomhero/internal/watch"
)

// The rules and the dashboard of deploy/monitoring query only metrics this
// package registers, and the promtool rule tests feed series with the
// labels oomhero really sets: a renamed metric or label breaks this test,
// not an operator's alert.

const monitoringDir = "../../deploy/monitoring"

// exported returns every metric family a fully used oomhero exports, with
// its label names: each collector touched once, the Go and process
// collectors on.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	m := New(Options{Pod: "p"})
	tg := watch.Target{Container: watch.Container{ID: 1, Name: "c", Limit: 100}, Warn: 65, Crit: 90}
	m.SetWatched([]watch.Target{tg})
	m.Observe(tg, watch.Reading{ID: 1, Usage: 50, Limit: 100}, watch.OK)
	m.Signal(tgt("c"), watch.Warning, ResultSent)
	m.Notification(tgt("c"), watch.Warning, "sent")
	m.OOMKill(tgt("c"))
	m.LostEvents(0)
	m.SetSource("bpf fentry/x")
	m.ScanDone()
	m.Watch("agent", heartbeat.New(heartbeat.Monotonic()), time.Minute)
	m.CountEvents(fakeEvents{})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, f := range fams {
		var labels []string
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		out[f.GetName()] = labels
	}
	return out
}

type fakeEvents struct{}

func (fakeEvents) Posted() uint64  { return 1 }
func (fakeEvents) Dropped() uint64 { return 0 }
func (fakeEvents) Failed() uint64  { return 0 }

// ruleExprs returns the expr fields of a Prometheus rule file, inline or
// as a block scalar ("expr: |").
func ruleExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var out []string
	for i := 0; i < len(lines); i++ {
		rest, ok := strings.CutPrefix(strings.TrimSpace(lines[i]), "expr:")
		if !ok {
			continue
		}
		if rest = strings.TrimSpace(rest); rest != "|" && rest != ">" {
			out = append(out, rest)
			continue
		}
		indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
		var block []string
		for i+1 < len(lines) && (strings.TrimSpace(lines[i+1]) == "" || len(lines[i+1])-len(strings.TrimLeft(lines[i+1], " ")) > indent) {
			i++
			block = append(block, lines[i])
		}
		out = append(out, strings.Join(block, "\n"))
	}
	return out
}

// dashboardExprs returns the PromQL of a Grafana dashboard: every target's
// expr and every variable's query.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	var walk func(any, string)
	walk = func(v any, key string) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(c, k)
			}
		case []any:
			for _, c := range x {
				walk(c, key)
			}
		case string:
			if key == "expr" || key == "query" && strings.Contains(x, "(") {
				out = append(out, x)
			}
		}
	}
	walk(v, "")
	return out
}

var (
	quoted    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	braces    = regexp.MustCompile(`\{[^{}]*\}`)
	brackets  = regexp.MustCompile(`\[[^\]]*\]`)
	labelList = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	labelVals = regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)[^)]*\)`)
	ident     = regexp.MustCompile(`[a-zA-Z0-9_:.$]+`)
	keywords  = []string{"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "group_left", "group_right"}
)

// metricNames returns the metric names a PromQL expression selects:
// identifiers that are neither functions (followed by a parenthesis), nor
// keywords, nor label names (inside braces or label lists).
func metricNames(expr string) []string {
	expr = labelVals.ReplaceAllString(expr, " $1 ")
	expr = quoted.ReplaceAllString(expr, `""`)
	expr = braces.ReplaceAllString(expr, "{}")
	expr = brackets.ReplaceAllString(expr, "[]")
	expr = labelList.ReplaceAllString(expr, " ")
	var out []string
	for _, ix := range ident.FindAllStringIndex(expr, -1) {
		w := expr[ix[0]:ix[1]]
		if c := w[0]; c >= '0' && c <= '9' || c == '.' || c == '$' || strings.ContainsAny(w, ".$") {
			continue // a number, a duration, a variable
		}
		if strings.HasPrefix(strings.TrimLeft(expr[ix[1]:], " \t\n"), "(") || slices.Contains(keywords, w) {
			continue // a function or aggregation, a keyword
		}
		out = append(out, w)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	got := metricNames(`sum by (pod, container) (increase(oomhero_oom_kills_total{pod=~"$pod",container="a b"}[10m])) > 0 unless on (job) oomhero_x offset 5m or label_values(oomhero_level{pod=~"$pod"}, container)`)
	if want := []string{"oomhero_oom_kills_total", "oomhero_x", "oomhero_level"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestMonitoringUsesExportedMetrics(t *testing.T) {
	fams := exported(t)
	files := map[string][]string{
		"oomhero-rules.yaml":     ruleExprs(t, filepath.Join(monitoringDir, "oomhero-rules.yaml")),
		"oomhero-dashboard.json": dashboardExprs(t, filepath.Join(monitoringDir, "oomhero-dashboard.json")),
	}
	used := map[string]bool{}
	for file, exprs := range files {
		if len(exprs) < 5 {
			t.Fatalf("%s: %d expressions found, the parse is broken", file, len(exprs))
		}
		for _, e := range exprs {
			names := metricNames(e)
			if len(names) == 0 {
				t.Errorf("%s: no metric in %q", file, e)
			}
			for _, n := range names {
				used[n] = true
				if _, ok := fams[n]; !ok {
					t.Errorf("%s: %s is not a metric oomhero exports (expression %q)", file, n, e)
				}
			}
		}
	}
	// The signals, kills and levels the issue asks for are covered.
	for _, n := range []string{"oomhero_level", "oomhero_oom_kills_total", "oomhero_signals_total",
		"oomhero_memory_working_set_bytes", "oomhero_threshold_bytes", "oomhero_source_info"} {
		if !used[n] {
			t.Errorf("deploy/monitoring never uses %s", n)
		}
	}
}

// The series of the promtool rule tests carry the labels oomhero sets on
// them, plus the scrape's job and instance.
func TestRuleTestSeriesShapedLikeMetrics(t *testing.T) {
	fams := exported(t)
	b, err := os.ReadFile(filepath.Join(monitoringDir, "oomhero-rules_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	series := regexp.MustCompile(`series: '([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}'`).FindAllStringSubmatch(string(b), -1)
	if len(series) < 10 {
		t.Fatalf("%d input series found, the parse is broken", len(series))
	}
	label := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	for _, s := range series {
		want, ok := fams[s[1]]
		if !ok {
			t.Errorf("input series %s: not a metric oomhero exports", s[1])
			continue
		}
		var got []string
		for _, l := range label.FindAllStringSubmatch(s[2], -1) {
			got = append(got, l[1])
			if l[1] != "job" && l[1] != "instance" && !slices.Contains(want, l[1]) {
				t.Errorf("input series %s{%s}: label %s is not one oomhero sets (%v)", s[1], s[2], l[1], want)
			}
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("input series %s{%s}: lacks label %s that oomhero sets", s[1], s[2], w)
			}
		}
	}
}

package policy

import (
	"slices"
	"testing"
	"time"

	"github.com/oomhero/oomhero/internal/watch"
)

const (
	ok   = watch.OK
	warn = watch.Warning
	crit = watch.Critical
)

func TestTransitions(t *testing.T) {
	th := Thresholds{Warn: 75, Crit: 90, Hysteresis: 2}
	type step struct {
		at     time.Duration // since start
		value  uint64
		level  watch.Level
		signal []watch.Level
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"stays ok below warning", []step{{0, 10, ok, nil}, {time.Second, 74, ok, nil}}},
		{"warning at threshold", []step{{0, 75, warn, []watch.Level{warn}}}},
		{"ok to warning to critical", []step{
			{0, 50, ok, nil}, {100 * time.Millisecond, 80, warn, []watch.Level{warn}},
			{200 * time.Millisecond, 95, crit, []watch.Level{crit}}}},
		{"ok straight to critical sends both in order", []step{{0, 99, crit, []watch.Level{warn, crit}}}},
		{"cooldown repeats the current level only", []step{
			{0, 95, crit, []watch.Level{warn, crit}},
			{500 * time.Millisecond, 95, crit, nil},
			{time.Second, 96, crit, []watch.Level{crit}},
			{1500 * time.Millisecond, 96, crit, nil},
			{2 * time.Second, 96, crit, []watch.Level{crit}}}},
		{"drop below critical within hysteresis keeps critical", []step{
			{0, 91, crit, []watch.Level{warn, crit}}, {10 * time.Millisecond, 89, crit, nil}}},
		{"drop back to warning resumes warnings after cooldown", []step{
			{0, 91, crit, []watch.Level{warn, crit}},
			{100 * time.Millisecond, 80, warn, nil}, // warning was sent 100 ms ago
			{time.Second, 80, warn, []watch.Level{warn}}}},
		{"drop to ok", []step{
			{0, 80, warn, []watch.Level{warn}}, {100 * time.Millisecond, 74, warn, nil},
			{200 * time.Millisecond, 72, ok, nil}, {300 * time.Millisecond, 60, ok, nil}}},
		{"drop from critical straight to ok", []step{
			{0, 95, crit, []watch.Level{warn, crit}}, {100 * time.Millisecond, 10, ok, nil}}},
		{"re-entering within cooldown does not resend", []step{
			{0, 80, warn, []watch.Level{warn}}, {100 * time.Millisecond, 10, ok, nil},
			{200 * time.Millisecond, 80, warn, nil}, {time.Second, 80, warn, []watch.Level{warn}}}},
		{"re-entering after cooldown resends at once", []step{
			{0, 80, warn, []watch.Level{warn}}, {100 * time.Millisecond, 10, ok, nil},
			{1500 * time.Millisecond, 80, warn, []watch.Level{warn}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(time.Second)
			p.Set(7, th)
			t0 := time.Unix(1000, 0)
			for i, s := range tc.steps {
				d := p.Observe(7, s.value, t0.Add(s.at))
				if d.To != s.level || !slices.Equal(d.Signal, s.signal) {
					t.Fatalf("step %d (value %d at %v): got level %v signal %v, want %v %v",
						i, s.value, s.at, d.To, d.Signal, s.level, s.signal)
				}
			}
		})
	}
}

func TestUnknownContainerIgnored(t *testing.T) {
	p := New(time.Second)
	if d := p.Observe(1, 100, time.Now()); d.ID != 0 || d.Signal != nil {
		t.Fatalf("got %+v", d)
	}
}

func TestTickAppliesCooldown(t *testing.T) {
	p := New(2 * time.Second)
	p.Set(1, Thresholds{Warn: 50, Crit: 90})
	p.Set(2, Thresholds{Warn: 50, Crit: 90})
	t0 := time.Unix(0, 0)
	p.Observe(1, 60, t0)
	p.Observe(2, 10, t0)
	if next, ok := p.NextDue(); !ok || !next.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("NextDue = %v %v", next, ok)
	}
	if ds := p.Tick(t0.Add(time.Second)); len(ds) != 0 {
		t.Fatalf("tick before cooldown: %+v", ds)
	}
	// Held above warning for 10 s with COOLDOWN=2s: 5 warnings in all.
	sent := 1
	for s := 1; s < 10; s++ {
		for _, d := range p.Tick(t0.Add(time.Duration(s) * time.Second)) {
			if d.ID != 1 || !slices.Equal(d.Signal, []watch.Level{warn}) || d.Value != 60 {
				t.Fatalf("tick: %+v", d)
			}
			sent++
		}
	}
	if sent != 5 {
		t.Fatalf("sent %d warnings in 10 s, want 5", sent)
	}
	p.Forget(1)
	if _, ok := p.NextDue(); ok {
		t.Fatal("NextDue after Forget")
	}
}

func TestThresholdChangeKeepsState(t *testing.T) {
	p := New(time.Second)
	p.Set(1, Thresholds{Warn: 50, Crit: 90})
	p.Observe(1, 60, time.Unix(0, 0))
	p.Set(1, Thresholds{Warn: 40, Crit: 55})
	d := p.Observe(1, 60, time.Unix(0, 1))
	if d.From != warn || d.To != crit || !slices.Equal(d.Signal, []watch.Level{crit}) {
		t.Fatalf("got %+v", d)
	}
}

func TestPressureRaisesLevel(t *testing.T) {
	p := New(time.Second)
	p.Set(1, Thresholds{Warn: 75, Crit: 90, Hysteresis: 2})
	t0 := time.Unix(0, 0)
	if d := p.Observe(1, 50, t0); d.To != ok {
		t.Fatalf("%+v", d)
	}
	// Memory at 50% but the container stalls on reclaim: critical.
	d := p.ObservePressure(1, crit, t0.Add(time.Millisecond))
	if d.From != ok || d.To != crit || !slices.Equal(d.Signal, []watch.Level{warn, crit}) {
		t.Fatalf("pressure: %+v", d)
	}
	// Memory readings do not lower the level while pressure holds it.
	if d := p.Observe(1, 40, t0.Add(2*time.Millisecond)); d.To != crit {
		t.Fatalf("%+v", d)
	}
	// Pressure gone: back to the memory level.
	if d := p.ObservePressure(1, ok, t0.Add(3*time.Millisecond)); d.To != ok {
		t.Fatalf("%+v", d)
	}
	// Memory above warning with pressure at ok stays at warning.
	p.Observe(1, 80, t0.Add(4*time.Millisecond))
	if d := p.ObservePressure(1, ok, t0.Add(5*time.Millisecond)); d.To != warn {
		t.Fatalf("%+v", d)
	}
}

func TestOncePerCrossing(t *testing.T) {
	p := New(time.Second)
	p.Set(1, Thresholds{Warn: 75, Crit: 90, Hysteresis: 2, Once: true})
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for i, st := range []struct {
		at    time.Duration
		value uint64
		want  []watch.Level
	}{
		{0, 80, []watch.Level{warn}},                      // entering warning
		{5 * time.Second, 80, nil},                        // no repeat, however long
		{6 * time.Second, 95, []watch.Level{crit}},        // entering critical
		{20 * time.Second, 95, nil},                       // no repeat
		{21 * time.Second, 80, nil},                       // critical to warning: warning was not left
		{22 * time.Second, 95, []watch.Level{crit}},       // critical again: a new crossing
		{23 * time.Second, 10, nil},                       // ok: both left
		{24 * time.Second, 99, []watch.Level{warn, crit}}, // both new crossings, in order
		{25 * time.Second, 89, nil},                       // within hysteresis: still critical, no signal
	} {
		d := p.Observe(1, st.value, at(st.at))
		if !slices.Equal(d.Signal, st.want) {
			t.Fatalf("step %d (value %d): signal %v, want %v", i, st.value, d.Signal, st.want)
		}
	}
	if ds := p.Tick(at(time.Hour)); len(ds) != 0 {
		t.Fatalf("Tick repeats under once: %+v", ds)
	}
	if _, ok := p.NextDue(); ok {
		t.Fatal("NextDue under once")
	}
}

func TestPerContainerCooldown(t *testing.T) {
	p := New(time.Second)
	p.Set(1, Thresholds{Warn: 75, Crit: 90})
	p.Set(2, Thresholds{Warn: 75, Crit: 90, Cooldown: 10 * time.Second})
	t0 := time.Unix(1000, 0)
	p.Observe(1, 80, t0)
	p.Observe(2, 80, t0)
	if next, ok := p.NextDue(); !ok || !next.Equal(t0.Add(time.Second)) {
		t.Fatalf("NextDue %v %v", next, ok)
	}
	ds := p.Tick(t0.Add(2 * time.Second))
	if len(ds) != 1 || ds[0].ID != 1 {
		t.Fatalf("at 2s only container 1 is due: %+v", ds)
	}
	if d := p.Observe(2, 80, t0.Add(9*time.Second)); len(d.Signal) != 0 {
		t.Fatalf("container 2 signalled before its cooldown: %+v", d)
	}
	if d := p.Observe(2, 80, t0.Add(10*time.Second)); !slices.Equal(d.Signal, []watch.Level{warn}) {
		t.Fatalf("container 2 not signalled after its cooldown: %+v", d)
	}
}

// TestEntryMatchesObserve: Entry says, without a change, what a rise into
// a level would signal, as Observe then does.
func TestEntryMatchesObserve(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, once := range []bool{false, true} {
		p := New(time.Minute)
		p.Set(1, Thresholds{Warn: 600, Crit: 900, Hysteresis: 10, Once: once})
		if th, ok := p.Entry(1, watch.Warning, t0); th != 600 || !ok {
			t.Fatalf("once=%v: warning entry %d %v", once, th, ok)
		}
		if _, ok := p.Entry(1, watch.Warning, t0); !ok {
			t.Fatalf("once=%v: Entry changed the state", once)
		}
		p.Observe(1, 700, t0)
		if _, ok := p.Entry(1, watch.Warning, t0); ok {
			t.Fatalf("once=%v: warning entered again while at warning", once)
		}
		if th, ok := p.Entry(1, watch.Critical, t0); th != 900 || !ok {
			t.Fatalf("once=%v: critical entry %d %v", once, th, ok)
		}
		p.Observe(1, 100, t0.Add(time.Second)) // back to ok
		_, ok := p.Entry(1, watch.Warning, t0.Add(2*time.Second))
		d := p.Observe(1, 700, t0.Add(2*time.Second))
		if ok != (len(d.Signal) == 1) {
			t.Fatalf("once=%v: Entry said %v, Observe signalled %v", once, ok, d.Signal)
		}
		if want := once; ok != want {
			t.Fatalf("once=%v: re-entry within the cooldown signals %v", once, ok)
		}
	}
	if _, ok := New(time.Minute).Entry(9, watch.Warning, t0); ok {
		t.Fatal("unknown container")
	}
}

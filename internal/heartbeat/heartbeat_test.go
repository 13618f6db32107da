package heartbeat

import (
	"sync"
	"testing"
	"time"
)

func TestHeart(t *testing.T) {
	var now time.Duration
	var mu sync.Mutex
	clock := func() time.Duration { mu.Lock(); defer mu.Unlock(); return now }
	step := func(d time.Duration) { mu.Lock(); now += d; mu.Unlock() }

	h := New(clock)
	if got := h.SinceProgress(); got != 0 {
		t.Fatalf("SinceProgress after New = %v, want 0", got)
	}
	step(3 * time.Second)
	if got := h.SinceProgress(); got != 3*time.Second {
		t.Fatalf("SinceProgress = %v, want 3s", got)
	}
	h.Beat()
	step(time.Second)
	if got := h.SinceProgress(); got != time.Second {
		t.Fatalf("SinceProgress after Beat = %v, want 1s", got)
	}
	var nilHeart *Heart
	nilHeart.Beat() // must not panic

	var zero Heart // usable: counts from process start
	if d := zero.SinceProgress(); d <= 0 || d > time.Hour {
		t.Errorf("zero Heart SinceProgress = %v, want the time since process start", d)
	}
	zero.Beat()
	if d := zero.SinceProgress(); d > time.Second {
		t.Errorf("zero Heart SinceProgress after Beat = %v", d)
	}
}

func TestConcurrentBeats(t *testing.T) {
	h := New(nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				h.Beat()
				_ = h.SinceProgress()
			}
		}()
	}
	wg.Wait()
	if d := h.SinceProgress(); d < 0 || d > time.Minute {
		t.Fatalf("SinceProgress = %v", d)
	}
}

func BenchmarkBeat(b *testing.B) {
	h := New(nil)
	for b.Loop() {
		h.Beat()
	}
}

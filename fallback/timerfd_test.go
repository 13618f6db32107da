package fallback

import (
	"testing"
	"time"
)

func TestFDTimer(t *testing.T) {
	tm := newFDTimer(20 * time.Millisecond)
	if tm == nil {
		t.Fatal("no timerfd")
	}
	defer tm.Stop()
	start := time.Now()
	select {
	case <-tm.C():
		if d := time.Since(start); d < 20*time.Millisecond {
			t.Fatalf("fired after %v, armed for 20ms", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not fire")
	}
	// Re-armed far ahead, then sooner: the sooner one counts.
	tm.Reset(time.Hour)
	tm.Reset(10 * time.Millisecond)
	select {
	case <-tm.C():
	case <-time.After(5 * time.Second):
		t.Fatal("Reset to 10ms: did not fire")
	}
	// Armed for an hour: nothing comes.
	tm.Reset(time.Hour)
	select {
	case <-tm.C():
		t.Fatal("fired while armed for an hour")
	case <-time.After(50 * time.Millisecond):
	}
	// Zero and negative durations fire at once (zero would disarm a timerfd).
	for _, d := range []time.Duration{0, -time.Second} {
		tm.Reset(d)
		select {
		case <-tm.C():
		case <-time.After(5 * time.Second):
			t.Fatalf("Reset(%v): did not fire", d)
		}
	}
}

// TestFDTimerWaitKick: Wait returns when the timer fires, and at once for
// a Kick made before or during it.
func TestFDTimerWaitKick(t *testing.T) {
	tm := newFDTimer(time.Hour)
	if tm == nil {
		t.Fatal("no timerfd")
	}
	defer tm.Stop()
	tm.Reset(20 * time.Millisecond)
	start := time.Now()
	if err := tm.Wait(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("Wait returned after %v, armed for 20ms", d)
	}
	tm.Reset(time.Hour)
	tm.Kick() // before the wait
	if err := tm.Wait(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tm.Wait() }()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("Wait returned with no firing and no kick")
	default:
	}
	tm.Kick() // during the wait
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Kick did not end the wait")
	}
}

package agent

import "time"

// probeWait is how long the agent's loop waits for a read of a process's
// memory: /proc/<pid>/environ (declarations) and what runtimes.Identify
// reads (maps, command line). Such reads take the process's mmap lock, and
// a process in memory reclaim (near its limit, the very moment oomhero
// acts) can keep it for seconds, until the OOM killer strikes. Past
// probeWait the loop goes on, and the result is applied when it comes.
const probeWait = 100 * time.Millisecond

// bounded runs read in a goroutine and waits up to probeWait for it. When
// it finishes in time, apply runs at once and bounded returns true;
// otherwise apply runs later from the agent's loop (never after Run
// returned) and bounded returns false.
func bounded[T any](a *Agent, read func() T, apply func(T)) bool {
	ch := make(chan T, 1)
	go func() { ch <- read() }()
	timer := time.NewTimer(probeWait)
	defer timer.Stop()
	select {
	case v := <-ch:
		apply(v)
		return true
	case <-timer.C:
	}
	done := a.done
	go func() {
		v := <-ch
		select {
		case a.late <- func() { apply(v) }:
		case <-done:
		}
	}()
	return false
}

package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/express"
	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// expressSource is a fake source that sends what the agent armed, as the
// real ones do, before it hands a reading over.
type expressSource struct {
	*fakeSource
	plans *express.Plans
}

func (s *expressSource) SetExpress(p *express.Plans) { s.plans = p }

func (s *expressSource) Run(ctx context.Context, out chan<- watch.Reading) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-s.feed:
			s.plans.Fire(&r)
			out <- r
		}
	}
}

// checkedSender is a fakeSender that also takes checked sends.
type checkedSender struct{ *fakeSender }

func (c checkedSender) SendExpected(pid int, want signals.Expect, sig unix.Signal) error {
	return c.Send(pid, want.Start, sig)
}

func startExpress(t *testing.T, args []string, groups map[string]*discover.Group, res fakeResolver, proc string) (*harness, *expressSource) {
	t.Helper()
	var src *expressSource
	h := startAgent(t, args, proc, fakeScanner{groups}, res, func(a *Agent) {
		src = &expressSource{fakeSource: a.Source.(*fakeSource)}
		a.Source = src
		a.Sender = checkedSender{a.Sender.(*fakeSender)}
		fakeRuntimes(a)
	})
	<-h.src.updated
	return h, src
}

// waitArmed waits until container id's levels armed are want (warning,
// critical).
func waitArmed(t *testing.T, src *expressSource, id uint64, want [2]bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if src.plans != nil {
			l := src.plans.Armed(id)
			if (l[watch.Warning] != nil) == want[0] && (l[watch.Critical] != nil) == want[1] {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %d: armed (warning, critical) never became %v", id, want)
		}
	}
}

// TestExpressSendsAheadOnce: the levels a container would enter are armed
// for the processes its book names; the source sends them with the reading
// that crosses, and the agent books them as its own: one signal per level
// and process, logged with express=true, the cooldown kept.
func TestExpressSendsAheadOnce(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	status(t, proc, 13, usr) // no runtime row: safe
	status(t, proc, 14, 0)   // no handler: never a target
	groups := map[string]*discover.Group{
		"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 13, Comm: "app", Start: 5}, {PID: 14, PPID: 13, Comm: "child", Start: 6}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1}}}
	h, src := startExpress(t, []string{"--warning", "60", "--critical", "90", "--cooldown", "1h"}, groups, res, proc)
	waitArmed(t, src, 1, [2]bool{true, true})

	h.feed(1, 700) // warning: sent by the source
	h.waitLog("level changed")
	if got := fmt.Sprint(h.snd.take()); got != fmt.Sprint([]sent{{13, unix.SIGUSR1}}) {
		t.Fatalf("warning sends %s, want one SIGUSR1 to 13", got)
	}
	if n := strings.Count(h.logs.String(), `msg="signal sent"`); n != 1 || !strings.Contains(h.logs.String(), "express=true") {
		t.Fatalf("%d signal lines, want 1 with express=true:\n%s", n, h.logs.String())
	}
	waitArmed(t, src, 1, [2]bool{false, true}) // warning cools down; critical armed

	h.feed(1, 950)
	h.waitLog("to=critical")
	if got := fmt.Sprint(h.snd.take()); got != fmt.Sprint([]sent{{13, unix.SIGUSR2}}) {
		t.Fatalf("critical sends %s, want one SIGUSR2 to 13", got)
	}
	h.feed(1, 960) // at critical, cooling down: nothing
	h.feed(1, 700)
	h.feed(1, 100) // back to ok: nothing armed while every level cools down
	time.Sleep(100 * time.Millisecond)
	if got := h.snd.take(); len(got) != 0 {
		t.Fatalf("sends during the cooldown: %v", got)
	}
	waitArmed(t, src, 1, [2]bool{false, false})
}

// TestExpressNeverArmsWhatVetRefuses: a runtime the signal would harm
// (node's SIGUSR1 inspector) is not armed; the agent refuses it as before.
// A dry run arms nothing.
func TestExpressNeverArmsWhatVetRefuses(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	status(t, proc, 11, usr) // node: SIGUSR1 harmful, SIGUSR2 fine
	groups := map[string]*discover.Group{
		"/n": {Path: "/n", Version: watch.V1, Procs: []discover.Process{{PID: 11, Comm: "node", Start: 5}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{"/n": {ID: 2, Path: "/n", Limit: 1000, Version: watch.V1}}}
	h, src := startExpress(t, []string{"--warning", "60", "--critical", "90", "--log-level", "debug"}, groups, res, proc)
	waitArmed(t, src, 2, [2]bool{false, true})
	// The plan in words, at debug level: why the warning is not armed.
	h.waitLog(`msg="express plan" container=node armed="warning: none of 1 processes (1 ready); critical: pid 11"`)
	h.feed(2, 700)
	h.waitLog("signal refused")
	if got := h.snd.take(); len(got) != 0 {
		t.Fatalf("node got %v", got)
	}

	dry, dsrc := startExpress(t, []string{"--warning", "60", "--critical", "90", "--dry-run"}, groups, res, proc)
	dry.feed(2, 950)
	dry.waitLog("signal not sent (dry run)")
	if l := dsrc.plans.Armed(2); l[watch.Warning] != nil || l[watch.Critical] != nil {
		t.Fatalf("armed in a dry run: %v", l)
	}
	if got := dry.snd.take(); len(got) != 0 {
		t.Fatalf("dry run sent %v", got)
	}
}

// deniedSender refuses every signal as the kernel does without the
// privilege, and counts the tries.
type deniedSender struct{ *fakeSender }

func (d deniedSender) SendExpected(pid int, want signals.Expect, sig unix.Signal) error {
	d.Send(pid, want.Start, sig)
	return fmt.Errorf("pidfd_send_signal %d: %w", pid, unix.EPERM)
}

// TestExpressFailureNotRetried: a send the kernel refuses (no privilege)
// is reported once; the agent does not try it again for the same reading.
func TestExpressFailureNotRetried(t *testing.T) {
	proc := t.TempDir()
	usr := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGUSR2-1))
	status(t, proc, 13, usr)
	groups := map[string]*discover.Group{
		"/a": {Path: "/a", Version: watch.V1, Procs: []discover.Process{{PID: 13, Comm: "app", Start: 5}}},
	}
	res := fakeResolver{byPath: map[string]watch.Container{"/a": {ID: 1, Path: "/a", Limit: 1000, Version: watch.V1}}}
	var src *expressSource
	h := startAgent(t, []string{"--warning", "60", "--critical", "90"}, proc, fakeScanner{groups}, res, func(a *Agent) {
		src = &expressSource{fakeSource: a.Source.(*fakeSource)}
		a.Source = src
		a.Sender = deniedSender{a.Sender.(*fakeSender)}
		fakeRuntimes(a)
	})
	<-h.src.updated
	waitArmed(t, src, 1, [2]bool{true, true})
	h.feed(1, 700)
	h.waitLog("level changed")
	if got := h.snd.take(); len(got) != 1 {
		t.Fatalf("%d tries, want 1: %v", len(got), got)
	}
	if n := strings.Count(h.logs.String(), `msg="signal failed"`); n != 1 || !strings.Contains(h.logs.String(), "operation not permitted") {
		t.Fatalf("%d failure lines, want 1 naming the refusal:\n%s", n, h.logs.String())
	}
}

// Package agent ties oomhero together: it discovers containers, feeds their
// readings from a Source through the policy, and acts on decisions (signals,
// HTTP notifications, logs, OOM-kill reports, hooks for metrics and events).
//
// The flow, one file each: rescan.go discovers and resolves containers and
// reads what each declares in its environment (declared.go, package
// declare); decide.go turns readings and memory pressure into levels and
// decisions; deliver.go chooses the target processes, checks each against
// the runtime safety table (package runtimes: a runtime's own handler is not
// consent), sends the signals and queues the HTTP notifications (package
// notify); handlers.go keeps each container's book of its processes'
// handler masks and runtimes ahead of the signal; report.go writes the
// OOM-kill report and feeds the observers; top.go names a container's
// largest processes.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/cgroup"
	"github.com/oomhero/oomhero/internal/config"
	"github.com/oomhero/oomhero/internal/discover"
	"github.com/oomhero/oomhero/internal/express"
	"github.com/oomhero/oomhero/internal/notify"
	"github.com/oomhero/oomhero/internal/oomwatch"
	"github.com/oomhero/oomhero/internal/policy"
	"github.com/oomhero/oomhero/internal/runtimes"
	"github.com/oomhero/oomhero/internal/signals"
	"github.com/oomhero/oomhero/internal/watch"
)

// Scanner lists process groups (discover.Scanner).
type Scanner interface {
	Scan() (map[string]*discover.Group, error)
}

// Resolver resolves a group to a container (discover.Resolver).
type Resolver interface {
	Resolve(g *discover.Group) (watch.Container, error)
}

// Agent is oomhero's main loop.
type Agent struct {
	Config   *config.Config
	Log      *slog.Logger
	Scanner  Scanner
	Resolver Resolver
	Source   watch.Source
	Sender   signals.Sender
	// OOM, when not nil, reports OOM kills.
	OOM      *oomwatch.Watcher
	Observer Observer
	// Notifier posts HTTP notifications (a loopback-only one with
	// User-Agent "oomhero" is made when nil).
	Notifier *notify.Notifier
	// Self is oomhero's PID in Config.Proc: never signalled.
	Self int
	// Identifier names containers by their cgroup path in node mode
	// (Config.Node(); node.go): a group it does not know is never watched.
	// Not used by the sidecar.
	Identifier Identifier
	// PodName and PodNamespace are the sidecar's own pod (POD_NAME,
	// POD_NAMESPACE; "" when unset): the pod of every container it watches.
	PodName, PodNamespace string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// OOMCount reads a cgroup's OOM-kill counter now (OOM.Count when nil;
	// tests fake it).
	OOMCount func(id uint64) (uint64, error)
	// Identify and EffectOf name a process's runtime and what a signal does
	// to it (runtimes.Identify and runtimes.EffectOf when nil; tests fake them).
	Identify func(proc string, pid int) runtimes.Runtime
	EffectOf func(rt runtimes.Runtime, sig unix.Signal) runtimes.Effect

	policy     *policy.Policy
	byPath     map[string]*tracked
	byID       map[uint64]*tracked
	notWatched map[string]string                                              // path -> reason said
	names      nameBook                                                       // names each cgroup path used (names.go)
	late       chan func()                                                    // results of slow reads, applied in the loop (bounded.go)
	readDecl   func(proc string, self int, order []discover.Process) declRead // readDeclaration; tests replace it
	openMemory func(watch.Container) (memReader, error)                       // the rereads of a reading in flux (flux.go); nil: cgroup.NewReader
	recheckFor time.Duration                                                  // how long a reading may stay in flux (flux.go); 0: recheckWindow
	gates      map[string]*gate                                               // opt-in per cgroup path (node.go)
	ignored    map[string]bool                                                // node mode: paths not of a kubelet layout
	done       chan struct{}                                                  // closed when Run returns
	express    *express.Plans                                                 // signals the source sends ahead (express.go); nil: none
}

type tracked struct {
	watch.Container
	group    *discover.Group
	last     watch.Reading
	hasLast  bool
	sent     [3]time.Time // last signal actually delivered, per level
	noTarget [3]bool      // "no process can take the signal" said this episode
	readErr  bool
	recheck  bool                   // a reading in flux is being read again (flux.go)
	psi      *cgroup.PressureReader // nil where the cgroup has no PSI
	pressure cgroup.Pressure
	hot      bool      // told the OOM watcher the cgroup is near its limit
	oomAt    time.Time // last OOM kill seen
	resolved time.Time // last full resolve (resolveAge)
	// The container's own limit file as last read (limitAge); 0: not read
	// since the last resolve.
	ownLimit   uint64
	limitCheck time.Time
	limitFile  *cgroup.LimitFile // the own limit file, kept open between checks
	comm       string            // main process's command at the last resolve
	main       discover.Process  // main process at the last resolve (mainOf)
	cfg        *config.Config    // the sidecar's, with the container's declaration applied
	ds         declState
	ep         episode     // said and learned this episode
	top        topSnapshot // processes' memory at the last level change
	oomSeen    uint64      // the OOM-kill counter as last reported (or when watched)

	excluded  bool              // by --include-container/--exclude-container (select.go)
	ann       map[string]string // the pod's annotations (node mode: node.go)
	drySent   [3]time.Time      // last signal logged instead of sent (dry run), per level
	ahead     booked            // what the source sent for the reading being judged (express.go)
	armedSaid string            // the express plan last logged (express.go)
}

// resolveAge is how long a known container's cgroup (same path, same main
// command) is reused before it is resolved again (its directory, id and
// effective limit: cgroup.procs and every ancestor's limit read through
// safefs). Between, its own limit file (kept open: cgroup.LimitFile) is
// reread every limitAge, and a change (an in-place resize) resolves it at
// once; what only a resolve sees is a change of an ancestor's limit alone
// (a pod-level limit over containers without their own). On a node of 100
// containers, resolving each every 10 s was a third of the idle agent
// (perf, 30 Nov); every minute, the resolves were still most of its read
// system calls (about 30 a second of 35) and a third of its idle CPU (node
// bench, 1 Dec: 0.21 % of a core in the first idle window, before any
// resolve was due, 0.30-0.34 % after), hence five minutes.
const (
	resolveAge = 5 * time.Minute
	limitAge   = 10 * time.Second
)

// eventGap is the shortest time between two scans that process events
// (BPF: fork, exec, exit) ask for: in a pod, and on a node, where every
// process start of every container (probes, shells, cron) asks for one
// and a full scan lists thousands of processes.
const (
	eventGap     = 200 * time.Millisecond
	nodeEventGap = time.Second
)

// afterOOM is how long signals to a container pause after an OOM kill: its
// processes are being killed and the runtime is tearing it down.
const afterOOM = time.Second

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Run runs until ctx ends or the source fails.
func (a *Agent) Run(ctx context.Context) error {
	if a.Observer == nil {
		a.Observer = NopObserver{}
	}
	a.policy = policy.New(a.Config.Cooldown)
	if a.Config.DryRun {
		a.Log.Warn("DRY RUN: oomhero sends no signal and no notification; each one it would send is logged (\"signal not sent (dry run)\") and counted as result dry_run",
			"dry_run", true, "opt_in", "a container that declares OOMHERO_DRY_RUN=false gets its signals")
	}
	if u := a.Config.NotifyURL; u != "" {
		if err := notify.Check(u, a.Config.NotifyRemote); err != nil {
			a.Log.Warn("--notify-url will be refused", "url", u, "error", err)
		}
	}
	for _, al := range a.Config.Allow {
		if !slices.Contains(runtimes.Names(), al.Runtime) {
			a.Log.Warn("--allow names a runtime the safety table does not know: it has no effect",
				"allow", al.String(), "known", strings.Join(runtimes.Names(), ","))
		}
	}
	if a.Notifier == nil {
		n := notify.New(notify.Options{Remote: a.Config.NotifyRemote})
		a.Notifier = n
		defer func() { n.Close(); a.Notifier = nil }()
	}
	a.byPath, a.byID, a.notWatched = map[string]*tracked{}, map[uint64]*tracked{}, map[string]string{}
	if a.Config.Node() && a.Identifier == nil {
		return fmt.Errorf("node mode needs an Identifier (cgroup paths to pods)")
	}

	a.late, a.done = make(chan func(), 16), make(chan struct{})
	defer close(a.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readings := make(chan watch.Reading, 64)
	srcDone := make(chan error, 1)
	a.setupExpress()
	go func() { srcDone <- a.Source.Run(ctx, readings) }()
	kills := make(chan oomwatch.Kill, 8)
	oomDone := make(chan error, 1)
	if a.OOM != nil {
		go func() { oomDone <- a.OOM.Run(ctx, kills) }()
	}
	wait := func() {
		cancel()
		<-srcDone
		if a.OOM != nil {
			<-oomDone
		}
	}

	if err := a.rescan(); err != nil {
		wait()
		return err
	}
	// A source that reports process starts and exits (BPF) drives the
	// rescans; the periodic one is then a slow safety net, kept well under
	// the liveness limit that counts from the last scan.
	var procEvents <-chan struct{}
	every := a.Config.Rescan
	if pe, ok := a.Source.(interface{ ProcessEvents() <-chan struct{} }); ok {
		if procEvents = pe.ProcessEvents(); procEvents != nil {
			every = max(a.Config.Rescan, min(3*a.Config.Rescan, 5*time.Second))
		}
	}
	rescan := time.NewTicker(every)
	defer rescan.Stop()
	lastScan := time.Now()
	var pending <-chan time.Time // a scan owed to process events (eventGap)
	// Where the source names the changed processes (BPF), the scanner
	// rereads those only (discover/follow.go); else an event makes the
	// next scan a full one: an exit or an exec does not show in the
	// scanner's quiet-scan mark (discover/quiet.go).
	changes, _ := a.Source.(interface {
		ProcessChanges(buf []int) ([]int, bool)
	})
	follower, _ := a.Scanner.(interface {
		Changed(pids []int, complete bool)
	})
	if procEvents == nil || follower == nil {
		changes = nil
	}
	var changedBuf []int
	scan := func() {
		pending, lastScan = nil, time.Now()
		if changes != nil {
			var complete bool
			changedBuf, complete = changes.ProcessChanges(changedBuf)
			follower.Changed(changedBuf, complete)
		}
		if err := a.rescan(); err != nil {
			a.Log.Error("rescan failed", "error", err)
		}
	}
	cooldown := time.NewTimer(time.Hour)
	defer cooldown.Stop()
	for {
		if next, ok := a.policy.NextDue(); ok {
			cooldown.Reset(max(time.Until(next), 0))
		} else {
			cooldown.Reset(time.Hour)
		}
		select {
		case <-ctx.Done():
			wait()
			return nil
		case err := <-srcDone:
			cancel()
			if a.OOM != nil {
				<-oomDone
			}
			if err == nil {
				return nil
			}
			return fmt.Errorf("source %s: %w", a.Source.Name(), err)
		case err := <-oomDone:
			a.Log.Error("OOM-kill watcher stopped", "error", err)
			a.OOM = nil
		case <-rescan.C:
			scan()
		case <-procEvents:
			// On a busy node processes start and end many times a second:
			// scans follow them at most once an eventGap, the events in
			// between taken by one scan at its end.
			if inv, ok := a.Scanner.(interface{ Invalidate() }); ok && changes == nil {
				inv.Invalidate()
			}
			gap := eventGap
			if a.Config.Node() {
				gap = nodeEventGap
			}
			if wait := gap - time.Since(lastScan); wait > 0 {
				if pending == nil {
					pending = time.After(wait)
				}
				continue
			}
			scan()
		case <-pending:
			scan()
		case rd := <-readings:
			a.reading(rd)
		case k := <-kills:
			a.kill(k)
		case r := <-a.Notifier.Results():
			a.notified(r)
		case f := <-a.late:
			f()
		case <-cooldown.C:
			for _, d := range a.policy.Tick(a.now()) {
				if t := a.byID[d.ID]; t != nil {
					for _, l := range d.Signal {
						a.deliver(t, l, d.From, t.last)
					}
				}
			}
		}
	}
}

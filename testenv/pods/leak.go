package pods

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/oomhero/oomhero/testenv/app/applog"
)

// Watched is what oomhero's "container watched" line says of a container.
type Watched struct {
	Warning, Critical, Limit uint64 // bytes
	Entry                    Entry
}

// FindWatched returns the "container watched" entry that mentions id (a
// container id, part of the cgroup path), or false.
func FindWatched(es []Entry, id string) (Watched, bool, error) {
	ws := Select(es, "container watched", id)
	if len(ws) == 0 {
		return Watched{}, false, nil
	}
	e := ws[len(ws)-1]
	w := Watched{Entry: e}
	var err error
	if w.Warning, err = e.Uint("warning_bytes"); err != nil {
		return w, true, err
	}
	if w.Critical, err = e.Uint("critical_bytes"); err != nil {
		return w, true, err
	}
	if w.Limit, err = e.Uint("limit_bytes"); err != nil {
		return w, true, err
	}
	return w, true, nil
}

// Reaction is the app's view of one threshold: when its working set crossed
// it (between LastBelow and CrossAt, the samples either side) and when the
// signal arrived. Times are CLOCK_MONOTONIC.
type Reaction struct {
	Signal    string
	Threshold uint64
	Crossed   bool
	LastBelow time.Duration
	CrossAt   time.Duration
	// AheadBelow is the last sample below the threshold less ChargeAhead:
	// a signal before it is early whatever the kernel's counter said.
	AheadBelow time.Duration
	Received   bool
	At         time.Duration // first receipt
	Count      int           // receipts of Signal
}

// Latency is the time from the first sample at or above the threshold to
// the first receipt. It can be slightly negative (less than one leak step)
// when oomhero read the counter between the step and the app's own sample.
func (r Reaction) Latency() time.Duration { return r.At - r.CrossAt }

// Early tells whether the signal arrived before the last sample below the
// threshold less ChargeAhead: a signal before the crossing.
func (r Reaction) Early() bool { return r.Received && r.Crossed && r.At < r.AheadBelow }

// ChargeAhead is how far the kernel's memory counter of a cgroup can be
// above what the app's sample finds a moment later: each CPU charges the
// counter 64 pages at a time (MEMCG_CHARGE_BATCH) and gives back what it
// has not used when another cgroup charges on that CPU. The BPF program
// judges (and, with kernel sends, signals on) the counter as it is on the
// charge.
func ChargeAhead() uint64 { return 64 * uint64(os.Getpagesize()) * uint64(runtime.NumCPU()) }

// CheckReactions returns what is wrong with a warning and a critical
// reaction: a threshold never crossed (the run proves nothing), a signal
// missing, early, later than maxLatency after its crossing, or the warning
// after the critical signal. None means both are right.
func CheckReactions(warn, crit Reaction, maxLatency time.Duration) []string {
	var out []string
	for _, r := range []Reaction{warn, crit} {
		switch {
		case !r.Crossed:
			out = append(out, fmt.Sprintf("%s: the app never crossed %d bytes: the test proves nothing", r.Signal, r.Threshold))
		case !r.Received:
			out = append(out, fmt.Sprintf("%s never arrived", r.Signal))
		case r.Early():
			out = append(out, fmt.Sprintf("%s arrived %v before the last sample below the threshold", r.Signal, r.LastBelow-r.At))
		case r.Latency() > maxLatency:
			out = append(out, fmt.Sprintf("%s arrived %v after the crossing, want at most %v", r.Signal, r.Latency(), maxLatency))
		}
	}
	if warn.Received && crit.Received && warn.At > crit.At {
		out = append(out, fmt.Sprintf("warning (%v) after critical (%v)", warn.At, crit.At))
	}
	return out
}

func (r Reaction) String() string {
	switch {
	case !r.Crossed && !r.Received:
		return fmt.Sprintf("%s: threshold %d not crossed, no signal", r.Signal, r.Threshold)
	case !r.Crossed:
		return fmt.Sprintf("%s: threshold %d not crossed but signal at %v", r.Signal, r.Threshold, r.At)
	case !r.Received:
		return fmt.Sprintf("%s: crossed %d at %v, no signal", r.Signal, r.Threshold, r.CrossAt)
	}
	return fmt.Sprintf("%s: crossed %d at %v (last below %v), received at %v: latency %v (at most %v)",
		r.Signal, r.Threshold, r.CrossAt, r.LastBelow, r.At, r.Latency(), r.At-r.LastBelow)
}

// React computes the reaction to threshold (bytes of working set) signalled
// with sig (e.g. "SIGUSR1") from the app's log.
func React(lg applog.Log, threshold uint64, sig string) Reaction {
	r := Reaction{Signal: sig, Threshold: threshold}
	ahead := ChargeAhead()
	for i, s := range lg.Samples {
		if s.WorkingSet >= threshold {
			r.Crossed, r.CrossAt = true, s.Mono
			r.LastBelow, r.AheadBelow = s.Mono, s.Mono
			if i > 0 {
				r.LastBelow, r.AheadBelow = lg.Samples[i-1].Mono, lg.Samples[0].Mono
			}
			for j := i - 1; j >= 0; j-- {
				if lg.Samples[j].WorkingSet+ahead < threshold {
					r.AheadBelow = lg.Samples[j].Mono
					break
				}
			}
			break
		}
	}
	rs := lg.SignalsNamed(sig)
	r.Count = len(rs)
	if len(rs) > 0 {
		r.Received, r.At = true, rs[0].Mono
	}
	return r
}

// LeakSpec is one leak run: a test app leaking at Rate MiB/s into Memory,
// next to oomhero.
type LeakSpec struct {
	Name     string // pod name suffix
	Rate     float64
	Chunk    int     // KiB, 0: the app's default
	Memory   string  // limit, e.g. "256Mi"
	Cap      float64 // cap-percent of the limit (0: leak until killed)
	Env      []EnvVar
	Source   string
	Timeout  time.Duration // whole run, default 2 minutes
	KmsgPath string        // default /dev/kmsg
}

// LeakResult is what a leak run produced.
type LeakResult struct {
	Pod        string
	AppLog     string
	OomheroLog string
	App        applog.Log
	Oomhero    []Entry
	AppState   State  // after the run (exited with 137 when OOM-killed)
	States     string // both containers' states, for diagnostics
	AppPid     int    // host pid of the app
	AppID      string
	Watched    Watched
	Warn, Crit Reaction
	Kills      []KernelOOMKill
	KmsgErr    error
}

// RunLeak plays a pod with oomhero and a test app that waits for SIGWINCH,
// waits until oomhero watches the app's container, starts the leak, and
// waits until the app got its critical signal (capped runs, plus a second)
// or exited (uncapped runs). It always tears the pod down; the result holds
// both logs, also on error.
func (l *Lab) RunLeak(ctx context.Context, s LeakSpec) (res *LeakResult, err error) {
	if s.Timeout == 0 {
		s.Timeout = 2 * time.Minute
	}
	if s.KmsgPath == "" {
		s.KmsgPath = "/dev/kmsg"
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	args := []string{"-mode", "leak", "-rate", strconv.FormatFloat(s.Rate, 'f', -1, 64), "-start-signal", "SIGWINCH"}
	if s.Chunk > 0 {
		args = append(args, "-chunk", strconv.Itoa(s.Chunk))
	}
	if s.Cap > 0 {
		args = append(args, "-cap-percent", strconv.FormatFloat(s.Cap, 'f', -1, 64))
	}
	pod := Pod{Name: PodName(s.Name), Containers: []Container{
		{Name: "app", Image: AppImage, Args: args, Memory: s.Memory},
		OomheroContainer(OomheroImage, s.Source, s.Env...),
	}}
	res = &LeakResult{Pod: pod.Name}
	r, err := l.Play(ctx, pod)
	if err != nil {
		return res, err
	}
	defer func() {
		// Collect whatever there is, then tear down.
		lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer lcancel()
		if out, lerr := r.Logs(lctx, "app"); lerr == nil {
			res.AppLog = out
		}
		if out, lerr := r.Logs(lctx, "oomhero"); lerr == nil {
			res.OomheroLog = out
		}
		if st, serr := r.State(lctx, "app"); serr == nil {
			res.AppState = st
		}
		res.States = r.States(lctx)
		res.Oomhero = ParseOomheroLog(res.OomheroLog)
		app, perr := applog.ParseLog(strings.NewReader(res.AppLog))
		res.App = app
		if perr != nil && err == nil {
			err = fmt.Errorf("parse app log: %w", perr)
		}
		if w, ok, werr := FindWatched(res.Oomhero, res.AppID); ok && werr == nil {
			res.Watched = w
			res.Warn = React(app, w.Warning, signalOr(s.Env, "WARNING_SIGNAL", "SIGUSR1"))
			res.Crit = React(app, w.Critical, signalOr(s.Env, "CRITICAL_SIGNAL", "SIGUSR2"))
		} else if werr != nil && err == nil {
			err = werr
		}
		if res.AppPid > 0 {
			res.Kills, res.KmsgErr = KernelOOMKills(s.KmsgPath, res.AppPid)
		}
		if derr := r.Down(); derr != nil && err == nil {
			err = derr
		}
	}()

	st, err := r.State(ctx, "app")
	if err != nil {
		return res, err
	}
	res.AppID, res.AppPid = st.ID, st.Pid
	// Wait until oomhero watches the app (and the app waits for its signal).
	if _, err := r.WaitLog(ctx, "oomhero", func(log string) bool {
		_, ok, _ := FindWatched(ParseOomheroLog(log), st.ID)
		return ok
	}); err != nil {
		return res, fmt.Errorf("oomhero never logged \"container watched\" for the app (%s): %w", st.ID[:12], err)
	}
	if _, err := r.WaitLog(ctx, "app", func(log string) bool { return strings.Contains(log, "event=waiting") }); err != nil {
		return res, fmt.Errorf("app not waiting for its start signal: %w", err)
	}
	if _, err := l.Podman(ctx, "kill", "--signal", "SIGWINCH", r.ContainerName("app")); err != nil {
		return res, fmt.Errorf("start the leak: %w", err)
	}
	crit := signalOr(s.Env, "CRITICAL_SIGNAL", "SIGUSR2")
	if s.Cap > 0 {
		// Until the critical signal, or 3 s after the cap.
		var capSeen time.Time
		_, err = r.WaitLogFile(ctx, "app", func(log string) bool {
			if strings.Contains(log, "signal="+crit) {
				return true
			}
			if capSeen.IsZero() && strings.Contains(log, "event=cap") {
				capSeen = time.Now()
			}
			return !capSeen.IsZero() && time.Since(capSeen) > 3*time.Second
		})
		if err != nil {
			return res, err
		}
		time.Sleep(time.Second) // let later signals (cooldown repeats) arrive
		return res, nil
	}
	if _, err := r.WaitPidExit(ctx, "app", st.Pid); err != nil {
		return res, err
	}
	return res, nil
}

// signalOr returns the value of env var name in env, with SIG prefix and
// upper case, or def.
func signalOr(env []EnvVar, name, def string) string {
	for _, e := range env {
		if e.Name == name {
			v := strings.ToUpper(strings.TrimSpace(e.Value))
			if !strings.HasPrefix(v, "SIG") {
				v = "SIG" + v
			}
			return v
		}
	}
	return def
}

package discover

import (
	"maps"
	"slices"
	"time"
)

// Following: where the kernel reports every fork, exec and exit of the
// namespace with the PID (the BPF source's process events, loader
// ProcessChanges), a scan need not list the procfs directory at all: it
// rereads the stat and cgroup files of the changed PIDs and rebuilds only
// the groups they were or are in. Idle, that costs nothing however many
// processes there are; a busy node pays per process change, not per
// process. What the events cannot show is a process moved to another
// cgroup without an exec (rare: kubelet containers do not trade
// processes): a full scan still runs at least every followFull, and it
// rereads the known processes followSlower times more slowly than
// revalidateEvery. When the kernel could not record a change (its map was
// full), the caller says so (complete false) and the next scan is full.

// followFull is the longest time between two full scans while following.
const followFull = time.Minute

// followSlower is how many times longer the revalidation of known
// processes takes while following (revalidateEvery seconds otherwise):
// execs come as events, so it is only for cgroup moves.
const followSlower = 5

// Changed tells the Scanner which PIDs forked, exec'ed or exited since the
// PIDs it was last told: from then on, scans reread only those (with a
// full scan at least every followFull). complete false (some changes were
// not recorded) makes the next scan full.
func (s *Scanner) Changed(pids []int, complete bool) {
	if !s.following {
		s.following, s.slotted = true, false
	}
	if !complete {
		s.dirty = true
	}
	for _, p := range pids {
		s.changed[p] = struct{}{}
	}
}

// followOK tells whether this scan may reread only the changed PIDs.
func (s *Scanner) followOK() bool {
	return s.following && !s.dirty && s.last != nil && time.Since(s.lastFull) < followFull
}

// scanChanged rereads the changed PIDs and rebuilds the groups they left
// or joined; every other group is the last scan's.
func (s *Scanner) scanChanged() map[string]*Group {
	s.FollowScans++
	return s.applyChanged()
}

// applyChanged rereads the PIDs in s.changed, rebuilds the groups they
// left or joined (every other group is the last scan's) and empties
// s.changed.
func (s *Scanner) applyChanged() map[string]*Group {
	if len(s.changed) == 0 {
		return maps.Clone(s.last)
	}
	touched := map[string]bool{}
	for pid := range s.changed {
		if pid == 1 || pid == s.self || pid <= 0 {
			continue
		}
		old, had := s.known[pid]
		if had {
			touched[old.path] = true
		}
		if e, read := s.reread(pid, old, had); read {
			touched[e.path] = true
		}
	}
	clear(s.changed)
	delete(touched, s.selfPath)
	groups := maps.Clone(s.last)
	for path := range touched {
		delete(groups, path)
	}
	if len(touched) > 0 {
		for _, e := range s.known {
			if !touched[e.path] {
				continue
			}
			g := groups[e.path]
			if g == nil {
				g = &Group{Path: e.path, Version: e.version}
				groups[e.path] = g
			}
			g.Procs = append(g.Procs, e.Process)
		}
		for path := range touched {
			if g := groups[path]; g != nil {
				slices.SortFunc(g.Procs, func(a, b Process) int { return a.PID - b.PID })
			}
		}
	}
	s.last = groups
	return maps.Clone(groups)
}

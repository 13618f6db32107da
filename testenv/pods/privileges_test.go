package pods

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The privilege matrix (issue 9, item 6): oomhero runs with one candidate
// security context per pod (a row), next to test applications that differ in
// what the kernel compares when oomhero reaches them (the columns):
//
//   - app-root: UID 0 with the runtime's default capabilities;
//   - app-uid1000: UID/GID 1000 (another user than a root oomhero);
//   - app-nocaps: UID 0 with every capability dropped.
//
// Each app leaks into a 64 MiB limit until the kernel OOM-kills it. For each
// cell the test records what oomhero achieved, from its JSON log and the
// app's log: discovery (reads /proc/<pid>/root/sys/fs/cgroup/...), the limit,
// both signals arriving, the OOM-kill report and how it was registered
// (v1 eventfd through cgroup.event_control, or the polled counter), and for
// the BPF rows whether the program loaded. The capability sets the processes
// really held are read from the host's /proc/<pid>/status.
//
// What the kernel checks (torvalds/linux):
//   - /proc/<pid>/root, exe, environ, maps: ptrace_may_access with
//     PTRACE_MODE_READ_FSCREDS (fs/proc/base.c: proc_fd_access_allowed,
//     proc_root_link). kernel/ptrace.c: __ptrace_may_access lets the caller
//     in when its fsuid/fsgid equal the target's uids/gids, else only with
//     CAP_SYS_PTRACE; then security/commoncap.c: cap_ptrace_access_check
//     wants the target's permitted set to be a subset of the caller's
//     effective set (FSCREDS), else CAP_SYS_PTRACE.
//   - kill(2)/pidfd_send_signal(2): kernel/signal.c: kill_ok_by_cred, same
//     real/effective UID as the target's real/saved UID, else CAP_KILL.
//   - BPF: kernel/bpf/syscall.c: bpf_prog_load, tracing programs need
//     CAP_BPF and CAP_PERFMON (bpf_capable, perfmon_capable); map creation
//     needs CAP_BPF.
//   - cgroup v1 cgroup.event_control is world-writable
//     (mm/memcontrol-v1.c: CFTYPE_WORLD_WRITABLE) but a non-privileged
//     container's cgroupfs is mounted read-only (EROFS): oomhero then polls
//     memory.oom_control's oom_kill counter.

// privApp is one column: an application container.
type privApp struct {
	name string
	uid  int  // -1: the image's (root)
	drop bool // drop every capability
}

var (
	appRoot   = privApp{name: "app-root", uid: -1}
	appUID    = privApp{name: "app-uid1000", uid: 1000}
	appNoCaps = privApp{name: "app-nocaps", uid: -1, drop: true}
	allApps   = []privApp{appRoot, appUID, appNoCaps}
)

// privRow is one row: oomhero's security context and source.
type privRow struct {
	name       string
	source     string // cgroupfs or bpf (--source: no fallback)
	privileged bool
	add        []string // added to an empty set (drop ALL), unless privileged
	uid        int      // -1: root
	btf        bool     // /sys/kernel/btf mounted read-only from the host
	unconfined bool     // seccompProfile Unconfined instead of RuntimeDefault
	apps       []privApp
	// want is the expected outcome per app (see cellWant); a row that
	// cannot start (BPF without a capability) wants "no source".
	want map[string]string
}

// The expected outcomes, by the kernel rules above; the test fails when the
// measurement differs, so README's matrix stays what this host measures.
const (
	wantAll      = "all"       // watched, limit, both signals, OOM kill reported
	wantNoSee    = "no-see"    // not watched: /proc/<pid>/root refused
	wantNoSignal = "no-signal" // watched and reported, signals refused (EPERM)
	wantNoSource = "no-source" // oomhero exits: BPF cannot load
)

var privRows = []privRow{
	{name: "privileged", source: "cgroupfs", privileged: true, uid: -1, apps: allApps,
		want: map[string]string{"app-root": wantAll, "app-uid1000": wantAll, "app-nocaps": wantAll}},
	{name: "ptrace-kill", source: "cgroupfs", add: []string{"SYS_PTRACE", "KILL"}, uid: -1, apps: allApps,
		want: map[string]string{"app-root": wantAll, "app-uid1000": wantAll, "app-nocaps": wantAll}},
	{name: "ptrace", source: "cgroupfs", add: []string{"SYS_PTRACE"}, uid: -1, apps: allApps,
		want: map[string]string{"app-root": wantAll, "app-uid1000": wantNoSignal, "app-nocaps": wantAll}},
	{name: "kill", source: "cgroupfs", add: []string{"KILL"}, uid: -1, apps: allApps,
		want: map[string]string{"app-root": wantNoSee, "app-uid1000": wantNoSee, "app-nocaps": wantAll}},
	{name: "none", source: "cgroupfs", uid: -1, apps: allApps,
		want: map[string]string{"app-root": wantNoSee, "app-uid1000": wantNoSee, "app-nocaps": wantAll}},
	{name: "nonroot", source: "cgroupfs", uid: 1000, apps: allApps,
		want: map[string]string{"app-root": wantNoSee, "app-uid1000": wantAll, "app-nocaps": wantNoSee}},
	{name: "bpf-privileged", source: "bpf", privileged: true, uid: -1, apps: []privApp{appRoot},
		want: map[string]string{"app-root": wantAll}},
	// The runtime's default seccomp profile (containers-common's seccomp.json
	// here) allows bpf(2) and perf_event_open(2) only with CAP_SYS_ADMIN.
	{name: "bpf-perfmon-ptrace-kill+btf", source: "bpf", add: []string{"BPF", "PERFMON", "SYS_PTRACE", "KILL"}, uid: -1, btf: true, apps: []privApp{appRoot},
		want: map[string]string{"app-root": wantNoSource}},
	{name: "bpf-perfmon-ptrace-kill+btf+unconfined", source: "bpf", add: []string{"BPF", "PERFMON", "SYS_PTRACE", "KILL"}, uid: -1, btf: true, unconfined: true, apps: []privApp{appRoot, appUID},
		want: map[string]string{"app-root": wantAll, "app-uid1000": wantAll}},
	{name: "bpf-perfmon-ptrace-kill+unconfined", source: "bpf", add: []string{"BPF", "PERFMON", "SYS_PTRACE", "KILL"}, uid: -1, unconfined: true, apps: []privApp{appRoot},
		want: map[string]string{"app-root": wantAll}},
	{name: "perfmon-ptrace-kill+btf+unconfined", source: "bpf", add: []string{"PERFMON", "SYS_PTRACE", "KILL"}, uid: -1, btf: true, unconfined: true, apps: []privApp{appRoot},
		want: map[string]string{"app-root": wantNoSource}},
	{name: "bpf-ptrace-kill+btf+unconfined", source: "bpf", add: []string{"BPF", "SYS_PTRACE", "KILL"}, uid: -1, btf: true, unconfined: true, apps: []privApp{appRoot},
		want: map[string]string{"app-root": wantNoSource}},
}

var procRoot = regexp.MustCompile(`^/proc/(\d+)/root/`)

// judgeCell fills a cell from oomhero's log. The container is known by its
// id (in the cgroup path) in "container watched"; its later lines by
// oomhero's pid of it (the directory /proc/<pid>/root/...) and every name
// oomhero gave it: the name follows the main process, first runc's init
// when oomhero scans before the exec, then the image's program.
func judgeCell(c *privCell, es []Entry, id string) {
	pid := ""
	names := map[string]bool{}
	for _, w := range Select(es, "container watched", id) {
		c.watched = true
		names[w.Str("container")] = true
		if m := procRoot.FindStringSubmatch(w.Str("dir")); m != nil {
			pid = m[1]
		}
		lim, _ := w.Uint("limit_bytes")
		c.limit = c.limit || lim == 64<<20
		c.oomVia = w.Str("oom_kills")
	}
	if nw := Select(es, "container not watched", id); len(nw) > 0 {
		c.notWatched = nw[0].Str("reason")
	}
	c.oomReported = len(Select(es, "oom kill", id)) > 0
	for _, e := range es {
		if pid != "" && e.Str("pid") == pid && e.Str("container") != "" {
			names[e.Str("container")] = true
		}
	}
	for _, e := range es {
		if !names[e.Str("container")] {
			continue
		}
		switch e.Msg {
		case "signal sent":
			// Permission is the question here, not latency: a signal the
			// kernel accepted counts even when the app died before logging
			// it (load on this machine can delay oomhero past the kill).
			c.warning = c.warning || e.MemoryLevel == "warning"
			c.critical = c.critical || e.MemoryLevel == "critical"
		case "signal failed":
			c.signalErr = e.Str("error")
		case "container limit changed":
			lim, _ := e.Uint("to_bytes")
			c.limit = c.limit || lim == 64<<20
		}
	}
}

func appNames(apps []privApp) []string {
	var out []string
	for _, a := range apps {
		out = append(out, a.name)
	}
	return out
}

// privYAML renders a row's pod. Non-privileged oomhero containers get the
// hardening of deploy/'s recommended manifests: seccomp RuntimeDefault,
// read-only root filesystem, no privilege escalation.
func privYAML(name string, row privRow) string {
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  labels:\n    %s: %s\n", q(name), q(ownerLabel), q(strconv.Itoa(os.Getpid())))
	if row.unconfined {
		// podman 4.3's kube play reads the seccomp annotation, not the field.
		b.WriteString("  annotations:\n    container.seccomp.security.alpha.kubernetes.io/oomhero: unconfined\n")
	}
	b.WriteString("spec:\n  shareProcessNamespace: true\n  restartPolicy: Never\n")
	if row.btf {
		b.WriteString("  volumes:\n    - name: btf\n      hostPath:\n        path: /sys/kernel/btf\n        type: Directory\n")
	}
	b.WriteString("  containers:\n")
	fmt.Fprintf(&b, "    - name: oomhero\n      image: %s\n      imagePullPolicy: Never\n", q(OomheroImage))
	fmt.Fprintf(&b, "      args: [\"--log-format=json\", \"--listen=\", \"--source=%s\"]\n", row.source)
	if row.btf {
		b.WriteString("      volumeMounts:\n        - name: btf\n          mountPath: /sys/kernel/btf\n          readOnly: true\n")
	}
	b.WriteString("      securityContext:\n")
	if row.privileged {
		b.WriteString("        privileged: true\n")
	} else {
		b.WriteString("        allowPrivilegeEscalation: false\n        readOnlyRootFilesystem: true\n")
		if row.unconfined {
			b.WriteString("        seccompProfile:\n          type: Unconfined\n")
		} else {
			b.WriteString("        seccompProfile:\n          type: RuntimeDefault\n")
		}
		fmt.Fprintf(&b, "        capabilities:\n          drop: [\"ALL\"]\n")
		if len(row.add) > 0 {
			qs := make([]string, len(row.add))
			for i, c := range row.add {
				qs[i] = q(c)
			}
			fmt.Fprintf(&b, "          add: [%s]\n", strings.Join(qs, ", "))
		}
		if row.uid >= 0 {
			fmt.Fprintf(&b, "        runAsNonRoot: true\n        runAsUser: %d\n        runAsGroup: %d\n", row.uid, row.uid)
		}
	}
	for _, a := range row.apps {
		fmt.Fprintf(&b, "    - name: %s\n      image: %s\n      imagePullPolicy: Never\n", q(a.name), q(AppImage))
		// The delay lets oomhero watch the app before it leaks.
		b.WriteString("      args: [\"-mode\", \"leak\", \"-rate\", \"6\", \"-delay\", \"8s\", \"-sample-interval\", \"0\"]\n")
		b.WriteString("      resources:\n        limits:\n          memory: \"64Mi\"\n        requests:\n          memory: \"64Mi\"\n")
		if a.uid >= 0 || a.drop {
			b.WriteString("      securityContext:\n")
			if a.uid >= 0 {
				fmt.Fprintf(&b, "        runAsUser: %d\n        runAsGroup: %d\n", a.uid, a.uid)
			}
			if a.drop {
				b.WriteString("        capabilities:\n          drop: [\"ALL\"]\n")
			}
		}
	}
	return b.String()
}

// capNames are the capability numbers of include/uapi/linux/capability.h.
var capNames = []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
	"SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
	"AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
	"BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"}

// capSet names the bits of a hexadecimal capability mask ("all" when every
// known capability is set).
func capSet(hex string) (string, error) {
	v, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return "", fmt.Errorf("capability mask %q: %w", hex, err)
	}
	var names, missing []string
	for i, n := range capNames {
		if v&(1<<i) != 0 {
			names = append(names, n)
		} else {
			missing = append(missing, n)
		}
	}
	switch {
	case len(names) == 0:
		return "none", nil
	case len(missing) == 0:
		return "all", nil
	case len(missing) < 4:
		return "all but " + strings.Join(missing, ","), nil
	}
	return strings.Join(names, ","), nil
}

// procCreds returns the UID and the effective capabilities of a host pid.
func procCreds(pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return "", err
	}
	var uid, eff string
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		switch {
		case k == "Uid" && len(f) > 0:
			uid = f[0]
		case k == "CapEff" && len(f) > 0:
			if eff, err = capSet(f[0]); err != nil {
				return "", fmt.Errorf("/proc/%d/status: %w", pid, err)
			}
		}
	}
	return "uid " + uid + " caps " + eff, nil
}

// privCell is what one app got from oomhero.
type privCell struct {
	app, creds        string
	watched, limit    bool
	notWatched        string
	warning, critical bool
	signalErr         string
	oomReported       bool
	oomVia            string // kernel notification or polled every ...
	cgroupMount       string // ro or rw: the app's memory cgroup mount
	exitCode          int
}

// outcome classifies a cell. The OOM-kill report is recorded, not judged:
// the polled counter can lose a kill when the container's cgroup is removed
// within one poll (seen under load).
func (c privCell) outcome() string {
	switch {
	case c.watched && c.limit && c.warning && c.critical:
		return wantAll
	case !c.watched && c.notWatched != "":
		return wantNoSee
	case c.watched && c.limit && !c.warning && !c.critical && strings.Contains(c.signalErr, "operation not permitted"):
		return wantNoSignal
	}
	return "other"
}

// privResult is one row's measurement.
type privResult struct {
	row          privRow
	oomheroCreds string
	source       string // the active source, or why oomhero stopped
	cells        []privCell
	logs         map[string]string
	err          error
}

// TestPrivilegeMatrix runs every row at once (goroutines, not parallel
// subtests: -parallel defaults to GOMAXPROCS, 2 here, and the pods mostly
// wait), then judges each row in a subtest.
func TestPrivilegeMatrix(t *testing.T) {
	l := needLab(t)
	ctx := testCtx(t, 4*time.Minute)
	start := time.Now()
	results := make([]privResult, len(privRows))
	var wg sync.WaitGroup
	for i, row := range privRows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runPrivRow(ctx, l, row)
		}()
	}
	wg.Wait()
	t.Logf("%d pods measured in %s", len(privRows), time.Since(start).Round(time.Second))
	table := privTable(results)
	t.Logf("privilege matrix:\n%s", table)
	if p := filepath.Join(os.TempDir(), "oomhero-privileges.md"); os.WriteFile(p, []byte(table), 0o644) == nil {
		t.Logf("written to %s", p)
	}
	for _, res := range results {
		row := res.row
		t.Run(row.name, func(t *testing.T) {
			defer func() {
				if t.Failed() {
					dir := saveLogs(t, res.logs)
					t.Logf("oomhero log:\n%s", indent(Short(ParseOomheroLog(res.logs["oomhero"]))))
					t.Logf("logs in %s", dir)
				}
			}()
			if res.err != nil {
				t.Fatal(res.err)
			}
			for _, c := range res.cells {
				want := row.want[c.app]
				if want == wantNoSource {
					if strings.HasPrefix(res.source, "bpf") {
						t.Errorf("%s: BPF loaded (%s), want it refused", c.app, res.source)
					}
					continue
				}
				if got := c.outcome(); got != want {
					t.Errorf("%s (%s) with oomhero %s: measured %s, want %s: %+v", c.app, c.creds, res.oomheroCreds, got, want, c)
				}
			}
			if row.want[row.apps[0].name] != wantNoSource && !strings.HasPrefix(res.source, row.source) {
				t.Errorf("active source %q, want %s", res.source, row.source)
			}
		})
	}
}

// runPrivRow plays a row's pod, waits until every app was OOM-killed and
// reads what happened. The pod is always removed.
func runPrivRow(ctx context.Context, l *Lab, row privRow) (res privResult) {
	res = privResult{row: row, logs: map[string]string{}}
	name := PodName("priv-" + row.name)
	path := filepath.Join(l.Dir, name+".yaml")
	if err := os.WriteFile(path, []byte(privYAML(name, row)), 0o644); err != nil {
		res.err = err
		return res
	}
	pod := Pod{Name: name, Containers: []Container{{Name: "oomhero"}}}
	for _, a := range row.apps {
		pod.Containers = append(pod.Containers, Container{Name: a.name})
	}
	r := &Running{Lab: l, Pod: pod, YAML: path}
	liveMu.Lock()
	live[r] = true
	liveMu.Unlock()
	defer func() {
		if err := r.Down(); err != nil && res.err == nil {
			res.err = err
		}
	}()
	if _, err := l.Podman(ctx, "kube", "play", path); err != nil {
		res.err = fmt.Errorf("play %s: %w", name, err)
		return res
	}
	// Credentials once each app runs its own program (runc's init execs
	// it in the container's first process). Under load podman can start
	// one container of the pod tens of seconds after the others (seen in
	// CI: 33 s): each is inspected until it runs, up to a minute.
	ids, pids := map[string]string{}, map[string]int{}
	for _, c := range append([]string{"oomhero"}, appNames(row.apps)...) {
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
			st, err := r.State(ctx, c)
			if err == nil && st.Pid > 0 {
				ids[c], pids[c] = st.ID, st.Pid
				break
			}
			if err == nil && st.Status != "created" && st.Status != "configured" && st.Status != "initialized" {
				ids[c] = st.ID
				break // ended already (an app killed before it was inspected)
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				res.err = fmt.Errorf("%s not running after a minute (%+v): %v", c, st, err)
				return res
			}
		}
	}
	for _, c := range append([]string{"oomhero"}, appNames(row.apps)...) {
		want := "testapp"
		if c == "oomhero" {
			want = "oomhero"
		}
		pid := pids[c]
		for deadline := time.Now().Add(15 * time.Second); pid > 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(b)) == want {
				break
			}
		}
		creds, err := procCreds(pid)
		if err != nil {
			creds = "exited before it was read"
		}
		if c == "oomhero" {
			res.oomheroCreds = creds
			continue
		}
		res.cells = append(res.cells, privCell{app: c, creds: creds, cgroupMount: memoryMount(pid)})
	}
	// Each app's end: its process gone (a pidfd), then podman's state.
	for i := range res.cells {
		s, err := r.WaitPidExit(ctx, res.cells[i].app, pids[res.cells[i].app])
		if err != nil {
			res.err = err
			return res
		}
		res.cells[i].exitCode = s.ExitCode
	}
	// The OOM-kill report follows the kill within the 50 ms poll or at once.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Every app's outcome is in the log: watched and its OOM kill
	// reported, or not watched with the reason.
	olog, _ := r.WaitLog(wctx, "oomhero", func(log string) bool {
		es := ParseOomheroLog(log)
		for _, a := range row.apps {
			watched := len(Select(es, "container watched", ids[a.name])) > 0
			if watched && len(Select(es, "oom kill", ids[a.name])) == 0 ||
				!watched && len(Select(es, "container not watched", ids[a.name])) == 0 {
				return false
			}
		}
		return true
	})
	if olog == "" {
		olog, _ = r.Logs(ctx, "oomhero")
	}
	res.logs["oomhero"] = olog
	es := ParseOomheroLog(olog)
	if act := Select(es, "source active", ""); len(act) > 0 {
		res.source = act[len(act)-1].Str("source")
	} else if st := Select(es, "oomhero stopped", ""); len(st) > 0 {
		res.source = "stopped: " + st[0].Str("error")
	} else {
		res.source = "none: " + strings.TrimSpace(string(lastLines([]byte(olog), 2)))
	}
	for i := range res.cells {
		c := &res.cells[i]
		id := ids[c.app]
		alog, _ := r.Logs(ctx, c.app)
		res.logs[c.app] = alog
		c.warning = strings.Contains(alog, "event=signal signal=SIGUSR1")
		c.critical = strings.Contains(alog, "event=signal signal=SIGUSR2")
		judgeCell(c, es, id)
	}
	return res
}

// privTable renders the measurement as a Markdown table.
func privTable(rs []privResult) string {
	var b strings.Builder
	b.WriteString("| oomhero (source; capabilities held) | app (capabilities held) | discovery | limit | SIGUSR1, SIGUSR2 | OOM-kill report |\n|---|---|---|---|---|---|\n")
	yes := func(ok bool, no string) string {
		if ok {
			return "yes"
		}
		return no
	}
	for _, r := range rs {
		src := r.source
		if e, ok := strings.CutPrefix(src, "stopped: "); ok {
			// The first attach point's reason is the one that matters.
			e, _, _ = strings.Cut(e, " (needs")
			src = "exits: " + e
		}
		if r.err != nil {
			src = "error: " + r.err.Error()
		}
		for _, c := range r.cells {
			reason := c.notWatched
			if _, after, ok := strings.Cut(reason, "): "); ok {
				reason = after
			}
			reason, _, _ = strings.Cut(reason, " (tried")
			disc := yes(c.watched, "no: "+reason)
			sig := "both"
			if !c.warning || !c.critical {
				sig = fmt.Sprintf("warning %v, critical %v", c.warning, c.critical)
				if c.signalErr != "" {
					sig += ": " + c.signalErr
				}
			}
			oom := "missed"
			if c.oomReported {
				oom = "yes"
			}
			oom += " (" + c.oomVia + "; app's memory cgroup mounted " + c.cgroupMount + ")"
			if !c.watched {
				sig, oom = "-", "-"
			}
			lim := yes(c.limit, "no")
			if !c.watched {
				lim = "-"
			}
			fmt.Fprintf(&b, "| %s (%s; %s) | %s (%s) | %s | %s | %s | %s |\n", r.row.name, src, r.oomheroCreds,
				c.app, c.creds, disc, lim, sig, oom)
		}
	}
	return b.String()
}

// memoryMount returns the mount options (ro or rw) of the memory cgroup as
// the process of host pid sees it: what oomhero reaches through
// /proc/<pid>/root.
func memoryMount(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "mountinfo"))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && (f[4] == "/sys/fs/cgroup/memory" || f[4] == "/sys/fs/cgroup") && strings.Contains(l, " - cgroup") {
			opts, _, _ := strings.Cut(f[5], ",")
			return opts
		}
	}
	return "?"
}

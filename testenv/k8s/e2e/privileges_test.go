package e2e

import (
	"bufio"
	"encoding/json"
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

// The privilege matrix on Kubernetes (containerd, runc, the kubelet's
// security contexts), the cluster half of testenv/pods/privileges_test.go:
// oomhero with one security context per pod (a row) next to apps that differ
// in what the kernel compares (columns): app-root (UID 0, the runtime's
// default capabilities), app-uid1000, app-nocaps (UID 0, every capability
// dropped). Each app leaks into 64 MiB until it is OOM-killed; the cell
// records discovery, the limit, both signals (oomhero's "signal sent" or
// "signal failed") and the OOM-kill report. The kernel's rules are cited in
// testenv/pods/privileges_test.go.

type k8sApp struct {
	name string
	uid  int // -1: the image's (root)
	drop bool
}

type k8sRow struct {
	name       string
	source     string
	add        []string
	uid        int    // -1: root
	seccomp    string // RuntimeDefault or Unconfined
	btf        bool
	apps       []k8sApp
	want       map[string]string // app -> outcome
	wantSource bool              // the source starts (false: oomhero must exit)
}

var (
	k8sAppRoot   = k8sApp{name: "app-root", uid: -1}
	k8sAppUID    = k8sApp{name: "app-uid1000", uid: 1000}
	k8sAppNoCaps = k8sApp{name: "app-nocaps", uid: -1, drop: true}
	k8sAllApps   = []k8sApp{k8sAppRoot, k8sAppUID, k8sAppNoCaps}
)

const (
	outAll      = "all"
	outNoSee    = "no-see"
	outNoSignal = "no-signal"
)

var k8sRows = []k8sRow{
	{name: "ptrace-kill", source: "cgroupfs", add: []string{"SYS_PTRACE", "KILL"}, uid: -1, seccomp: "RuntimeDefault", apps: k8sAllApps, wantSource: true,
		want: map[string]string{"app-root": outAll, "app-uid1000": outAll, "app-nocaps": outAll}},
	{name: "kill", source: "cgroupfs", add: []string{"KILL"}, uid: -1, seccomp: "RuntimeDefault", apps: k8sAllApps, wantSource: true,
		want: map[string]string{"app-root": outNoSee, "app-uid1000": outNoSee, "app-nocaps": outAll}},
	// The capabilities asked for a non-root container are not given to its
	// process (no ambient set from the CRI): it holds none.
	{name: "nonroot+ptrace-kill", source: "cgroupfs", add: []string{"SYS_PTRACE", "KILL"}, uid: 1000, seccomp: "RuntimeDefault", apps: k8sAllApps, wantSource: true,
		want: map[string]string{"app-root": outNoSee, "app-uid1000": outAll, "app-nocaps": outNoSee}},
	// containerd's RuntimeDefault seccomp profile allows bpf(2) and
	// perf_event_open(2) to a holder of CAP_BPF/CAP_PERFMON, and the
	// container's own sysfs shows /sys/kernel/btf: no hostPath needed.
	{name: "bpf-perfmon-ptrace-kill", source: "bpf", add: []string{"BPF", "PERFMON", "SYS_PTRACE", "KILL"}, uid: -1, seccomp: "RuntimeDefault", apps: []k8sApp{k8sAppRoot}, wantSource: true,
		want: map[string]string{"app-root": outAll}},
	{name: "ptrace", source: "cgroupfs", add: []string{"SYS_PTRACE"}, uid: -1, seccomp: "RuntimeDefault", apps: k8sAllApps, wantSource: true,
		want: map[string]string{"app-root": outAll, "app-uid1000": outNoSignal, "app-nocaps": outAll}},
}

func k8sRowYAML(pod string, row k8sRow) string {
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  labels:\n    oomhero-e2e: privileges\n", q(pod))
	b.WriteString("spec:\n  shareProcessNamespace: true\n  restartPolicy: Never\n  automountServiceAccountToken: false\n  terminationGracePeriodSeconds: 1\n")
	if row.btf {
		b.WriteString("  volumes:\n    - name: btf\n      hostPath:\n        path: /sys/kernel/btf\n        type: Directory\n")
	}
	b.WriteString("  containers:\n    - name: oomhero\n      image: localhost/oomhero:dev\n      imagePullPolicy: IfNotPresent\n")
	fmt.Fprintf(&b, "      args: [\"--log-format=json\", \"--listen=\", \"--events=off\", \"--source=%s\"]\n", row.source)
	if row.btf {
		b.WriteString("      volumeMounts:\n        - name: btf\n          mountPath: /sys/kernel/btf\n          readOnly: true\n")
	}
	fmt.Fprintf(&b, "      securityContext:\n        allowPrivilegeEscalation: false\n        readOnlyRootFilesystem: true\n        seccompProfile:\n          type: %s\n        capabilities:\n          drop: [\"ALL\"]\n", row.seccomp)
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
	for _, a := range row.apps {
		fmt.Fprintf(&b, "    - name: %s\n      image: localhost/oomhero-testapp:dev\n      imagePullPolicy: IfNotPresent\n", a.name)
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

type k8sCell struct {
	app, creds        string
	watched, limit    bool
	notWatched        string
	warning, critical bool
	signalErr         string
	oomReported       bool
	oomVia            string
}

func (c k8sCell) outcome() string {
	switch {
	case c.watched && c.limit && c.warning && c.critical:
		return outAll
	case !c.watched && c.notWatched != "":
		return outNoSee
	case c.watched && c.limit && !c.warning && !c.critical && strings.Contains(c.signalErr, "operation not permitted"):
		return outNoSignal
	}
	return "other"
}

type k8sResult struct {
	row          k8sRow
	oomheroCreds string
	source       string
	cells        []k8sCell
	log          string
	err          error
}

// logEntry is one line of oomhero's JSON log.
type logEntry map[string]any

func (e logEntry) str(k string) string {
	switch v := e[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func parseJSONLog(s string) []logEntry {
	var out []logEntry
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e logEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// hostCreds finds the host process of a container (the first whose
// /proc/<pid>/cgroup names the container id) and returns its UID and
// effective capabilities.
func hostCreds(id string) string {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		cg, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cgroup"))
		if err != nil || !strings.Contains(string(cg), id) {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", d.Name(), "status"))
		if err != nil {
			continue
		}
		var uid, eff, comm string
		for _, l := range strings.Split(string(st), "\n") {
			k, v, _ := strings.Cut(l, ":")
			f := strings.Fields(v)
			if len(f) == 0 {
				continue
			}
			switch k {
			case "Name":
				comm = f[0]
			case "Uid":
				uid = f[0]
			case "CapEff":
				eff = capNames(f[0])
			}
		}
		if comm == "runc:[2:INIT]" || comm == "runc" {
			continue
		}
		return "uid " + uid + " caps " + eff
	}
	return "exited before it was read"
}

var capList = []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
	"SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
	"AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
	"BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"}

func capNames(hex string) string {
	v, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return "?" + hex
	}
	var names []string
	for i, n := range capList {
		if v&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// containerIDs returns the containerd ids of the pod's containers.
func containerIDs(t *testing.T, pod string) (map[string]string, error) {
	out, err := kubectl(t, "get", "pod", pod, "-o", `jsonpath={range .status.containerStatuses[*]}{.name}={.containerID}{"\n"}{end}`)
	if err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		name, id, ok := strings.Cut(l, "=")
		if ok && id != "" {
			ids[name] = strings.TrimPrefix(id, "containerd://")
		}
	}
	return ids, nil
}

func runK8sRow(t *testing.T, dir string, row k8sRow) (res k8sResult) {
	res = k8sResult{row: row}
	pod := "oomhero-priv-" + strings.NewReplacer("+", "-").Replace(row.name)
	path := filepath.Join(dir, pod+".yaml")
	if err := os.WriteFile(path, []byte(k8sRowYAML(pod, row)), 0o644); err != nil {
		res.err = err
		return res
	}
	kubectl(t, "delete", "pod", pod, "--ignore-not-found", "--grace-period=0", "--force")
	if _, err := kubectl(t, "apply", "-f", path); err != nil {
		res.err = err
		return res
	}
	defer kubectl(t, "delete", "pod", pod, "--grace-period=0", "--force", "--wait=false")
	// Every app container started: read the credentials of each process.
	var ids map[string]string
	deadline := time.Now().Add(120 * time.Second)
	for {
		var err error
		ids, err = containerIDs(t, pod)
		if err == nil && len(ids) == len(row.apps)+1 {
			break
		}
		if time.Now().After(deadline) {
			res.err = fmt.Errorf("pod %s: containers not started within 120 s: %v %v", pod, ids, err)
			return res
		}
		time.Sleep(time.Second)
	}
	time.Sleep(2 * time.Second) // runc's init execs the image's program
	res.oomheroCreds = hostCreds(ids["oomhero"])
	for _, a := range row.apps {
		res.cells = append(res.cells, k8sCell{app: a.name, creds: hostCreds(ids[a.name])})
	}
	// Until every app terminated (OOM-killed), then a moment for the report.
	q := `jsonpath={range .status.containerStatuses[*]}{.name}={.state.terminated.reason}{"\n"}{end}`
	for {
		out, _ := kubectl(t, "get", "pod", pod, "-o", q)
		done := 0
		for _, l := range strings.Split(out, "\n") {
			if name, reason, _ := strings.Cut(l, "="); name != "oomhero" && reason != "" {
				done++
			}
		}
		if done == len(row.apps) {
			break
		}
		if time.Now().After(deadline) {
			res.err = fmt.Errorf("pod %s: apps not all terminated within 120 s:\n%s", pod, out)
			return res
		}
		time.Sleep(time.Second)
	}
	time.Sleep(3 * time.Second)
	res.log, _ = kubectl(t, "logs", pod, "-c", "oomhero")
	es := parseJSONLog(res.log)
	for _, e := range es {
		switch e.str("msg") {
		case "source active":
			res.source = e.str("source")
		case "oomhero stopped":
			res.source = "exits: " + e.str("error")
		}
	}
	for i := range res.cells {
		judgeK8sCell(&res.cells[i], ids[res.cells[i].app], es)
	}
	return res
}

var procRoot = regexp.MustCompile(`^/proc/(\d+)/root/`)

// judgeK8sCell fills a cell from oomhero's log. A container is known by its
// cgroup path (which holds the container id) in "container watched"; its
// later lines by oomhero's pid of it (the directory /proc/<pid>/root/...)
// and every name oomhero gave it (the name follows the main process: first
// runc's init, then the image's program).
func judgeK8sCell(c *k8sCell, id string, es []logEntry) {
	pid := ""
	names := map[string]bool{}
	for _, e := range es {
		if !strings.Contains(e.str("cgroup"), id) {
			continue
		}
		switch e.str("msg") {
		case "container watched":
			c.watched = true
			names[e.str("container")] = true
			if m := procRoot.FindStringSubmatch(e.str("dir")); m != nil {
				pid = m[1]
			}
			lim, _ := strconv.ParseFloat(e.str("limit_bytes"), 64)
			c.limit = c.limit || lim == 64<<20
			c.oomVia = e.str("oom_kills")
		case "container not watched":
			c.notWatched = e.str("reason")
		case "oom kill":
			c.oomReported = true
		}
	}
	for _, e := range es {
		if pid != "" && e.str("pid") == pid && e.str("container") != "" {
			names[e.str("container")] = true
		}
	}
	for _, e := range es {
		if !names[e.str("container")] {
			continue
		}
		switch e.str("msg") {
		case "signal sent":
			c.warning = c.warning || e.str("memory_level") == "warning"
			c.critical = c.critical || e.str("memory_level") == "critical"
		case "signal failed":
			c.signalErr = e.str("error")
		case "container limit changed":
			lim, _ := strconv.ParseFloat(e.str("to_bytes"), 64)
			c.limit = c.limit || lim == 64<<20
		}
	}
}

func k8sTable(rs []k8sResult) string {
	var b strings.Builder
	b.WriteString("| oomhero (seccomp; source; held) | app (held) | discovery | limit | SIGUSR1, SIGUSR2 | OOM-kill report |\n|---|---|---|---|---|---|\n")
	for _, r := range rs {
		src := r.source
		if e, ok := strings.CutPrefix(src, "exits: "); ok {
			e, _, _ = strings.Cut(e, " (needs")
			src = "exits: " + e
		}
		for _, c := range r.cells {
			disc, lim, sig, oom := "yes", "yes", "both", "missed"
			if !c.watched {
				reason := c.notWatched
				if _, after, ok := strings.Cut(reason, "): "); ok {
					reason = after
				}
				reason, _, _ = strings.Cut(reason, " (tried")
				disc, lim, sig, oom = "no: "+reason, "-", "-", "-"
			} else {
				if !c.limit {
					lim = "no"
				}
				if !c.warning || !c.critical {
					sig = fmt.Sprintf("warning %v, critical %v: %s", c.warning, c.critical, c.signalErr)
				}
				if c.oomReported {
					oom = "yes"
				}
				oom += " (" + c.oomVia + ")"
			}
			fmt.Fprintf(&b, "| %s (%s; %s; %s) | %s (%s) | %s | %s | %s | %s |\n", r.row.name, r.row.seccomp, src, r.oomheroCreds,
				c.app, c.creds, disc, lim, sig, oom)
		}
	}
	return b.String()
}

// TestPrivilegeMatrix runs the rows at once, then judges each.
func TestPrivilegeMatrix(t *testing.T) {
	needCluster(t)
	t.Parallel()
	dir := t.TempDir()
	results := make([]k8sResult, len(k8sRows))
	var wg sync.WaitGroup
	start := time.Now()
	for i, row := range k8sRows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runK8sRow(t, dir, row)
		}()
	}
	wg.Wait()
	table := k8sTable(results)
	t.Logf("%d pods measured in %s; privilege matrix on Kubernetes:\n%s", len(k8sRows), time.Since(start).Round(time.Second), table)
	os.WriteFile(filepath.Join(os.TempDir(), "oomhero-privileges-k8s.md"), []byte(table), 0o644)
	for _, res := range results {
		t.Run(res.row.name, func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("oomhero log:\n%s", res.log)
				}
			}()
			if res.err != nil {
				t.Fatal(res.err)
			}
			if got := strings.HasPrefix(res.source, res.row.source); got != res.row.wantSource {
				t.Errorf("source %q: started %v, want %v", res.source, got, res.row.wantSource)
			}
			if !res.row.wantSource {
				return
			}
			for _, c := range res.cells {
				if got, want := c.outcome(), res.row.want[c.app]; got != want {
					t.Errorf("%s (%s) with oomhero %s: measured %s, want %s: %+v", c.app, c.creds, res.oomheroCreds, got, want, c)
				}
			}
		})
	}
}

// TestNonRootSidecar runs deploy/sidecar-nonroot.yaml: every container as
// UID 65532, oomhero without any capability, Events through its own token.
func TestNonRootSidecar(t *testing.T) {
	needCluster(t)
	t.Parallel()
	sidecarStory(t, "oomhero-nonroot", "sidecar-nonroot.yaml", "cgroupfs")
	out := mustKubectl(t, "get", "pod", "oomhero-nonroot", "-o", `jsonpath={.spec.containers[*].securityContext.capabilities.add}`)
	if strings.TrimSpace(out) != "" {
		t.Errorf("capabilities added: %s", out)
	}
}

// TestPodSecurityLevels finds the strictest Pod Security Standard under which
// the API server admits each manifest of deploy/ (server-side dry run in a
// namespace enforcing that level). sidecar-nonroot.yaml must pass
// "restricted"; the capabilities the others need (SYS_PTRACE, BPF, PERFMON)
// are outside "baseline", so they need a namespace at "privileged".
func TestPodSecurityLevels(t *testing.T) {
	needCluster(t)
	t.Parallel()
	want := map[string]string{
		"sidecar-nonroot.yaml": "restricted",
		"sidecar.yaml":         "privileged",
		"native-sidecar.yaml":  "privileged",
		"sidecar-bpf.yaml":     "privileged",
		"pod.yaml":             "privileged",
	}
	admitted := map[string]string{}
	for _, level := range []string{"restricted", "baseline"} {
		ns := fmt.Sprintf("oomhero-pss-%s-%d", level, os.Getpid())
		mustKubectl(t, "create", "namespace", ns)
		t.Cleanup(func() { kubectl(t, "delete", "namespace", ns, "--wait=false") })
		mustKubectl(t, "label", "namespace", ns, "pod-security.kubernetes.io/enforce="+level)
		mustKubectl(t, "create", "serviceaccount", "oomhero", "-n", ns)
		for f := range want {
			if admitted[f] != "" {
				continue
			}
			out, err := kubectl(t, "apply", "--dry-run=server", "-n", ns, "-f", filepath.Join(deployDir, f))
			switch {
			case err == nil:
				admitted[f] = level
			case !strings.Contains(err.Error(), "violates PodSecurity"):
				t.Errorf("%s at %s: %v %s", f, level, err, out)
			}
		}
	}
	for f, w := range want {
		got := admitted[f]
		if got == "" {
			got = "privileged"
		}
		t.Logf("%s: admitted at %s", f, got)
		if got != w {
			t.Errorf("%s admitted at Pod Security level %s, want %s", f, got, w)
		}
	}
}

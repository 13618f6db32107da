package e2e

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	k8sDir     string
	deployDir  string
	kubectlBin string
	kubeconfig string
	envProblem string // why the cluster cannot run here ("" when it can)
	setupErr   error
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	// The pod stories mostly wait: run them all at once, also on 2 cores.
	if p := flag.Lookup("test.parallel"); p != nil && p.Value.String() == strconv.Itoa(runtime.GOMAXPROCS(0)) {
		p.Value.Set("4")
	}
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	k8sDir = filepath.Dir(wd)
	deployDir = filepath.Join(k8sDir, "..", "..", "deploy")
	envProblem = missingEnv()
	if envProblem != "" || testing.Short() {
		return m.Run()
	}
	alreadyUp := clusterUp()
	before := hostState()
	start := time.Now()
	out, err := script("up.sh")
	if err != nil {
		setupErr = fmt.Errorf("cluster up: %w\n%s", err, out)
		return m.Run()
	}
	kubeconfig = strings.TrimSpace(lastLine(out))
	fmt.Fprintf(os.Stderr, "cluster up after %s\n", time.Since(start).Round(time.Second))
	start = time.Now()
	if out, err := script("images.sh"); err != nil {
		setupErr = fmt.Errorf("images: %w\n%s", err, out)
	} else {
		fmt.Fprintf(os.Stderr, "images loaded after %s\n", time.Since(start).Round(time.Second))
	}
	code := m.Run()
	if !alreadyUp && os.Getenv("K8S_KEEP") == "" {
		if out, err := script("down.sh"); err != nil {
			fmt.Fprintf(os.Stderr, "cluster down: %v\n%s", err, out)
			code = 1
		}
		// The host must be as before: sysctls, iptables, links, cgroups.
		if after := hostState(); after != before {
			fmt.Fprintf(os.Stderr, "FAIL: the cluster changed the host:\nbefore:\n%s\nafter:\n%s", before, after)
			code = 1
		}
	}
	return code
}

// hostState describes what the cluster could leave behind on the host: the
// sysctls the kubelet, kube-proxy and the bridge plugin want, rules and
// chains named KUBE-, the CNI bridge, the kubepods cgroups.
func hostState() string {
	var b strings.Builder
	for _, k := range []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
		"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet"} {
		v, err := os.ReadFile("/proc/sys/" + k)
		fmt.Fprintf(&b, "%s=%s %v\n", k, strings.TrimSpace(string(v)), err)
	}
	for _, ipt := range []string{"iptables-save", "ip6tables-save"} {
		out, _ := exec.Command(ipt).Output()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "KUBE-") {
				fmt.Fprintf(&b, "%s: %s\n", ipt, l)
			}
		}
	}
	if _, err := os.Stat("/sys/class/net/oomhero-cni0"); err == nil {
		b.WriteString("link oomhero-cni0\n")
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	cg2, _ := filepath.Glob("/sys/fs/cgroup/kubepods")
	for _, d := range append(cg, cg2...) {
		fmt.Fprintf(&b, "cgroup %s\n", d)
	}
	return b.String()
}

func missingEnv() string {
	if os.Geteuid() != 0 {
		return "the cluster needs root"
	}
	for _, c := range []string{"containerd", "containerd-shim-runc-v2", "runc", "iptables", "podman", "openssl", "unshare"} {
		if _, err := exec.LookPath(c); err != nil {
			return c + " not installed (apt-get install containerd containernetworking-plugins)"
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return "CNI plugins not installed (apt-get install containernetworking-plugins)"
	}
	return ""
}

func script(name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(k8sDir, "scripts", name), args...)
	var b strings.Builder
	cmd.Stdout = &b
	cmd.Stderr = &b
	err := cmd.Run()
	return b.String(), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// clusterUp reports whether a cluster of these scripts is already running.
func clusterUp() bool {
	b, err := os.ReadFile(filepath.Join(k8sDir, ".cache", "run", "node.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && pid > 0 && exec.Command("kill", "-0", strconv.Itoa(pid)).Run() == nil
}

// needCluster skips (or fails under CI=true) when the cluster cannot run.
func needCluster(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("cluster tests skipped in -short mode")
	}
	if envProblem != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but the cluster cannot run: %s", envProblem)
		}
		t.Skip(envProblem)
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	if kubectlBin == "" {
		matches, _ := filepath.Glob(filepath.Join(k8sDir, ".cache", "v*", "bin", "kubectl"))
		if len(matches) == 0 {
			t.Fatal("no kubectl in the binary cache")
		}
		kubectlBin = matches[0]
	}
}

func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlBin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectl(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually polls f every second until it returns nil or the timeout ends.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

// create creates the pod of a manifest as written and deletes it at the end
// of the test, after saving its logs and description on failure.
func create(t *testing.T, pod string, manifests ...string) {
	t.Helper()
	args := []string{"apply"}
	for _, m := range manifests {
		args = append(args, "-f", filepath.Join(deployDir, m))
	}
	kubectl(t, "delete", "pod", pod, "--ignore-not-found", "--grace-period=0", "--force")
	mustKubectl(t, args...)
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{"bloat", "oomhero"} {
				out, _ := kubectl(t, "logs", pod, "-c", c, "--tail=40")
				t.Logf("--- %s/%s logs:\n%s", pod, c, out)
			}
			out, _ := kubectl(t, "describe", "pod", pod)
			t.Logf("--- describe pod %s:\n%s", pod, out)
		}
		kubectl(t, "delete", "pod", pod, "--grace-period=1", "--wait=false")
	})
}

// appLog is what the test application logged, current and previous
// container instances together (the leak ends in an OOM kill and a restart).
func appLog(t *testing.T, pod string) string {
	t.Helper()
	prev, _ := kubectl(t, "logs", pod, "-c", "bloat", "--previous")
	cur, _ := kubectl(t, "logs", pod, "-c", "bloat")
	return prev + cur
}

var signalLine = regexp.MustCompile(`event=signal signal=(SIG[A-Z0-9]+)`)

// warningThenCritical checks that the app received SIGUSR1 (warning) before
// its first SIGUSR2 (critical).
func warningThenCritical(log string) error {
	first := map[string]int{}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		if m := signalLine.FindStringSubmatch(sc.Text()); m != nil {
			n++
			if _, ok := first[m[1]]; !ok {
				first[m[1]] = n
			}
		}
	}
	w, okw := first["SIGUSR1"]
	c, okc := first["SIGUSR2"]
	switch {
	case !okw:
		return errors.New("no SIGUSR1 (warning) in the app's log yet")
	case !okc:
		return errors.New("no SIGUSR2 (critical) in the app's log yet")
	case w > c:
		return fmt.Errorf("SIGUSR2 (critical) arrived before SIGUSR1 (warning):\n%s", log)
	}
	return nil
}

func waitRunning(t *testing.T, pod string) {
	t.Helper()
	eventually(t, 90*time.Second, "pod "+pod+" running", func() error {
		out, err := kubectl(t, "get", "pod", pod, "-o", "jsonpath={.status.phase}")
		if err != nil {
			return err
		}
		if out != "Running" {
			return fmt.Errorf("phase %q", out)
		}
		return nil
	})
}

func TestSeedPod(t *testing.T) {
	needCluster(t)
	t.Parallel()
	// The seed's instructions: kubectl create -f pod.yaml.
	kubectl(t, "delete", "pod", "oomhero", "--ignore-not-found", "--grace-period=0", "--force")
	mustKubectl(t, "create", "-f", filepath.Join(deployDir, "pod.yaml"))
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := kubectl(t, "describe", "pod", "oomhero")
			t.Logf("--- describe pod oomhero:\n%s", out)
		}
		kubectl(t, "delete", "pod", "oomhero", "--grace-period=1", "--wait=false")
	})
	waitRunning(t, "oomhero")
	eventually(t, 120*time.Second, "warning then critical in `kubectl logs oomhero --container bloat`", func() error {
		return warningThenCritical(appLog(t, "oomhero"))
	})
	ol := mustKubectl(t, "logs", "oomhero", "--container", "oomhero")
	for _, want := range []string{`msg="oomhero starting"`, `msg="source active"`, `msg="signal sent"`} {
		if !strings.Contains(ol, want) {
			t.Errorf("oomhero's log lacks %s:\n%s", want, ol)
		}
	}
	// The seed's pod has no Downward API env and no RBAC: Events stay off,
	// and oomhero says so once.
	if n := strings.Count(ol, `msg="kubernetes events off"`); n != 1 {
		t.Errorf("'kubernetes events off' logged %d times, want once:\n%s", n, ol)
	}
}

// metrics scrapes the pod's /metrics through the API server's pod proxy.
func metrics(t *testing.T, pod string) (string, error) {
	return kubectl(t, "get", "--raw", "/api/v1/namespaces/default/pods/"+pod+":9090/proxy/metrics")
}

// sample returns the sum of the samples of a metric whose labels contain
// every given label pair.
func sample(text, name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line[:i], l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

func sidecarStory(t *testing.T, pod, manifest, source string) {
	create(t, pod, "rbac.yaml", manifest)
	waitRunning(t, pod)
	eventually(t, 60*time.Second, "oomhero ready (/readyz)", func() error {
		q := `jsonpath={.status.containerStatuses[?(@.name=="oomhero")].ready}{.status.initContainerStatuses[?(@.name=="oomhero")].ready}`
		out, err := kubectl(t, "get", "pod", pod, "-o", q)
		if err != nil {
			return err
		}
		if !strings.Contains(out, "true") {
			return fmt.Errorf("oomhero not ready: %q", out)
		}
		return nil
	})
	ol := mustKubectl(t, "logs", pod, "-c", "oomhero")
	if !strings.Contains(ol, "source="+source) && !strings.Contains(ol, `source="`+source) {
		t.Errorf("oomhero's source is not %s:\n%s", source, ol)
	}
	eventually(t, 120*time.Second, "warning then critical in the app's log", func() error {
		return warningThenCritical(appLog(t, pod))
	})
	eventually(t, 60*time.Second, "/metrics shows the signals", func() error {
		m, err := metrics(t, pod)
		if err != nil {
			return err
		}
		for _, lv := range []string{"warning", "critical"} {
			if v, _ := sample(m, "oomhero_signals_total", `level="`+lv+`"`, `result="sent"`, `pod="`+pod+`"`); v < 1 {
				return fmt.Errorf("oomhero_signals_total{level=%q,result=\"sent\",pod=%q} = %v", lv, pod, v)
			}
		}
		if v, _ := sample(m, "oomhero_oom_kills_total", `pod="`+pod+`"`); v < 1 {
			return fmt.Errorf("oomhero_oom_kills_total{pod=%q} = %v, want the leak's OOM kill", pod, v)
		}
		if v, _ := sample(m, "oomhero_source_info", `source="`+source+`"`); v != 1 {
			return fmt.Errorf("oomhero_source_info{source=%q} = %v", source, v)
		}
		if v, ok := sample(m, "oomhero_memory_limit_bytes", `pod="`+pod+`"`); !ok || v < 256<<20 {
			return fmt.Errorf("oomhero_memory_limit_bytes = %v, want the app's 256Mi", v)
		}
		return nil
	})
	if m, err := metrics(t, pod); err == nil {
		rss, _ := sample(m, "process_resident_memory_bytes")
		cpu, _ := sample(m, "process_cpu_seconds_total")
		t.Logf("oomhero in %s (%s source): RSS %.1f MiB, CPU %.2f s so far", pod, source, rss/(1<<20), cpu)
	}
	eventually(t, 60*time.Second, "Events in kubectl describe pod", func() error {
		d, err := kubectl(t, "describe", "pod", pod)
		if err != nil {
			return err
		}
		_, events, _ := strings.Cut(d, "\nEvents:")
		for _, reason := range []string{"MemoryWarning", "MemoryCritical", "OOMKilled"} {
			if !regexp.MustCompile(`Warning\s+` + reason + `\s+.*oomhero`).MatchString(events) {
				return fmt.Errorf("no %s event from oomhero in describe:\n%s", reason, events)
			}
		}
		return nil
	})
	// The liveness probe (exec `oomhero probe` on the health socket) passed
	// all along: oomhero never restarted and no probe of it failed.
	q := `jsonpath={.status.containerStatuses[?(@.name=="oomhero")].restartCount}{.status.initContainerStatuses[?(@.name=="oomhero")].restartCount}`
	if out := mustKubectl(t, "get", "pod", pod, "-o", q); strings.TrimSpace(out) != "0" {
		t.Errorf("oomhero restarted: restartCount %q", out)
	}
	d := mustKubectl(t, "describe", "pod", pod)
	_, events, _ := strings.Cut(d, "\nEvents:")
	for _, line := range strings.Split(events, "\n") {
		// A readiness probe refused before oomhero listens (the kubelet
		// probes at once; under load oomhero binds the port a few hundred
		// ms later) only delays readiness, which is what it is for.
		startup := strings.Contains(line, "Readiness probe failed") && strings.Contains(line, "connect: connection refused")
		if strings.Contains(line, "Unhealthy") && (strings.Contains(line, "oomhero") || strings.Contains(line, "errored")) && !startup {
			t.Errorf("a probe of oomhero failed: %s", strings.TrimSpace(line))
		}
	}
}

func TestSidecar(t *testing.T) {
	needCluster(t)
	t.Parallel()
	sidecarStory(t, "oomhero-sidecar", "sidecar.yaml", "cgroupfs")
}

func TestNativeSidecar(t *testing.T) {
	needCluster(t)
	t.Parallel()
	sidecarStory(t, "oomhero-native", "native-sidecar.yaml", "cgroupfs")
	// A native sidecar is an init container that keeps running.
	out := mustKubectl(t, "get", "pod", "oomhero-native", "-o", `jsonpath={.status.initContainerStatuses[?(@.name=="oomhero")].state.running}`)
	if out == "" {
		t.Error("the native sidecar is not running as an init container")
	}
}

func TestBPFSidecar(t *testing.T) {
	needCluster(t)
	t.Parallel()
	sidecarStory(t, "oomhero-bpf", "sidecar-bpf.yaml", "bpf")
}

// TestManifestsServerSide validates every manifest on the API server
// (strict field validation) and builds the kustomization.
func TestManifestsServerSide(t *testing.T) {
	needCluster(t)
	// The pods name the service account of rbac.yaml: it must exist.
	mustKubectl(t, "apply", "--validate=strict", "-f", filepath.Join(deployDir, "rbac.yaml"))
	files, _ := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		mustKubectl(t, "apply", "--dry-run=server", "--validate=strict", "-f", f)
	}
	out := mustKubectl(t, "kustomize", deployDir)
	if !strings.Contains(out, "name: oomhero-sidecar") || !strings.Contains(out, "kind: RoleBinding") {
		t.Errorf("kustomize output lacks the sidecar pod or RBAC:\n%s", out)
	}
}

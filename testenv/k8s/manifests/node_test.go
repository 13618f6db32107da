package manifests

// The node agent (deploy/node, `kubectl kustomize`) and the Helm chart
// (deploy/helm/oomhero, `helm template` in both modes and with several value
// sets): every rendered object decodes strictly, and the DaemonSet holds what
// the node agent needs and nothing more.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const (
	nodeDir   = deployDir + "/node"
	chartDir  = deployDir + "/helm/oomhero"
	readme    = "../../../README.md"
	clusterGo = "../cluster/go.mod"
)

// nodeCaps are the node agent's capabilities, each for a reason written in
// deploy/node/daemonset.yaml and README.md ("Sidecar or node agent"):
// SYS_PTRACE and DAC_READ_SEARCH read other users' /proc/<pid>/environ (the
// declarations), KILL signals other users' processes, BPF and PERFMON load
// the tracing program.
var nodeCaps = []corev1.Capability{"SYS_PTRACE", "DAC_READ_SEARCH", "KILL", "BPF", "PERFMON"}

// serviceMonitor holds the fields of prometheus-operator's ServiceMonitor
// (monitoring.coreos.com/v1, pkg/apis/monitoring/v1/servicemonitor_types.go:
// ServiceMonitorSpec, NamespaceSelector, Endpoint) that the chart writes; a
// field the chart adds beyond these fails the strict decode.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// missing fails under CI=true (every suite must run there) and skips
// otherwise.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format+" (skipped; fails under CI=true)", args...)
}

// clusterVersion is the Kubernetes version the cluster tests build
// (k8s.io/kubernetes in testenv/k8s/cluster/go.mod).
func clusterVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(clusterGo)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) >= 2 && f[0] == "k8s.io/kubernetes" && strings.HasPrefix(f[1], "v") {
			return f[1]
		}
	}
	t.Fatalf("%s: no k8s.io/kubernetes requirement", clusterGo)
	return ""
}

// kubectl finds a kubectl for `kubectl kustomize`: $KUBECTL, else the one
// testenv/k8s/scripts/build.sh built (the cluster's version), else one on
// PATH. sigs.k8s.io/kustomize/api is not a dependency of this module, so
// there is no in-process fallback.
func kubectl(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KUBECTL"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			missing(t, "KUBECTL=%s: %v", p, err)
		}
		return p
	}
	cached := filepath.Join("..", ".cache", clusterVersion(t), "bin", "kubectl")
	if _, err := exec.LookPath(cached); err == nil {
		return cached
	}
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	missing(t, "no kubectl: not in %s (testenv/k8s/scripts/build.sh builds it) nor on PATH", cached)
	return ""
}

// helm finds helm: $HELM (make test-unit and test-k8s pass the pinned
// bin/helm-<version>/helm), else the pinned one in the repository's bin/
// (make helm), else one on PATH.
func helm(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HELM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			missing(t, "HELM=%s: %v (make helm builds it; testenv/install-deps runs make helm)", p, err)
		}
		return p
	}
	if pinned, _ := filepath.Glob("../../../bin/helm-*/helm"); len(pinned) > 0 {
		if p, err := filepath.Abs(pinned[len(pinned)-1]); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	missing(t, "no helm: HELM unset and none on PATH (make helm builds the pinned one into bin/)")
	return ""
}

// run runs a tool and returns its standard output; on failure the error
// carries its standard error.
func run(t *testing.T, name string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	home := t.TempDir() // helm's cache, config and data stay out of $HOME
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config",
		"HELM_DATA_HOME="+home+"/data", "KUBECONFIG="+home+"/none")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %v: %s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// helmTemplate renders the chart with values (YAML, may be empty) into
// namespace oomhero-system.
func helmTemplate(t *testing.T, values string) ([]byte, error) {
	t.Helper()
	h := helm(t)
	args := []string{"template", "oomhero", chartDir, "--namespace", "oomhero-system", "--kube-version", clusterVersion(t)}
	if values != "" {
		// Not in t.TempDir(): helm splits -f at commas, which subtest names hold.
		dir, err := os.MkdirTemp("", "oomhero-values")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		f := filepath.Join(dir, "values.yaml")
		if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-f", f)
	}
	return run(t, h, args...)
}

func of[T any](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func only[T any](t *testing.T, objs []object) T {
	t.Helper()
	all := of[T](objs)
	if len(all) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T, want 1", len(all), zero)
	}
	return all[0]
}

func kinds(objs []object) []string {
	var k []string
	for _, o := range objs {
		k = append(k, o.kind)
	}
	slices.Sort(k)
	return k
}

func sortedCaps(c []corev1.Capability) []corev1.Capability {
	c = slices.Clone(c)
	slices.Sort(c)
	return c
}

func argValue(args []string, flag string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

func fromField(t *testing.T, c *corev1.Container, want map[string]string) {
	t.Helper()
	e := env(c)
	for name, path := range want {
		v := e[name].ValueFrom
		if v == nil || v.FieldRef == nil || v.FieldRef.FieldPath != path {
			t.Errorf("env %s not from the Downward API %s", name, path)
		}
	}
}

// checkProbes: liveness on /healthz and readiness on /readyz, both
// `oomhero probe` on the health socket, which lies in an emptyDir only
// oomhero's container mounts, writable.
func checkProbes(t *testing.T, c *corev1.Container, volumes []corev1.Volume) {
	t.Helper()
	socket, _ := argValue(c.Args, "--health-socket")
	inEmptyDir := false
	for _, m := range c.VolumeMounts {
		if socket != "" && strings.HasPrefix(socket, strings.TrimSuffix(m.MountPath, "/")+"/") && !m.ReadOnly {
			for _, v := range volumes {
				inEmptyDir = inEmptyDir || (v.Name == m.Name && v.EmptyDir != nil)
			}
		}
	}
	if !inEmptyDir {
		t.Errorf("--health-socket %q not in an emptyDir mounted writable", socket)
	}
	for what, pr := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if pr == nil || pr.Exec == nil || !slices.Equal(pr.Exec.Command, []string{"/oomhero", "probe", socket, what}) {
			t.Errorf("probe for %s %+v, want exec /oomhero probe %s %s", what, pr, socket, what)
		} else if pr.TimeoutSeconds < 3 {
			t.Errorf("probe for %s: timeoutSeconds %d: oomhero probe may take 2 s", what, pr.TimeoutSeconds)
		}
	}
}

func checkMetricsPort(t *testing.T, c *corev1.Container, annotations map[string]string) {
	t.Helper()
	listen, _ := argValue(c.Args, "--listen")
	_, port, _ := strings.Cut(listen, ":")
	var metricsPort int32
	for _, cp := range c.Ports {
		if cp.Name == "metrics" {
			metricsPort = cp.ContainerPort
		}
	}
	if port == "" || fmt.Sprint(metricsPort) != port {
		t.Errorf("--listen port %q and containerPort metrics %d differ", port, metricsPort)
	}
	if annotations["prometheus.io/port"] != port {
		t.Errorf("prometheus.io/port %q, want %q", annotations["prometheus.io/port"], port)
	}
}

func checkContainerSecurity(t *testing.T, c *corev1.Container, wantCaps []corev1.Capability) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("oomhero: no securityContext capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("oomhero privileged: the capabilities are enough")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("oomhero: readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("oomhero: allowPrivilegeEscalation is not false")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	if got, want := sortedCaps(sc.Capabilities.Add), sortedCaps(wantCaps); !slices.Equal(got, want) {
		t.Errorf("capabilities %v, want exactly %v", got, want)
	}
}

// checkNodeAgent checks the DaemonSet and its RBAC among objs.
func checkNodeAgent(t *testing.T, objs []object, wantCaps []corev1.Capability) *appsv1.DaemonSet {
	t.Helper()
	ds := only[*appsv1.DaemonSet](t, objs)
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		t.Errorf("selector %v (%v) does not match the pod template's labels %v", ds.Spec.Selector, err, ds.Spec.Template.Labels)
	}
	if u := ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil || u.RollingUpdate.MaxUnavailable == nil {
		t.Errorf("updateStrategy %+v, want RollingUpdate with maxUnavailable", u)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID is not true: the node agent must see every container's processes")
	}
	if spec.HostNetwork || spec.HostIPC {
		t.Errorf("hostNetwork %v hostIPC %v: not needed", spec.HostNetwork, spec.HostIPC)
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q, want system-node-critical", spec.PriorityClassName)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g <= 0 || *g > 60 {
		t.Errorf("terminationGracePeriodSeconds %v, want set, 1..60", g)
	}
	tolerateAll := false
	for _, tol := range spec.Tolerations {
		tolerateAll = tolerateAll || (tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == "")
	}
	if !tolerateAll {
		t.Errorf("tolerations %+v: none tolerates every taint (operator Exists, no key, no effect)", spec.Tolerations)
	}
	if spec.SecurityContext == nil || spec.SecurityContext.SeccompProfile == nil || spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccomp profile is not RuntimeDefault")
	}
	if len(spec.Containers) != 1 || spec.Containers[0].Name != "oomhero" || len(spec.InitContainers) != 0 {
		t.Fatalf("containers %d (init %d), want oomhero alone", len(spec.Containers), len(spec.InitContainers))
	}
	c := &spec.Containers[0]
	// /oomhero-node: the image's build with the Kubernetes API client (the
	// entrypoint, /oomhero, is built without it: see Dockerfile).
	if len(c.Args) == 0 || c.Args[0] != "node" || !slices.Equal(c.Command, []string{"/oomhero-node"}) {
		t.Errorf("command %v args %v, want /oomhero-node with args starting with node", c.Command, c.Args)
	}
	if v, ok := argValue(c.Args, "--cgroup-root"); ok && v != "/host/sys/fs/cgroup" {
		t.Errorf("--cgroup-root=%s, but the node's cgroupfs is mounted at /host/sys/fs/cgroup", v)
	}
	if v, ok := argValue(c.Args, "--proc"); ok && v != "/proc" {
		t.Errorf("--proc=%s, want /proc (hostPID)", v)
	}
	fromField(t, c, map[string]string{"NODE_NAME": "spec.nodeName", "POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"})

	// The node's cgroupfs, read-only, and no other hostPath.
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	if len(hostPaths) != 1 {
		t.Errorf("hostPath volumes %v, want /sys/fs/cgroup alone", hostPaths)
	}
	cgroupMounted := false
	for _, m := range c.VolumeMounts {
		p, ok := hostPaths[m.Name]
		if !ok {
			continue
		}
		if !m.ReadOnly {
			t.Errorf("hostPath %s mounted writable at %s", p, m.MountPath)
		}
		if p == "/sys/fs/cgroup" && m.MountPath == "/host/sys/fs/cgroup" && m.ReadOnly {
			cgroupMounted = true
			if m.RecursiveReadOnly == nil || *m.RecursiveReadOnly == corev1.RecursiveReadOnlyDisabled {
				t.Errorf("cgroupfs mount recursiveReadOnly %v: the v1 hierarchies below /sys/fs/cgroup would stay writable", m.RecursiveReadOnly)
			}
			if m.MountPropagation != nil && *m.MountPropagation != corev1.MountPropagationNone {
				t.Errorf("cgroupfs mount propagation %s, want None", *m.MountPropagation)
			}
		}
	}
	if !cgroupMounted {
		t.Error("hostPath /sys/fs/cgroup not mounted read-only at /host/sys/fs/cgroup")
	}
	checkContainerSecurity(t, c, wantCaps)
	checkProbes(t, c, spec.Volumes)
	checkMetricsPort(t, c, ds.Spec.Template.Annotations)

	lim, req := c.Resources.Limits, c.Resources.Requests
	if got := lim.Memory(); got.Cmp(resource.MustParse("128Mi")) != 0 {
		t.Errorf("memory limit %s, want 128Mi", got)
	}
	if req.Memory().IsZero() || req.Cpu().IsZero() || req.Memory().Cmp(*lim.Memory()) > 0 {
		t.Errorf("requests %v: want small cpu and memory requests within the limit", req)
	}
	if _, ok := lim[corev1.ResourceCPU]; ok {
		t.Error("a CPU limit: throttling would delay signals")
	}

	// RBAC: list/watch pods, post Events, for the DaemonSet's service account.
	sa := only[*corev1.ServiceAccount](t, objs)
	if spec.ServiceAccountName != sa.Name || sa.Namespace != ds.Namespace {
		t.Errorf("serviceAccountName %q, service account %s/%s, DaemonSet in %s", spec.ServiceAccountName, sa.Namespace, sa.Name, ds.Namespace)
	}
	cr := only[*rbacv1.ClusterRole](t, objs)
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
	if !equality.Semantic.DeepEqual(cr.Rules, want) {
		t.Errorf("ClusterRole rules %+v, want exactly %+v", cr.Rules, want)
	}
	crb := only[*rbacv1.ClusterRoleBinding](t, objs)
	if crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != cr.Name || len(crb.Subjects) != 1 ||
		crb.Subjects[0].Kind != "ServiceAccount" || crb.Subjects[0].Name != sa.Name || crb.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("ClusterRoleBinding %+v does not bind %s to %s/%s", crb, cr.Name, sa.Namespace, sa.Name)
	}
	if len(of[*rbacv1.Role](objs)) != 0 || len(of[*corev1.Pod](objs)) != 0 {
		t.Error("node mode renders a Role or a Pod")
	}
	return ds
}

func TestNodeKustomize(t *testing.T) {
	// The sources decode strictly too, and the kustomization lists them all.
	var k *kustomization
	for _, f := range []string{"namespace.yaml", "rbac.yaml", "daemonset.yaml", "kustomization.yaml"} {
		objs := decodeFile(t, filepath.Join(nodeDir, f))
		if len(objs) == 0 {
			t.Errorf("deploy/node/%s is empty", f)
		}
		for _, o := range objs {
			if v, ok := o.obj.(*kustomization); ok {
				k = v
			}
		}
	}
	if k == nil || !slices.Equal(slices.Sorted(slices.Values(k.Resources)), []string{"daemonset.yaml", "namespace.yaml", "rbac.yaml"}) {
		t.Errorf("deploy/node/kustomization.yaml resources %v, want daemonset.yaml, namespace.yaml, rbac.yaml", k)
	}

	kc := kubectl(t)
	if v, err := run(t, kc, "version", "--client"); err == nil {
		t.Logf("%s: %s", kc, strings.Join(strings.Fields(string(v)), " "))
	}
	out, err := run(t, kc, "kustomize", nodeDir)
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeStream(t, "kubectl kustomize deploy/node", bytes.NewReader(out))
	if got := kinds(objs); !slices.Equal(got, []string{"ClusterRole", "ClusterRoleBinding", "DaemonSet", "Namespace", "ServiceAccount"}) {
		t.Errorf("kinds %v", got)
	}
	ds := checkNodeAgent(t, objs, nodeCaps)
	ns := only[*corev1.Namespace](t, objs)
	if ns.Name != "oomhero-system" || ds.Namespace != ns.Name {
		t.Errorf("namespace %s, DaemonSet in %s, want oomhero-system", ns.Name, ds.Namespace)
	}
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace labels %v: hostPID, a hostPath and these capabilities need Pod Security level privileged", ns.Labels)
	}
	if img := ds.Spec.Template.Spec.Containers[0].Image; img != "localhost/oomhero:dev" {
		t.Errorf("image %s, want localhost/oomhero:dev", img)
	}
	for _, o := range objs {
		if m, err := metaOf(o.obj); err != nil || m.GetLabels()["app.kubernetes.io/part-of"] != "oomhero" {
			t.Errorf("%s: label app.kubernetes.io/part-of not oomhero (%v)", o.kind, err)
		}
	}
}

func metaOf(obj any) (metav1.Object, error) {
	if m, ok := obj.(metav1.Object); ok {
		return m, nil
	}
	return nil, errors.New("no object metadata")
}

func TestHelmNode(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		caps         []corev1.Capability
		monitor      bool
	}{
		{name: "defaults", caps: nodeCaps},
		{name: "serviceMonitor", caps: nodeCaps, monitor: true, values: `
serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}
podAnnotations: {example.com/team: infra}
nodeSelector: {kubernetes.io/os: linux}
thresholds: {warning: 60, critical: 85}
signals: {warning: usr1, critical: RTMIN+2}
optIn: all
extraArgs: ["--log-format=json"]
`},
		{name: "cgroupfs", caps: []corev1.Capability{"SYS_PTRACE", "DAC_READ_SEARCH", "KILL", "SYS_RESOURCE"}, values: `
source: cgroupfs
extraCapabilities: [SYS_RESOURCE]
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helmTemplate(t, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeStream(t, "helm template ("+tc.name+")", bytes.NewReader(out))
			ds := checkNodeAgent(t, objs, tc.caps)
			if ds.Namespace != "oomhero-system" {
				t.Errorf("DaemonSet in %q, want the release's namespace", ds.Namespace)
			}
			c := ds.Spec.Template.Spec.Containers[0]
			var vals struct {
				Thresholds struct{ Warning, Critical int }
				Signals    struct{ Warning, Critical string }
				OptIn      string `json:"optIn"`
				ExtraArgs  []string
			}
			vals.Thresholds.Warning, vals.Thresholds.Critical = 75, 90
			vals.Signals.Warning, vals.Signals.Critical = "SIGUSR1", "SIGUSR2"
			if err := yaml.Unmarshal([]byte(tc.values), &vals); err != nil {
				t.Fatal(err)
			}
			for flag, want := range map[string]string{"--warning": fmt.Sprint(vals.Thresholds.Warning), "--critical": fmt.Sprint(vals.Thresholds.Critical),
				"--warning-signal": vals.Signals.Warning, "--critical-signal": vals.Signals.Critical} {
				if got, _ := argValue(c.Args, flag); got != want {
					t.Errorf("%s=%q, want %q from the values", flag, got, want)
				}
			}
			if got, ok := argValue(c.Args, "--opt-in"); got != vals.OptIn || ok != (vals.OptIn != "") {
				t.Errorf("--opt-in=%q (set %v), want %q", got, ok, vals.OptIn)
			}
			for _, a := range vals.ExtraArgs {
				if !slices.Contains(c.Args, a) {
					t.Errorf("extra arg %s not in %v", a, c.Args)
				}
			}
			svcs, sms := of[*corev1.Service](objs), of[*serviceMonitor](objs)
			if !tc.monitor {
				if len(svcs)+len(sms) != 0 {
					t.Errorf("%d Services, %d ServiceMonitors without serviceMonitor.enabled", len(svcs), len(sms))
				}
				return
			}
			if ds.Spec.Template.Annotations["example.com/team"] != "infra" || ds.Spec.Template.Spec.NodeSelector["kubernetes.io/os"] != "linux" {
				t.Errorf("podAnnotations %v / nodeSelector %v not rendered", ds.Spec.Template.Annotations, ds.Spec.Template.Spec.NodeSelector)
			}
			svc, sm := only[*corev1.Service](t, objs), only[*serviceMonitor](t, objs)
			if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(ds.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
				t.Errorf("Service selector %v does not select the agents %v", svc.Spec.Selector, ds.Spec.Template.Labels)
			}
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
				t.Errorf("Service ports %+v, want metrics -> metrics", svc.Spec.Ports)
			}
			smSel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
			if err != nil || smSel.Empty() || !smSel.Matches(labels.Set(svc.Labels)) {
				t.Errorf("ServiceMonitor selector %v does not select the Service's labels %v", sm.Spec.Selector, svc.Labels)
			}
			if sm.Metadata.Labels["release"] != "prom" || !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{"oomhero-system"}) {
				t.Errorf("ServiceMonitor labels %v namespaces %v", sm.Metadata.Labels, sm.Spec.NamespaceSelector.MatchNames)
			}
			if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" || sm.Spec.Endpoints[0].Interval != "15s" {
				t.Errorf("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
			}
		})
	}
}

func TestHelmSidecar(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		caps         []corev1.Capability
		example      bool
	}{
		{name: "cgroupfs", caps: []corev1.Capability{"SYS_PTRACE", "KILL"}, example: true, values: `
mode: sidecar
sidecar: {examplePod: {enabled: true}}
`},
		{name: "bpf", caps: []corev1.Capability{"BPF", "PERFMON", "SYS_PTRACE", "KILL"}, values: `
mode: sidecar
source: bpf
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helmTemplate(t, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			objs := decodeStream(t, "helm template ("+tc.name+")", bytes.NewReader(out))
			if n := len(of[*appsv1.DaemonSet](objs)) + len(of[*rbacv1.ClusterRole](objs)) + len(of[*rbacv1.ClusterRoleBinding](objs)); n != 0 {
				t.Errorf("sidecar mode renders %d DaemonSets or cluster-wide RBAC objects", n)
			}
			sa, role, rb := only[*corev1.ServiceAccount](t, objs), only[*rbacv1.Role](t, objs), only[*rbacv1.RoleBinding](t, objs)
			if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Resources, []string{"events"}) || !slices.Equal(role.Rules[0].Verbs, []string{"create"}) {
				t.Errorf("Role rules %+v, want exactly create on core events", role.Rules)
			}
			if rb.RoleRef.Name != role.Name || len(rb.Subjects) != 1 || rb.Subjects[0].Name != sa.Name || rb.Subjects[0].Namespace != sa.Namespace {
				t.Errorf("RoleBinding %+v does not bind %s to %s", rb, role.Name, sa.Name)
			}

			// The snippet: container.yaml and pod.yaml decode strictly, and
			// the pod they make is as hardened as deploy/sidecar.yaml.
			cm := only[*corev1.ConfigMap](t, objs)
			var c corev1.Container
			var spec corev1.PodSpec
			if err := strictUnmarshal([]byte(cm.Data["container.yaml"]), &c); err != nil || c.Name != "oomhero" {
				t.Fatalf("ConfigMap %s container.yaml: %v (name %q)", cm.Name, err, c.Name)
			}
			if err := strictUnmarshal([]byte(cm.Data["pod.yaml"]), &spec); err != nil {
				t.Fatalf("ConfigMap %s pod.yaml: %v", cm.Name, err)
			}
			if spec.ShareProcessNamespace == nil || !*spec.ShareProcessNamespace || spec.ServiceAccountName != sa.Name {
				t.Errorf("pod.yaml: shareProcessNamespace %v serviceAccountName %q (want true, %s)", spec.ShareProcessNamespace, spec.ServiceAccountName, sa.Name)
			}
			if slices.Contains(c.Args, "node") {
				t.Errorf("sidecar args %v contain node", c.Args)
			}
			fromField(t, &c, map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_UID": "metadata.uid", "NODE_NAME": "spec.nodeName"})
			checkContainerSecurity(t, &c, tc.caps)
			checkProbes(t, &c, spec.Volumes)
			if c.Resources.Limits.Memory().IsZero() {
				t.Error("no memory limit")
			}
			snippetPod := &corev1.Pod{Spec: *spec.DeepCopy()}
			snippetPod.Spec.Containers = []corev1.Container{c}
			hardened(t, snippetPod, "oomhero", false)

			pods := of[*corev1.Pod](objs)
			if len(pods) != map[bool]int{true: 1, false: 0}[tc.example] {
				t.Fatalf("%d example pods", len(pods))
			}
			for _, p := range pods {
				o, _ := oomheroContainer(t, p)
				if !equality.Semantic.DeepEqual(*o, c) {
					t.Error("the example pod's oomhero container differs from container.yaml")
				}
				exampleSpec := p.Spec.DeepCopy()
				exampleSpec.Containers = nil
				if !equality.Semantic.DeepEqual(*exampleSpec, spec) {
					t.Error("the example pod's spec (without containers) differs from pod.yaml")
				}
				checkMetricsPort(t, o, p.Annotations)
				hardened(t, p, "oomhero", false)
			}
		})
	}
}

// TestHelmSchemaRejects: values.schema.json (and the chart's own checks)
// refuse bad values: helm template fails and names what is wrong.
func TestHelmSchemaRejects(t *testing.T) {
	for _, tc := range []struct{ values, want string }{
		{"thresholds: {warning: 150, critical: 160}", "/thresholds/warning"},
		{"thresholds: {warning: 0, critical: 90}", "/thresholds/warning"},
		{"thresholds: {warning: 95, critical: 90}", "above thresholds.critical"},
		{"thresholds: {warnign: 60}", "warnign"},
		{"mode: bogus", "/mode"},
		{"source: ebpf", "/source"},
		{"optIn: some", "/optIn"},
		{"signals: {warning: SIG USR1}", "/signals/warning"},
		{"cooldown: 1 minute", "/cooldown"},
		{"extraArgs: [node]", "/extraArgs/0"},
		{"extraCapabilities: [cap_sys_admin]", "/extraCapabilities/0"},
		{"resources: {limits: {memory: lots}}", "/resources/limits/memory"},
		{"tolerations: [{operator: Exist}]", "/tolerations/0/operator"},
		{"image: {tag: \"\"}", "/image/tag"},
		{"{mode: sidecar, serviceMonitor: {enabled: true}}", "serviceMonitor.enabled is for mode node"},
	} {
		t.Run(tc.values, func(t *testing.T) {
			out, err := helmTemplate(t, tc.values)
			if err == nil {
				t.Fatalf("helm template accepted %q:\n%.300s", tc.values, out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to name %q", err, tc.want)
			}
		})
	}
}

// TestNodeCapabilitiesDocumented: each capability of the node agent has its
// reason in the DaemonSet's header and a row in the README's "Sidecar or node
// agent" section.
func TestNodeCapabilitiesDocumented(t *testing.T) {
	ds, err := os.ReadFile(filepath.Join(nodeDir, "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rd, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(rd), "\n## Sidecar or node agent\n")
	if !ok {
		t.Fatal("README.md has no section \"## Sidecar or node agent\"")
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	for _, c := range nodeCaps {
		if !hasLinePrefix(string(ds), "#   "+string(c)) && !strings.Contains(string(ds), ", "+string(c)+" ") {
			t.Errorf("deploy/node/daemonset.yaml's header gives no reason for %s", c)
		}
		if !strings.Contains(section, "| `"+string(c)+"` |") {
			t.Errorf("README \"Sidecar or node agent\" has no row for `%s`", c)
		}
	}
}

// hasLinePrefix reports whether a line of s starts with prefix.
func hasLinePrefix(s, prefix string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

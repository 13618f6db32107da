// Package manifests checks deploy/: every manifest decodes strictly (unknown
// or misspelt fields fail) into the k8s.io/api types of the Kubernetes
// version the cluster tests run, and says what oomhero needs.
package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const deployDir = "../../../deploy"

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// kustomization holds the fields deploy/kustomization.yaml may use.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
}

// object is one decoded manifest document.
type object struct {
	file string
	kind string
	obj  any
}

func decodeFile(t *testing.T, path string) []object {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return decodeStream(t, path, f)
}

// decodeStream decodes every document of a YAML stream strictly into the
// type of its apiVersion and kind; path names the stream in failures.
func decodeStream(t *testing.T, path string, in io.Reader) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(in))
	var out []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm typeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/Pod":
			obj = &corev1.Pod{}
		case "v1/ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "rbac.authorization.k8s.io/v1/Role":
			obj = &rbacv1.Role{}
		case "rbac.authorization.k8s.io/v1/RoleBinding":
			obj = &rbacv1.RoleBinding{}
		case "kustomize.config.k8s.io/v1beta1/Kustomization":
			obj = &kustomization{}
		case "v1/Namespace":
			obj = &corev1.Namespace{}
		case "v1/ConfigMap":
			obj = &corev1.ConfigMap{}
		case "v1/Service":
			obj = &corev1.Service{}
		case "apps/v1/DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "rbac.authorization.k8s.io/v1/ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "monitoring.coreos.com/v1/ServiceMonitor":
			obj = &serviceMonitor{}
		default:
			t.Fatalf("%s: unexpected %s %s", path, tm.APIVersion, tm.Kind)
		}
		if err := strictUnmarshal(doc, obj); err != nil {
			t.Fatalf("%s: strict decode of %s: %v", path, tm.Kind, err)
		}
		out = append(out, object{file: filepath.Base(path), kind: tm.Kind, obj: obj})
	}
	return out
}

// strictUnmarshal decodes one YAML document as the API server's strict
// field validation does: field names match case-sensitively (encoding/json,
// and so yaml.UnmarshalStrict, would take hostPid for hostPID, which the API
// server drops as unknown), and unknown or duplicate fields fail.
func strictUnmarshal(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
			out = append(out, '\n')
		}
	}
	return out
}

func all(t *testing.T) map[string][]object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", deployDir, err)
	}
	m := map[string][]object{}
	for _, f := range files {
		m[filepath.Base(f)] = decodeFile(t, f)
	}
	return m
}

func pod(t *testing.T, objs map[string][]object, file string) *corev1.Pod {
	t.Helper()
	for _, o := range objs[file] {
		if p, ok := o.obj.(*corev1.Pod); ok {
			return p
		}
	}
	t.Fatalf("%s: no Pod", file)
	return nil
}

// oomheroContainer returns the oomhero container (or native sidecar) and
// whether it is an init container.
func oomheroContainer(t *testing.T, p *corev1.Pod) (*corev1.Container, bool) {
	t.Helper()
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == "oomhero" {
			return &p.Spec.Containers[i], false
		}
	}
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == "oomhero" {
			return &p.Spec.InitContainers[i], true
		}
	}
	t.Fatalf("pod %s has no oomhero container", p.Name)
	return nil, false
}

func env(c *corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

func TestEveryManifestDecodesStrictly(t *testing.T) {
	objs := all(t)
	for _, f := range []string{"pod.yaml", "sidecar.yaml", "native-sidecar.yaml", "sidecar-bpf.yaml", "sidecar-nonroot.yaml", "rbac.yaml", "kustomization.yaml"} {
		if len(objs[f]) == 0 {
			t.Errorf("deploy/%s missing or empty", f)
		}
	}
}

func TestStrictDecodeRejectsUnknownFields(t *testing.T) {
	// The check above must be able to fail.
	for _, field := range []string{"shareProcesNamespace", "hostPid", "hostPID: true\n  hostPID"} {
		bad := []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  " + field + ": true\n  containers: []\n")
		if err := strictUnmarshal(bad, &corev1.Pod{}); err == nil || !strings.Contains(err.Error(), strings.Fields(field)[0]) && !strings.Contains(err.Error(), "already") {
			t.Errorf("%q accepted: %v", field, err)
		}
	}
}

func TestSeedPod(t *testing.T) {
	p := pod(t, all(t), "pod.yaml")
	if p.Name != "oomhero" || p.Spec.ShareProcessNamespace == nil || !*p.Spec.ShareProcessNamespace {
		t.Errorf("seed pod: name %q shareProcessNamespace %v", p.Name, p.Spec.ShareProcessNamespace)
	}
	var names []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"bloat", "oomhero"}) {
		t.Errorf("containers %v, want the seed's [bloat oomhero]", names)
	}
	bloat := p.Spec.Containers[0]
	if lim := bloat.Resources.Limits.Memory().String(); lim != "256Mi" {
		t.Errorf("bloat memory limit %s, want the seed's 256Mi", lim)
	}
	if pr := bloat.LivenessProbe; pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/healthz" || pr.HTTPGet.Port != intstr.FromInt32(8080) {
		t.Errorf("bloat liveness probe %+v, want the seed's GET /healthz on 8080", pr)
	}
	o, _ := oomheroContainer(t, p)
	e := env(o)
	if e["WARNING"].Value != "65" || e["CRITICAL"].Value != "90" {
		t.Errorf("oomhero env %v, want the seed's WARNING=65 CRITICAL=90", o.Env)
	}
	if o.SecurityContext == nil || o.SecurityContext.Privileged == nil || !*o.SecurityContext.Privileged {
		t.Error("oomhero is not privileged as in the seed")
	}
	// Kept as the seed's example, and said so where a reader looks first.
	b, err := os.ReadFile(filepath.Join(deployDir, "pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "# The seed's example Pod") || !strings.Contains(string(b), "NOT the recommended") {
		t.Error("pod.yaml's header does not mark it as the seed's example, not the recommended setup")
	}
}

func TestSidecars(t *testing.T) {
	objs := all(t)
	// The least each variant needs, as measured (README, "Privileges").
	caps := map[string][]corev1.Capability{
		"sidecar.yaml":         {"SYS_PTRACE", "KILL"},
		"native-sidecar.yaml":  {"SYS_PTRACE", "KILL"},
		"sidecar-bpf.yaml":     {"BPF", "PERFMON", "SYS_PTRACE", "KILL"},
		"sidecar-nonroot.yaml": nil,
	}
	for file, wantCaps := range caps {
		t.Run(file, func(t *testing.T) {
			p := pod(t, objs, file)
			if p.Spec.ShareProcessNamespace == nil || !*p.Spec.ShareProcessNamespace {
				t.Error("shareProcessNamespace is not true")
			}
			if p.Spec.ServiceAccountName != "oomhero" {
				t.Errorf("serviceAccountName %q, want oomhero (rbac.yaml)", p.Spec.ServiceAccountName)
			}
			o, isInit := oomheroContainer(t, p)
			if native := file == "native-sidecar.yaml"; native != isInit {
				t.Errorf("oomhero init container: %v", isInit)
			}
			if isInit && (o.RestartPolicy == nil || *o.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				t.Error("native sidecar without restartPolicy Always")
			}
			e := env(o)
			for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_UID": "metadata.uid", "NODE_NAME": "spec.nodeName"} {
				v := e[name].ValueFrom
				if v == nil || v.FieldRef == nil || v.FieldRef.FieldPath != path {
					t.Errorf("env %s not from the Downward API %s", name, path)
				}
			}
			port := ""
			for _, a := range o.Args {
				if v, ok := strings.CutPrefix(a, "--listen="); ok {
					_, port, _ = strings.Cut(v, ":")
				}
			}
			var metricsPort int32
			for _, cp := range o.Ports {
				if cp.Name == "metrics" {
					metricsPort = cp.ContainerPort
				}
			}
			if port == "" || fmt.Sprint(metricsPort) != port {
				t.Errorf("--listen port %q and containerPort metrics %d differ", port, metricsPort)
			}
			if p.Annotations["prometheus.io/port"] != port {
				t.Errorf("prometheus.io/port %q, want %q", p.Annotations["prometheus.io/port"], port)
			}
			if pr := o.ReadinessProbe; pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/readyz" || pr.HTTPGet.Port != intstr.FromString("metrics") {
				t.Errorf("readiness probe %+v, want GET /readyz on port metrics", pr)
			}
			// Liveness (and startup) through the health socket: a container
			// of the pod may hold the port (shared network namespace).
			socket := ""
			for _, a := range o.Args {
				if v, ok := strings.CutPrefix(a, "--health-socket="); ok {
					socket = v
				}
			}
			mounted := false
			for _, m := range o.VolumeMounts {
				if socket != "" && strings.HasPrefix(socket, strings.TrimSuffix(m.MountPath, "/")+"/") && !m.ReadOnly {
					for _, v := range p.Spec.Volumes {
						mounted = mounted || (v.Name == m.Name && v.EmptyDir != nil)
					}
					for _, c := range append(slices.Clone(p.Spec.Containers), p.Spec.InitContainers...) {
						for _, cm := range c.VolumeMounts {
							if c.Name != o.Name && cm.Name == m.Name {
								t.Errorf("container %s mounts the health socket's volume %s too", c.Name, m.Name)
							}
						}
					}
				}
			}
			if !mounted {
				t.Errorf("--health-socket %q not in an emptyDir mounted writable in oomhero's container", socket)
			}
			probes := map[string]*corev1.Probe{"liveness": o.LivenessProbe}
			if o.StartupProbe != nil {
				probes["startup"] = o.StartupProbe
			}
			for what, pr := range probes {
				if pr == nil || pr.Exec == nil || !slices.Equal(pr.Exec.Command, []string{"/oomhero", "probe", socket, "/healthz"}) {
					t.Errorf("%s probe %+v, want exec /oomhero probe %s /healthz", what, pr, socket)
				} else if pr.TimeoutSeconds < 3 {
					t.Errorf("%s probe timeoutSeconds %d: oomhero probe may take 2 s", what, pr.TimeoutSeconds)
				}
			}
			sc := o.SecurityContext
			if sc == nil || sc.Capabilities == nil {
				t.Fatal("no capabilities")
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Error("privileged: the capabilities are enough")
			}
			if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("drop %v, want [ALL]", sc.Capabilities.Drop)
			}
			got := slices.Clone(sc.Capabilities.Add)
			slices.Sort(got)
			slices.Sort(wantCaps)
			if !slices.Equal(got, wantCaps) {
				t.Errorf("capabilities %v, want %v", got, wantCaps)
			}
			if o.Resources.Limits.Memory().IsZero() {
				t.Error("oomhero has no memory limit")
			}
			hardened(t, p, o.Name, file == "sidecar-nonroot.yaml")
		})
	}
}

func TestRBAC(t *testing.T) {
	var role *rbacv1.Role
	var binding *rbacv1.RoleBinding
	var sa *corev1.ServiceAccount
	for _, o := range all(t)["rbac.yaml"] {
		switch v := o.obj.(type) {
		case *rbacv1.Role:
			role = v
		case *rbacv1.RoleBinding:
			binding = v
		case *corev1.ServiceAccount:
			sa = v
		}
	}
	if role == nil || binding == nil || sa == nil {
		t.Fatal("rbac.yaml needs a ServiceAccount, a Role and a RoleBinding")
	}
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Resources, []string{"events"}) ||
		!slices.Equal(role.Rules[0].Verbs, []string{"create"}) || !slices.Equal(role.Rules[0].APIGroups, []string{""}) {
		t.Errorf("role rules %+v, want exactly create on core events", role.Rules)
	}
	if binding.RoleRef.Name != role.Name || binding.RoleRef.Kind != "Role" ||
		len(binding.Subjects) != 1 || binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Kind != "ServiceAccount" {
		t.Errorf("binding %+v does not bind role %s to service account %s", binding, role.Name, sa.Name)
	}
}

func TestKustomization(t *testing.T) {
	objs := all(t)
	var k *kustomization
	for _, o := range objs["kustomization.yaml"] {
		k = o.obj.(*kustomization)
	}
	if k == nil || len(k.Resources) == 0 {
		t.Fatal("kustomization without resources")
	}
	for _, r := range k.Resources {
		if len(objs[r]) == 0 {
			t.Errorf("kustomization resource %s is not a manifest in deploy/", r)
		}
	}
}

// hardened checks what every recommended pod has: seccomp RuntimeDefault,
// read-only root filesystems and no privilege escalation in every container,
// no hostPath, the service-account token mounted into oomhero's container
// alone (pod automount off, a projected token with the CA and namespace),
// and for nonRoot every container running as a non-root UID.
func hardened(t *testing.T, p *corev1.Pod, oomhero string, nonRoot bool) {
	t.Helper()
	psc := p.Spec.SecurityContext
	if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false: every container would get the token")
	}
	tokenVolume := ""
	for _, v := range p.Spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a hostPath", v.Name)
		}
		if v.Projected == nil {
			continue
		}
		var token, ca, ns bool
		for _, src := range v.Projected.Sources {
			token = token || (src.ServiceAccountToken != nil && src.ServiceAccountToken.Path == "token")
			if src.ConfigMap != nil && src.ConfigMap.Name == "kube-root-ca.crt" {
				for _, it := range src.ConfigMap.Items {
					ca = ca || (it.Key == "ca.crt" && it.Path == "ca.crt")
				}
			}
			if src.DownwardAPI != nil {
				for _, it := range src.DownwardAPI.Items {
					ns = ns || (it.Path == "namespace" && it.FieldRef != nil && it.FieldRef.FieldPath == "metadata.namespace")
				}
			}
		}
		if token {
			if !ca || !ns {
				t.Errorf("projected volume %s has the token but not ca.crt (%v) and namespace (%v)", v.Name, ca, ns)
			}
			tokenVolume = v.Name
		}
	}
	if tokenVolume == "" {
		t.Error("no projected service-account token volume (oomhero needs it for Events)")
	}
	for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s: no securityContext", c.Name)
			continue
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s: privileged", c.Name)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil && psc != nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s: seccomp profile %+v, want RuntimeDefault", c.Name, seccomp)
		}
		tokenMounted := false
		for _, m := range c.VolumeMounts {
			if m.Name == tokenVolume {
				tokenMounted = true
				if m.MountPath != "/var/run/secrets/kubernetes.io/serviceaccount" || !m.ReadOnly {
					t.Errorf("container %s: token mounted at %s (read-only %v), want read-only at the service account's path", c.Name, m.MountPath, m.ReadOnly)
				}
			}
		}
		if tokenMounted != (c.Name == oomhero) {
			t.Errorf("container %s: token mounted %v, want it in %s alone", c.Name, tokenMounted, oomhero)
		}
		if nonRoot {
			runAsNonRoot, uid := sc.RunAsNonRoot, sc.RunAsUser
			if psc != nil && runAsNonRoot == nil {
				runAsNonRoot = psc.RunAsNonRoot
			}
			if psc != nil && uid == nil {
				uid = psc.RunAsUser
			}
			if runAsNonRoot == nil || !*runAsNonRoot || uid == nil || *uid == 0 {
				t.Errorf("container %s: runAsNonRoot %v runAsUser %v, want a non-root UID", c.Name, runAsNonRoot, uid)
			}
		}
	}
	if nonRoot {
		// One UID for all: the kernel's same-UID rule is what lets oomhero in.
		uids := map[int64]bool{}
		for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
			if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
				uids[*c.SecurityContext.RunAsUser] = true
			} else if psc != nil && psc.RunAsUser != nil {
				uids[*psc.RunAsUser] = true
			}
		}
		if len(uids) != 1 {
			t.Errorf("containers run as UIDs %v, want one UID for all", uids)
		}
	}
}

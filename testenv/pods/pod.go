package pods

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
)

// EnvVar is one environment variable of a container.
type EnvVar struct{ Name, Value string }

// Probe is an HTTP GET liveness probe.
type Probe struct {
	Path             string
	Port             int
	PeriodSeconds    int
	FailureThreshold int
}

// Container is one container of a Pod.
type Container struct {
	Name  string
	Image string
	// Args replace nothing of the image's entrypoint; they are its arguments.
	Args []string
	Env  []EnvVar
	// Memory is the memory limit (and request) in Kubernetes quantity form
	// ("256Mi"); empty for no limit.
	Memory string
	// CPU is the CPU limit ("250m"); empty for none.
	CPU        string
	Privileged bool
	Liveness   *Probe
}

// Pod is a pod with a shared PID namespace (shareProcessNamespace: true).
type Pod struct {
	Name          string
	RestartPolicy string // default Never
	Containers    []Container
	Labels        map[string]string
}

// YAML renders the pod as Kubernetes Pod YAML. Strings are double-quoted
// (JSON quoting, which YAML accepts).
func (p Pod) YAML() []byte {
	var b strings.Builder
	q := strconv.Quote
	rp := p.RestartPolicy
	if rp == "" {
		rp = "Never"
	}
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n", q(p.Name))
	if len(p.Labels) > 0 {
		b.WriteString("  labels:\n")
		for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
			fmt.Fprintf(&b, "    %s: %s\n", q(k), q(p.Labels[k]))
		}
	}
	fmt.Fprintf(&b, "spec:\n  shareProcessNamespace: true\n  restartPolicy: %s\n  containers:\n", q(rp))
	for _, c := range p.Containers {
		fmt.Fprintf(&b, "    - name: %s\n      image: %s\n      imagePullPolicy: Never\n", q(c.Name), q(c.Image))
		if len(c.Args) > 0 {
			qs := make([]string, len(c.Args))
			for i, a := range c.Args {
				qs[i] = q(a)
			}
			fmt.Fprintf(&b, "      args: [%s]\n", strings.Join(qs, ", "))
		}
		if len(c.Env) > 0 {
			b.WriteString("      env:\n")
			for _, e := range c.Env {
				fmt.Fprintf(&b, "        - name: %s\n          value: %s\n", q(e.Name), q(e.Value))
			}
		}
		if c.Privileged {
			b.WriteString("      securityContext:\n        privileged: true\n")
		}
		if pr := c.Liveness; pr != nil {
			fmt.Fprintf(&b, "      livenessProbe:\n        periodSeconds: %d\n        failureThreshold: %d\n        httpGet:\n          path: %s\n          port: %d\n",
				pr.PeriodSeconds, pr.FailureThreshold, q(pr.Path), pr.Port)
		}
		if c.Memory != "" || c.CPU != "" {
			var res strings.Builder
			if c.Memory != "" {
				fmt.Fprintf(&res, "          memory: %s\n", q(c.Memory))
			}
			if c.CPU != "" {
				fmt.Fprintf(&res, "          cpu: %s\n", q(c.CPU))
			}
			fmt.Fprintf(&b, "      resources:\n        requests:\n%s        limits:\n%s", res.String(), res.String())
		}
	}
	return []byte(b.String())
}

// OomheroContainer returns the oomhero sidecar: privileged, JSON logs, the
// given environment, and --source when source is not empty.
func OomheroContainer(image, source string, env ...EnvVar) Container {
	args := []string{"--log-format=json"}
	if source != "" {
		args = append(args, "--source="+source)
	}
	return Container{Name: "oomhero", Image: image, Args: args, Env: env, Privileged: true}
}

// SourceFromEnv returns OOMHERO_E2E_SOURCE (empty: oomhero's default).
func SourceFromEnv() string { return os.Getenv("OOMHERO_E2E_SOURCE") }

package adversarial

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oomhero/oomhero/testenv/pods"
)

// HostileImage is the attacker's image, built from testenv/hostile.
const HostileImage = "localhost/oomhero-hostile:dev"

// ownerLabel is the label pods.Lab.SweepOrphans reads: pods of a test
// process that died are removed at the next start of any pod suite.
const ownerLabel = "oomhero-e2e-owner"

// Mount is a volume mounted into a container.
type Mount struct{ Volume, Path string }

// HostPath is a hostPath volume.
type HostPath struct{ Name, Path, Type string }

// Container is a pod container with volume mounts.
type Container struct {
	pods.Container
	Mounts []Mount
}

// Spec is a pod like deploy/pod.yaml: shared PID namespace, restartPolicy
// Always, hostPath volumes.
type Spec struct {
	Name       string
	Containers []Container
	Volumes    []HostPath
}

// YAML renders the pod. Strings are JSON-quoted (YAML accepts it).
func (s Spec) YAML() []byte {
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  labels:\n    %s: %s\n", q(s.Name), q(ownerLabel), q(strconv.Itoa(os.Getpid())))
	b.WriteString("spec:\n  shareProcessNamespace: true\n  restartPolicy: \"Always\"\n  containers:\n")
	for _, c := range s.Containers {
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
		if len(c.Mounts) > 0 {
			b.WriteString("      volumeMounts:\n")
			for _, m := range c.Mounts {
				fmt.Fprintf(&b, "        - name: %s\n          mountPath: %s\n", q(m.Volume), q(m.Path))
			}
		}
	}
	if len(s.Volumes) > 0 {
		b.WriteString("  volumes:\n")
		for _, v := range s.Volumes {
			fmt.Fprintf(&b, "    - name: %s\n      hostPath:\n        path: %s\n        type: %s\n", q(v.Name), q(v.Path), q(v.Type))
		}
	}
	return []byte(b.String())
}

// Pod is a pod created (not started) by Create.
type Pod struct {
	lab  *pods.Lab
	Spec Spec

	mu   sync.Mutex
	down bool
}

var (
	liveMu sync.Mutex
	live   = map[*Pod]bool{}
)

// downAll removes every pod of this process still up.
func downAll() {
	liveMu.Lock()
	ps := make([]*Pod, 0, len(live))
	for p := range live {
		ps = append(ps, p)
	}
	liveMu.Unlock()
	for _, p := range ps {
		p.Down()
	}
}

// Create writes the pod's YAML into the lab's directory and runs `podman
// kube play --start=false`: containers are created, none runs.
func Create(ctx context.Context, l *pods.Lab, s Spec) (*Pod, error) {
	path := filepath.Join(l.Dir, s.Name+".yaml")
	if err := os.WriteFile(path, s.YAML(), 0o644); err != nil {
		return nil, fmt.Errorf("create pod %s: %w", s.Name, err)
	}
	p := &Pod{lab: l, Spec: s}
	liveMu.Lock()
	live[p] = true
	liveMu.Unlock()
	if _, err := l.Podman(ctx, "kube", "play", "--start=false", path); err != nil {
		p.Down()
		return nil, fmt.Errorf("create pod %s: %w", s.Name, err)
	}
	return p, nil
}

// Name returns podman's name of container c.
func (p *Pod) Name(c string) string { return p.Spec.Name + "-" + c }

// Start starts container c (the pod's infra container first, when needed).
func (p *Pod) Start(ctx context.Context, c string) error {
	_, err := p.lab.Podman(ctx, "start", p.Name(c))
	return err
}

// Logs returns container c's log (standard output and error, in order).
func (p *Pod) Logs(ctx context.Context, c string) (string, error) {
	out, err := p.lab.PodmanCombined(ctx, "logs", p.Name(c))
	return string(out), err
}

// State is what podman tells of a container.
type State struct {
	Status   string
	ExitCode int
	Pid      int // host PID, 0 when not running
	Restarts int
	ID       string
	// Cgroup is the container's cgroup path (v1: below each controller's
	// mount), known also while it is not running: podman's cgroupfs
	// manager names it <CgroupParent>/libpod-<id>.
	Cgroup string
}

// State inspects container c.
func (p *Pod) State(ctx context.Context, c string) (State, error) {
	out, err := p.lab.Inspect(ctx, "--format",
		"{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}} {{.RestartCount}} {{.Id}} {{.HostConfig.CgroupParent}}", p.Name(c))
	if err != nil {
		return State{}, err
	}
	f := strings.Fields(string(out))
	if len(f) < 5 {
		return State{}, fmt.Errorf("inspect %s: unexpected output %q", p.Name(c), out)
	}
	s := State{Status: f[0], ID: f[4]}
	var errs []error
	for i, dst := range []*int{&s.ExitCode, &s.Pid, &s.Restarts} {
		n, err := strconv.Atoi(f[i+1])
		if err != nil {
			errs = append(errs, err)
		}
		*dst = n
	}
	if len(errs) > 0 {
		return s, fmt.Errorf("inspect %s: unexpected output %q: %v", p.Name(c), out, errs)
	}
	if len(f) > 5 {
		s.Cgroup = f[5] + "/libpod-" + s.ID
	}
	return s, nil
}

// IP returns the pod's address on its bridge network.
func (p *Pod) IP(ctx context.Context) (string, error) {
	infra, err := p.lab.Podman(ctx, "pod", "inspect", "--format", "{{.InfraContainerID}}", p.Spec.Name)
	if err != nil {
		return "", err
	}
	out, err := p.lab.Podman(ctx, "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", strings.TrimSpace(string(infra)))
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return "", fmt.Errorf("pod %s has no IP address", p.Spec.Name)
	}
	return f[0], nil
}

// WaitLog waits until cond holds for container c's log, read from its log
// file every 100 ms (pods.Lab.WaitLogFile: thirteen cases polling podman
// logs took both CPUs of the host from the victims whose leaks they
// measured); where podman names no readable file, podman logs every second.
func (p *Pod) WaitLog(ctx context.Context, c string, cond func(string) bool) (string, error) {
	log, err := p.lab.WaitLogFile(ctx, p.Name(c), 100*time.Millisecond, cond)
	if !errors.Is(err, pods.ErrNoLogFile) {
		return log, err
	}
	for {
		log, err := p.Logs(ctx, c)
		if err == nil && cond(log) {
			return log, nil
		}
		select {
		case <-ctx.Done():
			return log, fmt.Errorf("wait for %s's log: %w", p.Name(c), ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// Down removes the pod with a fresh context, unless OOMHERO_E2E_KEEP=1.
func (p *Pod) Down() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return nil
	}
	p.down = true
	liveMu.Lock()
	delete(live, p)
	liveMu.Unlock()
	if os.Getenv("OOMHERO_E2E_KEEP") == "1" {
		return nil
	}
	return p.lab.RemovePod(p.Spec.Name)
}

// BuildHostileImage builds the attacker's image under tag.
func BuildHostileImage(ctx context.Context, l *pods.Lab, tag string) error {
	bctx := filepath.Join(l.Dir, "build-hostile")
	if err := os.MkdirAll(bctx, 0o755); err != nil {
		return fmt.Errorf("build hostile image: %w", err)
	}
	if err := l.GoBuild(ctx, "./testenv/hostile", filepath.Join(bctx, "hostile")); err != nil {
		return err
	}
	if _, err := l.Podman(ctx, "build", "-q", "-f", filepath.Join(l.Root, "testenv", "hostile", "Dockerfile"), "-t", tag, bctx); err != nil {
		return fmt.Errorf("build hostile image: %w", err)
	}
	return nil
}

package pods

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Default image names.
const (
	OomheroImage = "localhost/oomhero:dev"
	AppImage     = "localhost/oomhero-testapp:dev"
)

// ownerLabel labels every pod the lab starts with the pid of its process.
const ownerLabel = "oomhero-e2e-owner"

// ErrUnavailable is wrapped by the error of Check when the machine cannot run
// the lab (not root, no podman).
var ErrUnavailable = errors.New("pod lab unavailable")

// Lab runs podman with the project's containers.conf.
type Lab struct {
	// Root is the repository root (where go.mod is).
	Root string
	// Conf is the containers.conf given to podman with CONTAINERS_CONF.
	Conf string
	// Dir is a scratch directory; podman runs there (kube play would build an
	// image from ./NAME if a folder of a container's name existed in its
	// working directory).
	Dir string
	// Log, when not nil, receives progress lines.
	Log func(format string, args ...any)
}

// Check tells whether this machine can run pods: root, podman and runc.
// The error wraps ErrUnavailable.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root", ErrUnavailable)
	}
	for _, b := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%w: %s not found: %w", ErrUnavailable, b, err)
		}
	}
	return nil
}

// FindRoot returns the repository root: the first directory upwards from the
// working directory holding the module's go.mod.
func FindRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/oomhero/oomhero\n")) {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("find repository root: no go.mod of github.com/oomhero/oomhero above the working directory")
		}
		d = p
	}
}

// NewLab returns a lab for the repository at root, with a new scratch
// directory. Close removes it.
func NewLab(root string) (*Lab, error) {
	dir, err := os.MkdirTemp("", "oomhero-pods-")
	if err != nil {
		return nil, fmt.Errorf("new lab: %w", err)
	}
	return &Lab{Root: root, Conf: filepath.Join(root, "testenv", "pods", "containers.conf"), Dir: dir}, nil
}

// Close removes the scratch directory.
func (l *Lab) Close() error { return os.RemoveAll(l.Dir) }

func (l *Lab) logf(format string, args ...any) {
	if l.Log != nil {
		l.Log(format, args...)
	}
}

// Podman runs podman with args and returns its standard output. The error
// holds standard error.
func (l *Lab) Podman(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Dir = l.Dir
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+l.Conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// Inspect runs podman inspect with args. podman 4.3 fails an inspect that
// races with a container's process dying ("read /proc/<pid>/cgroup: no
// such process"), as an OOM kill does: the inspect is asked again, up to 5
// times 200 ms apart.
func (l *Lab) Inspect(ctx context.Context, args ...string) ([]byte, error) {
	args = append([]string{"inspect"}, args...)
	for try := 1; ; try++ {
		out, err := l.Podman(ctx, args...)
		if err == nil || try == 5 || !strings.Contains(err.Error(), "no such process") {
			return out, err
		}
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// PodmanCombined runs podman with args and returns its standard output and
// error together, in order (podman logs writes a container's stderr to its
// own stderr).
func (l *Lab) PodmanCombined(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Dir = l.Dir
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+l.Conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, lastLines(out.Bytes(), 5))
	}
	return out.Bytes(), nil
}

func lastLines(b []byte, n int) []byte {
	b = bytes.TrimSpace(b)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}

func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(build.Default.GOROOT, "bin", "go")
}

// GoBuild builds a static binary of the package pkg (relative to the
// repository root, e.g. "./cmd/oomhero") into out, with the build tags
// given.
func (l *Lab) GoBuild(ctx context.Context, pkg, out string, tags ...string) error {
	args := []string{"build", "-trimpath"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.CommandContext(ctx, goBinary(), append(args, "-o", out, pkg)...)
	cmd.Dir = l.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, bytes.TrimSpace(b))
	}
	return nil
}

// BuildImages builds both images: oomhero from the repository's Dockerfile
// and the test application from testenv/app/Dockerfile. The binaries are
// built first (CGO_ENABLED=0) into small build contexts, so podman never
// sends the repository as context.
func (l *Lab) BuildImages(ctx context.Context) error {
	if err := l.BuildOomheroImage(ctx, OomheroImage); err != nil {
		return err
	}
	return l.BuildAppImage(ctx, AppImage)
}

// BuildOomheroImage builds the oomhero image under tag; the sidecar binary
// gets the build tags given besides nokube (profile: the profiling variant).
func (l *Lab) BuildOomheroImage(ctx context.Context, tag string, tags ...string) error {
	bctx := filepath.Join(l.Dir, "build-oomhero")
	if err := os.MkdirAll(filepath.Join(bctx, "bin"), 0o755); err != nil {
		return fmt.Errorf("build oomhero image: %w", err)
	}
	l.logf("building oomhero binaries (sidecar: -tags nokube; node agent)")
	if err := l.GoBuild(ctx, "./cmd/oomhero", filepath.Join(bctx, "bin", "oomhero"), append([]string{"nokube"}, tags...)...); err != nil {
		return err
	}
	if err := l.GoBuild(ctx, "./cmd/oomhero", filepath.Join(bctx, "bin", "oomhero-node")); err != nil {
		return err
	}
	l.logf("building image %s", tag)
	if _, err := l.Podman(ctx, "build", "-q", "-f", filepath.Join(l.Root, "Dockerfile"), "-t", tag, bctx); err != nil {
		return fmt.Errorf("build oomhero image: %w", err)
	}
	return nil
}

// BuildAppImage builds the test application's image under tag.
func (l *Lab) BuildAppImage(ctx context.Context, tag string) error {
	bctx := filepath.Join(l.Dir, "build-testapp")
	if err := os.MkdirAll(bctx, 0o755); err != nil {
		return fmt.Errorf("build test app image: %w", err)
	}
	l.logf("building test app binary")
	if err := l.GoBuild(ctx, "./testenv/app", filepath.Join(bctx, "testapp")); err != nil {
		return err
	}
	l.logf("building image %s", tag)
	if _, err := l.Podman(ctx, "build", "-q", "-f", filepath.Join(l.Root, "testenv", "app", "Dockerfile"), "-t", tag, bctx); err != nil {
		return fmt.Errorf("build test app image: %w", err)
	}
	return nil
}

// ImageExists tells whether podman has the image.
func (l *Lab) ImageExists(ctx context.Context, image string) bool {
	_, err := l.Podman(ctx, "image", "exists", image)
	return err == nil
}

// SweepOrphans removes the pods whose owner process (label
// oomhero-e2e-owner) no longer exists: pods of runs killed before their
// clean-up.
func (l *Lab) SweepOrphans(ctx context.Context) error {
	out, err := l.Podman(ctx, "pod", "ls", "--filter", "label="+ownerLabel, "--format", `{{.Name}} {{index .Labels "`+ownerLabel+`"}}`)
	if err != nil {
		return fmt.Errorf("sweep orphan pods: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, owner, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(owner)
		if err == nil && pid > 0 && syscall.Kill(pid, 0) == nil {
			continue // owner alive
		}
		l.logf("removing orphan pod %s (owner %s gone)", name, owner)
		if _, err := l.Podman(ctx, "pod", "rm", "-f", "-t", "0", name); err != nil {
			return fmt.Errorf("sweep orphan pods: %w", err)
		}
	}
	return nil
}

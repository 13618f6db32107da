package main

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/oomhero/oomhero/testenv/pods"
)

//go:embed sleeper/sleeper.c
var sleeperSource []byte

// idleImage is the test app's image with the sleeper in front of it.
const idleImage = "localhost/oomhero-idleapp:dev"

// buildIdleImage compiles the sleeper statically and builds idleImage on
// top of the test app's image.
func buildIdleImage(ctx context.Context, lab *pods.Lab) error {
	dir := filepath.Join(lab.Dir, "build-idleapp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("idle image: %w", err)
	}
	src := filepath.Join(dir, "sleeper.c")
	if err := os.WriteFile(src, sleeperSource, 0o644); err != nil {
		return fmt.Errorf("idle image: %w", err)
	}
	cc := exec.CommandContext(ctx, "clang", "-static", "-O2", "-o", filepath.Join(dir, "sleeper"), src)
	if out, err := cc.CombinedOutput(); err != nil {
		return fmt.Errorf("idle image: compile the sleeper (clang and libc6-dev, see testenv/install-deps): %v: %s", err, out)
	}
	file := filepath.Join(dir, "Containerfile")
	body := "FROM " + pods.AppImage + "\nCOPY sleeper /sleeper\nENTRYPOINT [\"/sleeper\"]\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		return fmt.Errorf("idle image: %w", err)
	}
	if _, err := lab.Podman(ctx, "build", "-q", "-f", file, "-t", idleImage, dir); err != nil {
		return fmt.Errorf("idle image: %w", err)
	}
	return nil
}

// shapeRow is the idle cost of oomhero next to one app holding 30% of its
// limit with procs-1 idle children.
type shapeRow struct {
	source    string
	procs     int
	limit     string
	startCPU  time.Duration // CPU time from the container's start until the app was watched with all its children
	startTook time.Duration
	cpuPct    []float64 // one per window
	rssKiB    uint64
	hwmKiB    uint64
	load      string
	window    time.Duration
	seenProcs int
}

// idleShape measures oomhero (source src) next to one app that holds 30% of
// its memory limit with procs-1 idle children: CPU from the cgroup
// accounting of oomhero's container (cpuacct.usage on v1, cpu.stat
// usage_usec on v2) over `windows` consecutive steady windows, start-up CPU
// apart, then RSS.
func idleShape(ctx context.Context, lab *pods.Lab, src string, procs, windows int, window time.Duration) (shapeRow, error) {
	limit := "256Mi"
	if procs > 500 {
		limit = "1Gi" // the children's own pages are about 100 KiB each
	}
	row := shapeRow{source: srcName(src), procs: procs, limit: limit, window: window}
	app := pods.Container{Name: "app", Image: idleImage, Memory: limit,
		Args: []string{strconv.Itoa(procs - 1), "/testapp", "-mode", "hold", "-percent", "30", "-sample-interval", "0"}}
	image, env := pods.OomheroImage, []pods.EnvVar{{Name: "WARNING", Value: "65"}, {Name: "CRITICAL", Value: "90"}}
	if profileDir != "" {
		// From the first steady window to the end of the last (the
		// start-up wait below is about 17 s).
		image = profileImage
		env = append(env, pods.EnvVar{Name: "OOMHERO_CPUPROFILE", Value: profileFile},
			pods.EnvVar{Name: "OOMHERO_CPUPROFILE_AFTER", Value: "17s"},
			pods.EnvVar{Name: "OOMHERO_CPUPROFILE_FOR", Value: (time.Duration(windows) * window).String()})
	}
	cs := []pods.Container{app, pods.OomheroContainer(image, src, append(env, extraEnv...)...)}
	r, err := lab.Play(ctx, pods.Pod{Name: pods.PodName(fmt.Sprintf("bench-shape-%s-%d", srcName(src), procs)), Containers: cs})
	if err != nil {
		return row, err
	}
	defer r.Down()
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if _, err := r.WaitLog(wctx, "oomhero", func(s string) bool {
		return len(pods.Select(pods.ParseOomheroLog(s), "container watched", "")) >= 1
	}); err != nil {
		return row, fmt.Errorf("idle shape: oomhero does not watch the app: %w", err)
	}
	if _, err := r.WaitLog(wctx, "app", func(s string) bool { return strings.Contains(s, "event=go") }); err != nil {
		return row, fmt.Errorf("idle shape: the app did not reach its hold: %w", err)
	}
	for {
		n, err := podProcs(ctx, r, cs[:1])
		if err != nil {
			return row, err
		}
		if row.seenProcs = n; n >= procs {
			break
		}
		if wctx.Err() != nil {
			return row, fmt.Errorf("idle shape: %d of %d processes after 3 minutes", n, procs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, err := r.State(ctx, "oomhero")
	if err != nil {
		return row, err
	}
	acct, err := cpuAccounting(st.Pid)
	if err != nil {
		return row, err
	}
	// Start-up is over once every process is past its young scans (10 s of
	// age: discover.youngFor) and oomhero gave back its start-up memory
	// (15 s after its start: cmd/oomhero trimAfter). Both count in the
	// start-up CPU, not in the steady windows.
	time.Sleep(max(12*time.Second, 17*time.Second-time.Since(start)))
	if row.startCPU, err = acct(); err != nil {
		return row, err
	}
	row.startTook = time.Since(start)
	for range windows {
		c0, err := acct()
		if err != nil {
			return row, err
		}
		t0 := time.Now()
		select {
		case <-ctx.Done():
			return row, ctx.Err()
		case <-time.After(window):
		}
		c1, err := acct()
		if err != nil {
			return row, err
		}
		row.cpuPct = append(row.cpuPct, 100*(c1-c0).Seconds()/time.Since(t0).Seconds())
	}
	if row.rssKiB, row.hwmKiB, err = rss(st.Pid); err != nil {
		return row, err
	}
	row.load = loadavg()
	if profileDir != "" {
		if err := keepProfile(ctx, st.Pid, filepath.Join(profileDir, fmt.Sprintf("idle-%s-%d.pprof", row.source, procs))); err != nil {
			return row, err
		}
	}
	return row, nil
}

// profileFile is where oomhero's profiling variant writes its profile, in
// its container's root (the image is FROM scratch, run as root).
const profileFile = "/cpu.pprof"

// keepProfile copies the profile oomhero (pid on the host) wrote in its
// container to dst, once complete: the variant closes the file when the
// profile's span ends, a moment after the last window.
func keepProfile(ctx context.Context, pid int, dst string) error {
	src := fmt.Sprintf("/proc/%d/root%s", pid, profileFile)
	var last int64 = -1
	for range 50 {
		if fi, err := os.Stat(src); err == nil && fi.Size() > 0 && fi.Size() == last {
			b, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "bench: CPU profile in %s\n", dst)
			return os.WriteFile(dst, b, 0o644)
		} else if err == nil {
			last = fi.Size()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("no complete CPU profile at %s", src)
}

// cpuAccounting returns a function reading the CPU time charged to pid's
// cgroup: cpuacct.usage of its v1 cpuacct cgroup, or usage_usec of its v2
// cgroup's cpu.stat.
func cpuAccounting(pid int) (func() (time.Duration, error), error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, fmt.Errorf("oomhero's cgroup: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, ctl := range strings.Split(f[1], ",") {
			if ctl != "cpuacct" {
				continue
			}
			for _, mnt := range []string{"/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpu,cpuacct"} {
				file := filepath.Join(mnt, f[2], "cpuacct.usage")
				if _, err := os.Stat(file); err == nil {
					return func() (time.Duration, error) {
						b, err := os.ReadFile(file)
						if err != nil {
							return 0, err
						}
						n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
						if err != nil {
							return 0, fmt.Errorf("%s: %q", file, b)
						}
						return time.Duration(n), nil
					}, nil
				}
			}
		}
		if f[0] == "0" && f[1] == "" {
			file := filepath.Join("/sys/fs/cgroup", f[2], "cpu.stat")
			if _, err := os.Stat(file); err != nil {
				continue
			}
			return func() (time.Duration, error) {
				b, err := os.ReadFile(file)
				if err != nil {
					return 0, err
				}
				for _, l := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
						n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
						return time.Duration(n) * time.Microsecond, err
					}
				}
				return 0, fmt.Errorf("%s: no usage_usec", file)
			}, nil
		}
	}
	return nil, fmt.Errorf("oomhero's cgroup: no cpuacct (v1) or cpu.stat (v2) for pid %d", pid)
}

// loadavg returns the three load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// machine describes the host: CPUs, model, memory, kernel.
func machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if kib, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				mem = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
			}
		}
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	n := 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		n = strings.Count(string(b), "\nprocessor") + 1
	}
	return fmt.Sprintf("%d CPUs (%s), %s RAM, kernel %s", n, model, mem, kernel)
}

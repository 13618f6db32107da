// Command demo runs the seed's bloat pod with oomhero as real pods (podman
// kube play): a container leaking memory (with /healthz and a liveness
// probe, 256Mi limit) next to oomhero with WARNING=65 and CRITICAL=90. It
// builds both images, follows both logs, shows the warning and critical
// signals arriving in the app, tears the pod down (also on Ctrl-C), and
// draws what happened from the app's own samples: its working set as percent
// of the limit over time, the two thresholds, each signal's arrival and the
// OOM kill (chart.go), then a summary.
//
//	go run ./testenv/pods/cmd/demo [-rate 10] [-source auto|bpf|cgroupfs] [-no-build]
//	go run ./testenv/pods/cmd/demo -chart APP.log [-killed]   (make demo-k8s)
//
// Needs root, podman and runc (see testenv/pods).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oomhero/oomhero/testenv/app/applog"
	"github.com/oomhero/oomhero/testenv/pods"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	rate := flag.Float64("rate", 10, "leak rate of the bloat container, MiB/s")
	source := flag.String("source", "", "oomhero --source (empty: oomhero's default)")
	noBuild := flag.Bool("no-build", false, "use the images already built")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up after this long")
	chartOf := flag.String("chart", "", "no pods: draw the chart and summary of this app log (make demo-k8s), then exit")
	killed := flag.Bool("killed", false, "with -chart: the app was OOM-killed")
	flag.Parse()
	if *chartOf != "" {
		b, err := os.ReadFile(*chartOf)
		if err != nil {
			return err
		}
		outcome := "bloat was not OOM-killed"
		if *killed {
			outcome = "bloat was OOM-killed (Kubernetes: lastState.terminated.reason OOMKilled)"
		}
		return report(string(b), *killed, outcome)
	}

	if err := pods.Check(); err != nil {
		return err
	}
	root, err := pods.FindRoot()
	if err != nil {
		return err
	}
	lab, err := pods.NewLab(root)
	if err != nil {
		return err
	}
	defer lab.Close()
	lab.Log = func(format string, args ...any) { fmt.Printf("demo: "+format+"\n", args...) }

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := lab.SweepOrphans(ctx); err != nil {
		return err
	}
	if !*noBuild {
		if err := lab.BuildImages(ctx); err != nil {
			return err
		}
	}

	// The seed's pod, with the test app as bloat.
	pod := pods.Pod{
		Name:          pods.PodName("demo"),
		RestartPolicy: "Never",
		Containers: []pods.Container{
			{
				Name:  "bloat",
				Image: pods.AppImage,
				Args: []string{"-mode", "leak", "-rate", strconv.FormatFloat(*rate, 'f', -1, 64),
					"-chunk", "1024", "-listen", ":8080", "-delay", "2s"},
				Memory:   "256Mi",
				CPU:      "250m",
				Liveness: &pods.Probe{Path: "/healthz", Port: 8080, PeriodSeconds: 3, FailureThreshold: 1},
				// The spec's name, declared (a sidecar cannot learn it).
				Env: []pods.EnvVar{{Name: "OOMHERO_NAME", Value: "bloat"}},
			},
			{
				Name:       "oomhero",
				Image:      pods.OomheroImage,
				Args:       sourceArgs(*source),
				Privileged: true,
				Env: []pods.EnvVar{{Name: "WARNING", Value: strconv.Itoa(warnPct)},
					{Name: "CRITICAL", Value: strconv.Itoa(critPct)}},
			},
		},
	}
	fmt.Printf("demo: pod YAML:\n%s\n", indent(string(pod.YAML())))
	r, err := lab.Play(ctx, pod)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("demo: tearing down", pod.Name)
		if err := r.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
		}
	}()

	// Follow both logs until bloat exits.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var appLog strings.Builder
	for _, c := range []string{"bloat", "oomhero"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			follow(fctx, lab, r.ContainerName(c), func(line string) {
				if c == "bloat" {
					mu.Lock()
					appLog.WriteString(line + "\n")
					mu.Unlock()
				}
				printLine(c, line)
			})
		}()
	}
	st, err := r.WaitExited(ctx, "bloat")
	time.Sleep(500 * time.Millisecond) // the last lines
	fcancel()
	wg.Wait()
	if err != nil {
		return err
	}

	// Summary.
	how := "exited"
	if st.ExitCode == 137 {
		how = "was killed (exit 137: the kernel's OOM killer; podman reports OOMKilled=false here)"
	}
	return report(appLog.String(), st.ExitCode == 137, fmt.Sprintf("bloat %s with code %d", how, st.ExitCode))
}

// report draws the chart of the app's log and prints the summary; the
// outcome line closes it. Both signals must have arrived.
func report(appLog string, killed bool, outcome string) error {
	lg, err := applog.ParseLog(strings.NewReader(appLog))
	if err != nil {
		return err
	}
	limit, _ := lg.Start.Uint("limit")
	fmt.Println()
	fmt.Println("demo: what happened")
	pic, cerr := chart(lg, limit, warnPct, critPct, killed, 60, 15)
	if cerr != nil {
		fmt.Fprintln(os.Stderr, "demo:", cerr)
	} else {
		fmt.Print(pic)
	}
	fmt.Println()
	fmt.Println("demo: summary")
	for _, s := range lg.Signals {
		fmt.Printf("  bloat received %s at %.1f%% of its limit (working set %d MiB)\n",
			s.Name, pct(s.WorkingSet, limit), s.WorkingSet>>20)
	}
	if n := len(lg.Samples); n > 0 && len(lg.Signals) > 0 {
		last := lg.Signals[len(lg.Signals)-1]
		fmt.Printf("  last signal %v before bloat's last sample\n", (lg.Samples[n-1].Mono - last.Mono).Round(time.Millisecond))
	}
	fmt.Println("  " + outcome)
	if len(lg.SignalsNamed("SIGUSR1")) == 0 || len(lg.SignalsNamed("SIGUSR2")) == 0 {
		return errors.New("bloat did not receive both the warning and the critical signal")
	}
	return nil
}

// The demo's thresholds, percent of the memory limit.
const warnPct, critPct = 65, 90

func sourceArgs(s string) []string {
	if s == "" {
		return nil
	}
	return []string{"--source=" + s}
}

// follow streams `podman logs -f` of a container, line by line.
func follow(ctx context.Context, lab *pods.Lab, name string, fn func(string)) {
	cmd := exec.CommandContext(ctx, "podman", "logs", "-f", name)
	cmd.Dir = lab.Dir
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+lab.Conf)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "demo: follow", name+":", err)
		return
	}
	go func() { cmd.Wait(); pw.Close() }()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		fn(sc.Text())
	}
}

var lastSample time.Duration

// printLine prints a log line with its container's name; bloat's samples
// only once a second, as percent of the limit.
func printLine(c, line string) {
	if c == "bloat" {
		l, ok := applog.ParseLine(line)
		if ok && l.Event == "sample" {
			m, err := l.Mono()
			if err != nil || m-lastSample < time.Second {
				return
			}
			lastSample = m
		}
	}
	fmt.Printf("%-8s| %s\n", c, line)
}

func pct(n, limit uint64) float64 {
	if limit == 0 {
		return 0
	}
	return 100 * float64(n) / float64(limit)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

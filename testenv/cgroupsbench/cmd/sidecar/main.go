// Command sidecar is a sidecar-like loop for measuring size and RSS: it reads
// one memory cgroup every -every for -for, exports each reading through
// oomhero's metrics registry (as oomhero does), then prints its own VmRSS and
// VmHWM (kB) from /proc/self/status. Built with -tags containerd it reads
// through containerd/cgroups/v3 instead of oomhero's reader.
//
//	sidecar -root /sys/fs/cgroup/memory -rel NAME -limit BYTES
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/oomhero/oomhero/internal/metrics"
	"github.com/oomhero/oomhero/internal/watch"
)

func main() {
	root := flag.String("root", "/sys/fs/cgroup/memory", "v1 memory hierarchy")
	rel := flag.String("rel", "", "cgroup under -root")
	limit := flag.Uint64("limit", 0, "the cgroup's limit, bytes")
	every := flag.Duration("every", 10*time.Millisecond, "reading interval")
	total := flag.Duration("for", 3*time.Second, "run this long")
	flag.Parse()
	read, err := newReader(watch.CgroupDir{Root: *root, Rel: *rel}, *limit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidecar:", err)
		os.Exit(1)
	}
	m := metrics.New(metrics.Options{Pod: "p"})
	tg := watch.Target{Container: watch.Container{ID: 1, Name: "c", Limit: *limit}}
	m.SetWatched([]watch.Target{tg})
	n := 0
	for end := time.Now().Add(*total); time.Now().Before(end); time.Sleep(*every) {
		r, err := read()
		if err != nil {
			fmt.Fprintln(os.Stderr, "sidecar:", err)
			os.Exit(1)
		}
		m.Observe(tg, r, watch.OK)
		n++
	}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidecar:", err)
		os.Exit(1)
	}
	defer f.Close()
	out := []string{fmt.Sprintf("readings=%d", n)}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		if k == "VmRSS" || k == "VmHWM" {
			out = append(out, k+"_kB="+strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	fmt.Println(strings.Join(out, " "))
}

// Command hostile is the attacker of oomhero's adversarial pod suite
// (testenv/adversarial). It runs as root in an ordinary (unprivileged)
// container of the same pod as oomhero, next to a leaking victim, and does
// one attack, chosen with -attack:
//
//	names-utf8     its process name (comm) is invalid UTF-8 with control
//	               bytes; it holds memory above the warning threshold so its
//	               name reaches oomhero's logs, metrics and Events
//	names-newline  comm holds a newline and a forged "level=ERROR"; its
//	               command line forges a whole log line (newline, carriage
//	               return, escape sequences, invalid UTF-8); it holds memory
//	               the same way
//	fifo-procs     a fake cgroup v1 tree (sys/fs/cgroup/memory/...) whose
//	               cgroup.procs is a FIFO no one writes; the process chroots
//	               into the tree, so /proc/<pid>/root points there
//	fifo-files     the same, cgroup.procs lists the process, every memory.*
//	               file is a FIFO
//	zero-procs     cgroup.procs is a symbolic link to /dev/zero
//	zero-files     cgroup.procs lists the process, memory.* link to /dev/zero
//	sparse-procs   cgroup.procs lists the process, then a 1 TiB hole
//	sparse-files   memory.* are 1 TiB sparse files (a valid first line)
//	deep           the chroot is 2,500 directories deep (its path is longer
//	               than PATH_MAX), the fake directory holds a 2,000-level
//	               subtree, a symbolic-link loop and a 40-link chain
//	event-other    a valid-looking fake v1 directory whose
//	               cgroup.event_control links to a file of another container
//	               (/proc/<pid>/root/<file> of the -other process, resolved by
//	               whoever follows the link)
//	event-host     the same, linked (relatively, out of the chroot) to a host
//	               file mounted into this container at -host-file
//	event-bind     the same, but cgroup.event_control is the host file itself,
//	               bind-mounted there by the pod (-keep, no link)
//	read-secrets   memory.limit_in_bytes links to the other container's file,
//	               memory.usage_in_bytes to the host file (their text must
//	               not leak into oomhero's log)
//	storm          a process storm: short-lived processes forked as fast as
//	               -storm-parallel allows
//	port           binds -port before oomhero starts and holds it for -hold
//	flap           touches -mib MiB, then exits with status 1 after -hold
//	               (with restartPolicy Always: a container restarting in a loop);
//	               with -churn it renames itself every 20 ms meanwhile
//	names-churn    renames itself (comm) to a new random name every 20 ms,
//	               holding -mib MiB: one new metric label per name unless
//	               oomhero bounds them
//	big-environ    re-runs itself with a 1.5 MiB environment: junk variables
//	               and malformed OOMHERO_* declarations (invalid UTF-8,
//	               control characters, 100 KiB values, 5,000-digit numbers)
//	exec-storm     re-executes itself every 20 ms with the 1.5 MiB
//	               environment of big-environ and a new malformed
//	               OOMHERO_WARNING each time (declarations are re-read on exec)
//	hold           holds -mib MiB (for declarations set by the pod, e.g. an
//	               OOMHERO_NOTIFY_URL pointing off the pod)
//	redirect       holds -mib MiB and answers every request on -listen with
//	               a 307 to -redirect-to
//	sink           holds -mib MiB and logs "event=notified" for every request
//	               on -listen (a legitimate loopback notification endpoint)
//
// It logs "event=ready" once the trap is set, then waits for SIGTERM. It
// catches SIGUSR1 and SIGUSR2 (so oomhero treats it as a process with
// handlers) and logs them.
package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Forged names. comm is at most 15 bytes (TASK_COMM_LEN 16, with the NUL).
const (
	CommUTF8    = "\xff\xfex\x01\x7f"
	CommNewline = "x\nlevel=ERROR"
	// ArgvForged is the command line of names-newline: a whole forged log
	// line, a carriage return and terminal escapes.
	ArgvForged = "hostile\nlevel=ERROR msg=\"oomhero stopped\" forged=1\r\x1b[2K\x1b]0;owned\a\xff\xfe"
)

// Fake is the directory the tree attacks chroot into.
const Fake = "/fake"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "exit" {
		os.Exit(0) // a child of the storm
	}
	if err := run(os.Args[1:]); err != nil {
		logf("event=error msg=%q", err.Error())
		os.Exit(1)
	}
}

type options struct {
	attack   string
	other    string
	hostFile string
	keep     string
	port     string
	hold     time.Duration
	mib      int
	parallel int
	listen   string
	redirect string
	probe    string
	churn    bool
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("hostile", flag.ContinueOnError)
	fs.StringVar(&o.attack, "attack", "", "the attack (see the package doc)")
	fs.StringVar(&o.other, "other", "-mode idle", "event-other, read-secrets: the other container's process is the one whose command line contains this")
	fs.StringVar(&o.hostFile, "host-file", "/host/secret.txt", "event-host, read-secrets: the host file mounted into this container")
	fs.StringVar(&o.keep, "keep", "", "comma-separated fake files not to create (bind-mounted by the pod)")
	fs.StringVar(&o.port, "port", ":9090", "port: address to bind")
	fs.DurationVar(&o.hold, "hold", 20*time.Second, "port: how long to hold the port; flap: how long to live")
	fs.IntVar(&o.mib, "mib", 40, "names-*, flap: MiB of memory to touch")
	fs.IntVar(&o.parallel, "storm-parallel", 8, "storm: processes alive at once")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8099", "redirect, sink: address to serve")
	fs.StringVar(&o.redirect, "redirect-to", "", "redirect: where to send every request")
	fs.BoolVar(&o.churn, "churn", false, "flap: rename itself every 20 ms too")
	fs.StringVar(&o.probe, "probe", "", "GET this URL once at start and log the outcome (shows a listener is reachable from the pod)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.probe != "" {
		c := &http.Client{Timeout: 3 * time.Second}
		if resp, err := c.Get(o.probe); err != nil {
			logf("event=probe url=%q error=%q", o.probe, err.Error())
		} else {
			resp.Body.Close()
			logf("event=probe url=%q status=%d", o.probe, resp.StatusCode)
		}
	}
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)

	switch o.attack {
	case "names-utf8":
		if err := setComm(CommUTF8); err != nil {
			return err
		}
		touch(o.mib)
	case "names-newline":
		if os.Getenv("HOSTILE_FORGED") == "" {
			// Re-run with a forged argv[0]; comm comes from the file name.
			env := append(os.Environ(), "HOSTILE_FORGED=1")
			return syscall.Exec("/proc/self/exe", append([]string{ArgvForged}, args...), env)
		}
		if err := setComm(CommNewline); err != nil {
			return err
		}
		touch(o.mib)
	case "names-churn":
		touch(o.mib)
		go churnNames()
	case "big-environ":
		if os.Getenv("HOSTILE_BIG") == "" {
			return syscall.Exec("/proc/self/exe", append([]string{"hostile"}, args...), bigEnviron())
		}
		touch(o.mib)
	case "exec-storm":
		gen, _ := strconv.Atoi(os.Getenv("HOSTILE_GEN"))
		if gen == 0 {
			logf("event=ready attack=exec-storm pid=%d", os.Getpid())
		}
		touch(o.mib)
		time.Sleep(20 * time.Millisecond)
		env := append(bigEnviron(), fmt.Sprintf("HOSTILE_GEN=%d", gen+1), fmt.Sprintf("OOMHERO_WARNING=%d\xff%d", gen, gen))
		return syscall.Exec("/proc/self/exe", append([]string{"hostile"}, args...), env)
	case "hold":
		touch(o.mib)
	case "redirect", "sink":
		touch(o.mib)
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			return fmt.Errorf("listen %s: %w", o.listen, err)
		}
		attack, to := o.attack, o.redirect
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if attack == "redirect" {
				logf("event=redirected from=%q to=%q", r.URL, to)
				http.Redirect(w, r, to, http.StatusTemporaryRedirect)
				return
			}
			logf("event=notified method=%s url=%q", r.Method, r.URL)
			w.WriteHeader(http.StatusNoContent)
		}))
	case "storm":
		go storm(o.parallel)
	case "port":
		ln, err := net.Listen("tcp", o.port)
		if err != nil {
			return fmt.Errorf("bind %s: %w", o.port, err)
		}
		logf("event=bound addr=%s hold=%s", ln.Addr(), o.hold)
		time.AfterFunc(o.hold, func() { ln.Close(); logf("event=released addr=%s", o.port) })
	case "flap":
		if o.churn {
			go churnNames()
		}
		touch(o.mib)
		logf("event=ready attack=flap")
		time.Sleep(o.hold)
		logf("event=exit")
		os.Exit(1)
	default:
		spec, err := treeSpec(o)
		if err != nil {
			return err
		}
		root := Fake
		if o.attack == "deep" {
			if root, err = deepDir(Fake, 2500); err != nil {
				return err
			}
		}
		cg, err := ownMemoryCgroup()
		if err != nil {
			return err
		}
		// The fake directory where oomhero looks first (the container's
		// cgroupfs mount point) and at the cgroup path below it.
		for _, d := range []string{"sys/fs/cgroup/memory", filepath.Join("sys/fs/cgroup/memory", cg)} {
			if err := buildDir(root, d, spec); err != nil {
				return err
			}
		}
		if o.attack == "deep" {
			if err := deepExtras(filepath.Join(root, "sys/fs/cgroup/memory")); err != nil {
				return err
			}
		}
		if err := unix.Chroot(root); err != nil {
			return fmt.Errorf("chroot %s: %w", root, err)
		}
		if err := os.Chdir("/"); err != nil {
			return err
		}
	}
	logf("event=ready attack=%s pid=%d", o.attack, os.Getpid())
	for s := range sigc {
		if s == syscall.SIGTERM || s == syscall.SIGINT {
			logf("event=exit signal=%v", s)
			return nil
		}
		logf("event=signal signal=%v", s)
	}
	return nil
}

// logf writes one line with one write(2).
func logf(format string, args ...any) {
	os.Stdout.Write(fmt.Appendf(nil, format+"\n", args...))
}

// setComm names the process (its thread-group leader) name.
func setComm(name string) error {
	if err := os.WriteFile("/proc/self/comm", []byte(name), 0); err != nil {
		return fmt.Errorf("write /proc/self/comm: %w", err)
	}
	return nil
}

var held []byte

// touch allocates and touches mib MiB of anonymous memory, kept for good.
func touch(mib int) {
	held = make([]byte, mib<<20)
	for i := 0; i < len(held); i += 4096 {
		held[i] = 1
	}
}

// churnNames renames the process every 20 ms.
func churnNames() {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 15)
	for i := 0; ; i++ {
		for j := range b {
			b[j] = letters[rand.IntN(len(letters))]
		}
		setComm(string(b))
		time.Sleep(20 * time.Millisecond)
	}
}

// bigEnviron returns this process's environment with HOSTILE_BIG=1,
// malformed declarations and junk, about 1.5 MiB in all (under the kernel's
// limits: 128 KiB per string, a quarter of the stack for all).
func bigEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OOMHERO") && !strings.HasPrefix(kv, "JUNK") && !strings.HasPrefix(kv, "HOSTILE_") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOSTILE_BIG=1",
		"OOMHERO_WARNING=\xff\xfe\nlevel=ERROR msg=forged",
		"OOMHERO_CRITICAL="+strings.Repeat("9", 5000),
		"OOMHERO_WARNING_SIGNAL=SIG\x1b[31mKILL\x7f",
		"OOMHERO_CRITICAL_SIGNAL="+strings.Repeat("\xff", 1000),
		"OOMHERO_TARGETS=all\nlevel=ERROR msg=\"oomhero stopped\"",
		"OOMHERO_NOTIFY_URL=http://127.0.0.1:1/"+strings.Repeat("a", 100<<10),
		"OOMHERO_REPEAT=\r\r\r\u009b2J\u0085", // C1 CSI and NEL: valid UTF-8, still control characters
		"OOMHERO_COOLDOWN=-1s",
		"OOMHERO_WARNING=1",
		"OOMHERO=maybe",
	)
	junk := strings.Repeat("\xff\x01x", 30<<10) // 90 KiB
	for i := 0; i < 16; i++ {
		env = append(env, fmt.Sprintf("JUNK%d=%s", i, junk))
	}
	return env
}

// storm forks short-lived children forever, parallel at a time.
func storm(parallel int) {
	sem := make(chan struct{}, parallel)
	var n, failed int
	tick := time.NewTicker(5 * time.Second)
	for {
		select {
		case <-tick.C:
			logf("event=storm started=%d failed=%d", n, failed)
		default:
		}
		sem <- struct{}{}
		pid, err := syscall.ForkExec("/proc/self/exe", []string{"hostile", "exit"}, &syscall.ProcAttr{})
		if err != nil {
			failed++
			<-sem
			time.Sleep(10 * time.Millisecond)
			continue
		}
		n++
		go func() {
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
			<-sem
		}()
	}
}

// kind of a fake file.
type kind int

const (
	regular kind = iota
	fifo
	symlink
	sparse // regular content, then a hole up to 1 TiB
	keep   // left as it is (a bind mount of the pod)
)

type fakeFile struct {
	kind    kind
	content string // regular, sparse: the content; symlink: the target
}

const tib = int64(1) << 40

// valid returns the files of a plausible cgroup v1 memory directory with a
// 128 MiB limit and little usage, listing pid.
func valid(pid int) map[string]fakeFile {
	stat := "cache 0\nrss 1048576\nmapped_file 0\ninactive_file 0\nactive_file 0\n" +
		"hierarchical_memory_limit 134217728\ntotal_cache 0\ntotal_rss 1048576\n" +
		"total_inactive_file 0\ntotal_active_file 0\ntotal_inactive_anon 0\ntotal_active_anon 1048576\n"
	r := func(s string) fakeFile { return fakeFile{regular, s} }
	return map[string]fakeFile{
		"cgroup.procs":               r(fmt.Sprintf("%d\n", pid)),
		"tasks":                      r(fmt.Sprintf("%d\n", pid)),
		"cgroup.event_control":       r(""),
		"memory.usage_in_bytes":      r("1048576\n"),
		"memory.max_usage_in_bytes":  r("1048576\n"),
		"memory.limit_in_bytes":      r("134217728\n"),
		"memory.soft_limit_in_bytes": r("9223372036854771712\n"),
		"memory.stat":                r(stat),
		"memory.oom_control":         r("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"),
		"memory.use_hierarchy":       r("1\n"),
		"memory.failcnt":             r("0\n"),
		"memory.pressure_level":      r(""),
	}
}

var memoryFiles = []string{"memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.limit_in_bytes", "memory.stat", "memory.oom_control"}

// treeSpec returns the fake directory of a tree attack.
func treeSpec(o options) (map[string]fakeFile, error) {
	files := valid(os.Getpid())
	// Relative way from the fake memory directory (and the cgroup path
	// below it) out of the chroot to the container's real root is computed
	// in buildDir; "@ROOT@" stands for it.
	switch o.attack {
	case "fifo-procs":
		files["cgroup.procs"] = fakeFile{kind: fifo}
	case "fifo-files":
		for _, n := range memoryFiles {
			files[n] = fakeFile{kind: fifo}
		}
	case "zero-procs":
		files["cgroup.procs"] = fakeFile{symlink, "/dev/zero"}
	case "zero-files":
		for _, n := range memoryFiles {
			files[n] = fakeFile{symlink, "/dev/zero"}
		}
	case "sparse-procs":
		files["cgroup.procs"] = fakeFile{sparse, files["cgroup.procs"].content}
	case "sparse-files":
		for _, n := range memoryFiles {
			files[n] = fakeFile{sparse, files[n].content}
		}
	case "deep":
	case "event-other", "read-secrets":
		pid, err := findProcess(o.other)
		if err != nil {
			return nil, err
		}
		target := fmt.Sprintf("/proc/%d/root/other-secret.txt", pid)
		if o.attack == "event-other" {
			files["cgroup.event_control"] = fakeFile{symlink, target}
			break
		}
		// memory.stat stays valid, so the limit file is read and parsed.
		files["memory.limit_in_bytes"] = fakeFile{symlink, target}
		files["memory.usage_in_bytes"] = fakeFile{symlink, "@ROOT@" + o.hostFile}
		files["memory.max_usage_in_bytes"] = fakeFile{symlink, "@ROOT@" + o.hostFile}
	case "event-host":
		files["cgroup.event_control"] = fakeFile{symlink, "@ROOT@" + o.hostFile}
	case "event-bind":
		files["cgroup.event_control"] = fakeFile{kind: keep}
	default:
		return nil, fmt.Errorf("unknown -attack %q", o.attack)
	}
	for _, k := range strings.Split(o.keep, ",") {
		if k != "" {
			files[k] = fakeFile{kind: keep}
		}
	}
	return files, nil
}

// buildDir creates root/dir with files. A symlink target starting with
// @ROOT@ is made relative, leading from root/dir up out of root to the
// container's real root directory.
func buildDir(root, dir string, files map[string]fakeFile) error {
	full := filepath.Join(root, dir)
	if err := os.MkdirAll(full, 0o755); err != nil {
		return err
	}
	up := strings.Count(filepath.Clean(filepath.Join(root, dir)), "/")
	for name, f := range files {
		p := filepath.Join(full, name)
		if f.kind != keep {
			os.Remove(p)
		}
		var err error
		switch f.kind {
		case regular:
			err = os.WriteFile(p, []byte(f.content), 0o644)
		case fifo:
			err = unix.Mkfifo(p, 0o644)
		case symlink:
			t := f.content
			if rest, ok := strings.CutPrefix(t, "@ROOT@"); ok {
				t = strings.Repeat("../", up) + strings.TrimPrefix(rest, "/")
			}
			err = os.Symlink(t, p)
		case sparse:
			err = os.WriteFile(p, []byte(f.content), 0o644)
			if err == nil {
				err = os.Truncate(p, tib)
			}
		case keep:
		}
		if err != nil {
			return fmt.Errorf("fake %s: %w", p, err)
		}
	}
	return nil
}

// deepDir creates depth nested directories "d" under base, one step at a
// time (the full path is longer than PATH_MAX), makes the deepest the
// working directory and returns "." (chroot(".") then makes it the root).
func deepDir(base string, depth int) (string, error) {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	if err := os.Chdir(base); err != nil {
		return "", err
	}
	for i := 0; i < depth; i++ {
		if err := os.Mkdir("d", 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("deep dir level %d: %w", i, err)
		}
		if err := os.Chdir("d"); err != nil {
			return "", fmt.Errorf("deep dir level %d: %w", i, err)
		}
	}
	return ".", nil // chroot(".") makes the current directory the root
}

// deepExtras adds to the fake memory directory a 2,000-level subtree, a
// link loop and a chain of 40 links ending at cgroup.procs.
func deepExtras(dir string) error {
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Symlinkat(".", fd, "loop"); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	if err := unix.Symlinkat("loop/loop/loop/loop/loop/loop/loop/loop", fd, "loop8"); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	prev := "cgroup.procs"
	for i := 0; i < 40; i++ {
		n := "chain" + strconv.Itoa(i)
		if err := unix.Symlinkat(prev, fd, n); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		prev = n
	}
	cur := fd
	for i := 0; i < 2000; i++ {
		if err := unix.Mkdirat(cur, "sub", 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("subtree level %d: %w", i, err)
		}
		next, err := unix.Openat(cur, "sub", unix.O_DIRECTORY|unix.O_RDONLY, 0)
		if err != nil {
			return fmt.Errorf("subtree level %d: %w", i, err)
		}
		if cur != fd {
			unix.Close(cur)
		}
		cur = next
	}
	if cur != fd {
		unix.Close(cur)
	}
	return nil
}

// ownMemoryCgroup returns this process's memory cgroup path (v1 memory
// line, or the v2 line).
func ownMemoryCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	var v2 string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "memory" {
				return f[2], nil
			}
		}
		if f[0] == "0" {
			v2 = f[2]
		}
	}
	if v2 == "" {
		return "", errors.New("/proc/self/cgroup: no memory cgroup line")
	}
	return v2, nil
}

// findProcess returns the PID (in this PID namespace, the pod's) of the
// first process whose command line contains s, this one excepted.
func findProcess(s string) (int, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return 0, err
		}
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
				return pid, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no process with %q in its command line", s)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

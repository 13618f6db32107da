package runtimes

// Tests against real processes of this machine: the runtimes Identify must name,
// and the handlers the table says each runtime installs (read back from
// /proc/<pid>/status). Programs that are not installed skip the test, except under
// CI=true, where every runtime must be there (testenv/install-deps installs them).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// need returns the path of a program, or skips the test (fails it under CI=true).
func need(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		if filepath.IsAbs(n) {
			if _, err := os.Stat(n); err == nil {
				return n
			}
		}
	}
	msg := fmt.Sprintf("%v not installed (testenv/install-deps installs it)", names)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// output collects a process's stdout and stderr safely.
type output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// start runs cmd in its own process group and kills the group at the end.
func start(t *testing.T, cmd *exec.Cmd) *output {
	t.Helper()
	out := &output{}
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = out
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", cmd.Args, err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return out
}

// waitFor polls cond until it holds, or fails after timeout (generous: the test
// machine may be busy).
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type masks struct{ cgt, ign, blk uint64 }

func sigMasks(pid int) (masks, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return masks{}, err
	}
	var m masks
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		switch k {
		case "SigCgt":
			m.cgt = n
		case "SigIgn":
			m.ign = n
		case "SigBlk":
			m.blk = n
		default:
			continue
		}
		if err != nil {
			return masks{}, fmt.Errorf("/proc/%d/status %s: %v", pid, k, err)
		}
	}
	return m, nil
}

func bit(mask uint64, sig unix.Signal) bool { return mask&(1<<(uint(sig)-1)) != 0 }

func caught(pid int, sig unix.Signal) bool {
	m, err := sigMasks(pid)
	return err == nil && bit(m.cgt, sig)
}

// agreesWithTable checks every row that applies to rt against what the kernel
// says of pid's handlers: a Safe row means no handler, a row that says SIG_IGN
// means ignored, any other row means a handler is installed.
func agreesWithTable(t tb, pid int, rt Runtime) {
	t.Helper()
	m, err := sigMasks(pid)
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
		return // a recorder does not stop the goroutine
	}
	// A signal this test process was started with ignored (nohup, a background
	// job) is ignored in its children too, and runtimes leave it so: such rows
	// cannot be checked here.
	self, err := sigMasks(os.Getpid())
	if err != nil {
		t.Fatal(err)
		return
	}
	names := map[string]bool{rt.Name: true, baseOf[rt.Name]: true}
	checked := 0
	for _, r := range table {
		if !names[r.Runtime] {
			continue
		}
		sig := unix.SignalNum(r.Signal)
		e := EffectOf(rt, sig)
		if e.What == "" || e != r.Effect {
			continue // another row is the one that applies
		}
		if bit(self.ign, sig) && bit(m.ign, sig) {
			t.Logf("%s: %s was ignored when this test started: row not checked", rt, r.Signal)
			continue
		}
		checked++
		if strings.HasPrefix(e.What, "while a request runs") {
			continue // the handler comes and goes with requests (PHP's zend_signal_activate/deactivate)
		}
		switch {
		case e.Harm == Safe && bit(m.cgt, sig):
			t.Errorf("%s pid %d: table says no runtime handler for %s (%q) but SigCgt has one", rt, pid, r.Signal, e.What)
		case e.Harm != Safe && strings.Contains(e.What, "SIG_IGN") && !bit(m.ign, sig):
			t.Errorf("%s pid %d: table says %s is ignored but SigIgn does not have it", rt, pid, r.Signal)
		case e.Harm != Safe && !strings.Contains(e.What, "SIG_IGN") && !bit(m.cgt, sig):
			t.Errorf("%s pid %d: table says the runtime handles %s (%q) but SigCgt does not have it", rt, pid, r.Signal, e.What)
		case strings.Contains(e.What, "blocked") && !bit(m.blk, sig):
			t.Errorf("%s pid %d: table says %s is blocked but SigBlk does not have it", rt, pid, r.Signal)
		}
	}
	if checked == 0 {
		t.Errorf("%s pid %d: no row of the table applies", rt, pid)
	}
	t.Logf("%s pid %d: %d rows agree with SigCgt %016x SigIgn %016x", rt, pid, checked, m.cgt, m.ign)
}

func TestIdentifyGo(t *testing.T) {
	rt := Identify("/proc", os.Getpid())
	if rt.Name != "go" || rt.Version != goruntime.Version() {
		t.Fatalf("this test binary: Identify = %#v, want go %s", rt, goruntime.Version())
	}
	agreesWithTable(t, os.Getpid(), rt)
}

func TestIdentifyShells(t *testing.T) {
	for _, sh := range []string{"bash", "sh"} {
		p := need(t, sh)
		cmd := exec.Command(p, "-c", "sleep 60; :")
		start(t, cmd)
		pid := cmd.Process.Pid
		waitFor(t, 10*time.Second, sh+" to exec", func() bool {
			rt := Identify("/proc", pid)
			return rt.Name == "shell"
		})
		rt := Identify("/proc", pid)
		if !strings.HasPrefix(rt.Evidence, "exe /") {
			t.Errorf("%s: evidence %q", sh, rt.Evidence)
		}
		agreesWithTable(t, pid, rt)
	}
}

func TestIdentifyPython(t *testing.T) {
	p := need(t, "python3")
	cmd := exec.Command(p, "-c", "import time; print('ready', flush=True); time.sleep(60)")
	out := start(t, cmd)
	pid := cmd.Process.Pid
	waitFor(t, 30*time.Second, "python to start", func() bool { return strings.Contains(out.String(), "ready") })
	rt := Identify("/proc", pid)
	if rt.Name != "python" || !strings.HasPrefix(rt.Version, "3.") {
		t.Fatalf("Identify = %#v, want python 3.x", rt)
	}
	agreesWithTable(t, pid, rt)
}

// javaSleep compiles a class that sleeps, once per test binary.
var javaSleep struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if javaSleep.dir != "" {
		os.RemoveAll(javaSleep.dir)
	}
	os.Exit(code)
}

func javaClassDir(t *testing.T) string {
	t.Helper()
	javac := need(t, "javac")
	javaSleep.once.Do(func() {
		dir, err := os.MkdirTemp("", "oomhero-runtimes-java")
		if err != nil {
			javaSleep.err = err
			return
		}
		src := filepath.Join(dir, "Sleep.java")
		// With the argument "usr1" the program registers its own SIGUSR1 handler,
		// the way an application opts in on HotSpot (sun.misc.Signal).
		code := `public class Sleep {
  public static void main(String[] a) throws Exception {
    if (a.length > 0 && a[0].equals("usr1")) {
      sun.misc.Signal.handle(new sun.misc.Signal("USR1"), s -> System.out.println("got USR1"));
    }
    System.out.println("ready");
    Thread.sleep(120000);
  }
}
`
		if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
			javaSleep.err = err
			return
		}
		if out, err := exec.Command(javac, "-d", dir, src).CombinedOutput(); err != nil {
			javaSleep.err = fmt.Errorf("javac: %v: %s", err, out)
			return
		}
		javaSleep.dir = dir
	})
	if javaSleep.err != nil {
		t.Fatal(javaSleep.err)
	}
	return javaSleep.dir
}

func TestIdentifyJava(t *testing.T) {
	java := need(t, "java")
	dir := javaClassDir(t)
	for _, xrs := range []bool{false, true} {
		args := []string{"-XX:+UseSerialGC", "-Xmx32m", "-cp", dir, "Sleep"}
		if xrs {
			args = append([]string{"-Xrs"}, args...)
		}
		cmd := exec.Command(java, args...)
		out := start(t, cmd)
		pid := cmd.Process.Pid
		waitFor(t, 60*time.Second, "the JVM to start (\"ready\")", func() bool { return strings.Contains(out.String(), "ready") })
		rt := Identify("/proc", pid)
		if rt.Name != "hotspot" || !strings.Contains(rt.Evidence, "libjvm.so") {
			t.Fatalf("Identify = %#v, want hotspot from libjvm.so", rt)
		}
		if !strings.HasPrefix(rt.Version, "17") && !strings.HasPrefix(rt.Version, "21") {
			t.Logf("version %q from %s", rt.Version, rt.Evidence)
		}
		if rt.Has("Xrs") != xrs {
			t.Errorf("-Xrs %v: options %q", xrs, rt.Options)
		}
		agreesWithTable(t, pid, rt)
		if !caught(pid, unix.SIGUSR2) || caught(pid, unix.SIGUSR1) {
			t.Errorf("HotSpot should catch SIGUSR2 (SR_signum) and not SIGUSR1")
		}
	}
}

// The hotspot SIGUSR2 row on a real JVM: builds without the upstream fix crash in
// SR_handler (Debian's 17.0.15 does), fixed builds log "stray SR signal".
func TestHotSpotSIGUSR2(t *testing.T) {
	java := need(t, "java")
	dir := javaClassDir(t)
	cwd := t.TempDir() // where an hs_err file lands
	cmd := exec.Command(java, "-Xmx32m", "-XX:-CreateCoredumpOnCrash", "-cp", dir, "Sleep")
	cmd.Dir = cwd
	out := start(t, cmd)
	pid := cmd.Process.Pid
	waitFor(t, 60*time.Second, "the JVM to start (\"ready\")", func() bool { return strings.Contains(out.String(), "ready") })
	if e := EffectOf(Identify("/proc", pid), unix.SIGUSR2); e.Harm != Harmful {
		t.Fatalf("hotspot SIGUSR2: %+v", e)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	var outcome string
	waitFor(t, 60*time.Second, "a crash in SR_handler or a \"stray SR signal\" warning", func() bool {
		s := out.String()
		switch {
		case strings.Contains(s, "SR_handler"):
			outcome = "crashed in SR_handler"
		case strings.Contains(s, "stray SR signal"):
			outcome = "logged a stray SR signal"
		}
		return outcome != ""
	})
	ver, _ := exec.Command(java, "-version").CombinedOutput()
	first, _, _ := strings.Cut(string(ver), "\n")
	t.Logf("%s: SIGUSR2 %s", strings.TrimSpace(first), outcome)
}

// The hotspot SIGUSR1 row: no VM handler, and an application may take it.
func TestJavaApplicationTakesSIGUSR1(t *testing.T) {
	java := need(t, "java")
	dir := javaClassDir(t)
	cmd := exec.Command(java, "-Xmx32m", "-cp", dir, "Sleep", "usr1")
	out := start(t, cmd)
	pid := cmd.Process.Pid
	waitFor(t, 60*time.Second, "the JVM to start (\"ready\")", func() bool { return strings.Contains(out.String(), "ready") })
	if !caught(pid, unix.SIGUSR1) {
		t.Fatalf("sun.misc.Signal.handle(USR1) did not install a handler: %s", out)
	}
	if e := EffectOf(Identify("/proc", pid), unix.SIGUSR1); e.Harm != Safe {
		t.Fatalf("hotspot SIGUSR1: %+v", e)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the application's handler (\"got USR1\")", func() bool { return strings.Contains(out.String(), "got USR1") })
	if err := syscall.Kill(pid, 0); err != nil {
		t.Errorf("the JVM is gone after its own SIGUSR1 handler ran: %v", err)
	}
}

func TestNodeSIGUSR1OpensInspector(t *testing.T) {
	node := need(t, "node", "nodejs")
	// --inspect-port=0: the inspector SIGUSR1 starts listens on a random port.
	cmd := exec.Command(node, "--inspect-port=0", "-e", "setTimeout(()=>{},120000)")
	out := start(t, cmd)
	pid := cmd.Process.Pid
	waitFor(t, 30*time.Second, "node to install its SIGUSR1 handler", func() bool { return caught(pid, unix.SIGUSR1) })
	rt := Identify("/proc", pid)
	if rt.Name != "node" || rt.Options != "" {
		t.Fatalf("Identify = %#v, want node without options", rt)
	}
	agreesWithTable(t, pid, rt)
	if e := EffectOf(rt, unix.SIGUSR1); e.Harm != Harmful {
		t.Fatalf("node SIGUSR1: %+v", e)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "\"Debugger listening\" after SIGUSR1", func() bool {
		return strings.Contains(out.String(), "Debugger listening on ws://127.0.0.1:")
	})

	// Options from the command line and from NODE_OPTIONS.
	cmd = exec.Command(node, "--heapsnapshot-signal=SIGUSR2", "-e", "setTimeout(()=>{},120000)")
	cmd.Env = append(os.Environ(), "NODE_OPTIONS=--report-on-signal")
	start(t, cmd)
	pid = cmd.Process.Pid
	waitFor(t, 30*time.Second, "node to install its SIGUSR2 handler", func() bool { return caught(pid, unix.SIGUSR2) })
	rt = Identify("/proc", pid)
	if rt.Options != "heapsnapshot-signal=SIGUSR2 report-signal=SIGUSR2" {
		t.Errorf("options %q", rt.Options)
	}
	if e := EffectOf(rt, unix.SIGUSR2); e.Harm != Harmful {
		t.Errorf("node with --heapsnapshot-signal=SIGUSR2: %+v", e)
	}
	agreesWithTable(t, pid, rt)
}

// postgresCluster starts a throwaway PostgreSQL cluster as user postgres in a
// temporary directory (Unix socket only) and returns the postmaster's pid and
// its log.
func postgresCluster(t *testing.T) (int, *output, string) {
	bin := need(t, "/usr/lib/postgresql/15/bin/postgres")
	binDir := filepath.Dir(bin)
	u, err := user.Lookup("postgres")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("user postgres: %v", err)
		}
		t.Skipf("user postgres: %v", err)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to run postgres as user postgres")
		}
		t.Skip("needs root to run postgres as user postgres")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "oomhero-runtimes-pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	as := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(binDir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
	initdb.SysProcAttr = as
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v: %s", err, out)
	}
	cmd := exec.Command(bin, "-D", data, "-k", dir, "-c", "listen_addresses=", "-p", "54329",
		"-c", "archive_mode=on", "-c", "archive_command=/bin/true", "-c", "logging_collector=off", "-c", "fsync=off")
	cmd.SysProcAttr = as
	cmd.Dir = dir
	out := start(t, cmd)
	return cmd.Process.Pid, out, dir
}

// children lists the pids whose parent is ppid.
func children(ppid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if p, ok := parsePPid(b); ok && p == ppid {
			pids = append(pids, pid)
		}
	}
	return pids
}

func roles(ppid int) map[string]int {
	m := map[string]int{}
	for _, pid := range children(ppid) {
		m[Identify("/proc", pid).Role] = pid
	}
	return m
}

func TestPostgresRoles(t *testing.T) {
	pm, out, dir := postgresCluster(t)
	want := []string{"checkpointer", "bgwriter", "walwriter", "autovacuum-launcher", "archiver", "logical-launcher"}
	waitFor(t, 60*time.Second, "the postmaster's children", func() bool {
		r := roles(pm)
		for _, w := range want {
			if r[w] == 0 {
				return false
			}
		}
		return true
	})
	rt := Identify("/proc", pm)
	if rt.Name != "postgres" || rt.Role != "postmaster" || rt.Version != "15" {
		t.Fatalf("postmaster: Identify = %#v", rt)
	}
	agreesWithTable(t, pm, rt)
	for role, pid := range roles(pm) {
		rt := Identify("/proc", pid)
		if rt.Name != "postgres" {
			t.Errorf("child %d (%s): %#v", pid, role, rt)
			continue
		}
		agreesWithTable(t, pid, rt)
	}
	// A client backend, from psql when it is installed.
	if psql, err := exec.LookPath("psql"); err == nil {
		u, _ := user.Lookup("postgres")
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		q := exec.Command(psql, "-h", dir, "-p", "54329", "-U", "postgres", "-c", "select pg_sleep(30)")
		q.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		start(t, q)
		waitFor(t, 30*time.Second, "a client backend", func() bool { return roles(pm)["backend"] != 0 })
		pid := roles(pm)["backend"]
		agreesWithTable(t, pid, Identify("/proc", pid))
	}

	t.Run("checkpointer SIGUSR2 means crash recovery", func(t *testing.T) {
		ckpt := roles(pm)["checkpointer"]
		if e := EffectOf(Identify("/proc", ckpt), unix.SIGUSR2); e.Harm != Harmful {
			t.Fatalf("checkpointer SIGUSR2: %+v", e)
		}
		if err := syscall.Kill(ckpt, syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		// The postmaster logs that the checkpointer exited and restarts everything.
		waitFor(t, 60*time.Second, "crash recovery in the postmaster's log", func() bool {
			s := out.String()
			return strings.Contains(s, "checkpointer process") && strings.Contains(s, "terminating any other active server processes")
		})
		t.Logf("postmaster log:\n%s", lastLines(out.String(), 8))
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePort(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*unix.SockaddrInet4).Port
}

func writeFile(t *testing.T, name, s string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkTree identifies the process and its children, wants the given roles, and
// checks each against the table.
func checkTree(t *testing.T, pid int, name string, wantRoles ...string) {
	t.Helper()
	waitFor(t, 60*time.Second, name+" roles "+strings.Join(wantRoles, ", "), func() bool {
		got := map[string]bool{Identify("/proc", pid).Role: true}
		for _, c := range children(pid) {
			got[Identify("/proc", c).Role] = true
		}
		for _, w := range wantRoles {
			if !got[w] {
				return false
			}
		}
		return true
	})
	// A child that has just started may not have installed (or blocked)
	// every signal yet (apache's event children block SIGUSR1 once their
	// threads run): the tree must agree with the table within a few
	// seconds, and what disagrees last is reported.
	var last *recorder
	agrees := func() bool {
		last = &recorder{}
		for _, p := range append([]int{pid}, children(pid)...) {
			rt := Identify("/proc", p)
			if rt.Name != name {
				last.Errorf("pid %d: Identify = %#v, want %s", p, rt, name)
				continue
			}
			agreesWithTable(last, p, rt)
		}
		return len(last.errs) == 0
	}
	for deadline := time.Now().Add(10 * time.Second); !agrees() && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	for _, l := range last.logs {
		t.Log(l)
	}
	for _, e := range last.errs {
		t.Error(e)
	}
}

// tb is what agreesWithTable needs of a *testing.T.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Fatal(args ...any)
	Logf(format string, args ...any)
}

// recorder is a tb that keeps what it is told, for checks that are retried.
type recorder struct{ errs, logs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...) }
func (r *recorder) Fatal(args ...any)                 { r.errs = append(r.errs, fmt.Sprint(args...)) }
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

// signalAndLog sends sig to pid and waits for want in the log file.
func signalAndLog(t *testing.T, pid int, sig syscall.Signal, log, want string) {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%q in %s after %v", want, log, sig), func() bool {
		b, _ := os.ReadFile(log)
		return bytes.Contains(b, []byte(want))
	})
}

func TestServers(t *testing.T) {
	t.Run("nginx", func(t *testing.T) {
		nginx := need(t, "nginx")
		dir := t.TempDir()
		conf := filepath.Join(dir, "nginx.conf")
		writeFile(t, conf, fmt.Sprintf(`worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log notice;
events {}
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server { listen 127.0.0.1:%[2]d; }
}
`, dir, freePort(t)))
		cmd := exec.Command(nginx, "-p", dir, "-c", conf, "-g", "daemon off;")
		start(t, cmd)
		checkTree(t, cmd.Process.Pid, "nginx", "master", "worker")
		// The master row: SIGUSR1 reopens the logs.
		signalAndLog(t, cmd.Process.Pid, syscall.SIGUSR1, filepath.Join(dir, "error.log"), "reopening logs")
	})
	t.Run("redis", func(t *testing.T) {
		redis := need(t, "redis-server")
		dir := t.TempDir()
		sock := filepath.Join(dir, "redis.sock")
		// rdb-key-save-delay keeps the BGSAVE child alive long enough to look at it.
		cmd := exec.Command(redis, "--port", "0", "--unixsocket", sock, "--dir", dir, "--save", "",
			"--appendonly", "no", "--rdb-key-save-delay", "3000000")
		out := start(t, cmd)
		pid := cmd.Process.Pid
		waitFor(t, 30*time.Second, "redis socket", func() bool { _, err := os.Stat(sock); return err == nil })
		resp := func(args ...string) {
			t.Helper()
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
				t.Fatal(err)
			}
			msg := fmt.Sprintf("*%d\r\n", len(args))
			for _, a := range args {
				msg += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
			}
			if _, err := unix.Write(fd, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 256)
			n, _ := unix.Read(fd, buf)
			if n <= 0 || buf[0] == '-' {
				t.Fatalf("redis %v: %q", args, buf[:max(n, 0)])
			}
		}
		resp("SET", "k", "v")
		resp("BGSAVE")
		checkTree(t, pid, "redis", "server", "fork-child")
		// The fork-child row: SIGUSR1 ends the save.
		for _, c := range children(pid) {
			if Identify("/proc", c).Role == "fork-child" {
				if err := syscall.Kill(c, syscall.SIGUSR1); err != nil {
					t.Fatal(err)
				}
			}
		}
		waitFor(t, 30*time.Second, "the fork child to exit on SIGUSR1", func() bool {
			return strings.Contains(out.String(), "Received SIGUSR1 in child, exiting now")
		})
	})
	t.Run("php-fpm", func(t *testing.T) {
		fpm := need(t, "php-fpm8.2", "php-fpm")
		dir := t.TempDir()
		conf := filepath.Join(dir, "php-fpm.conf")
		writeFile(t, conf, fmt.Sprintf(`[global]
pid = %[1]s/fpm.pid
error_log = %[1]s/fpm.log
[www]
listen = %[1]s/fpm.sock
pm = static
pm.max_children = 2
`, dir))
		cmd := exec.Command(fpm, "-F", "-R", "-y", conf, "-p", dir)
		start(t, cmd)
		checkTree(t, cmd.Process.Pid, "php-fpm", "master", "pool")
		// The master row: SIGUSR2 reloads.
		signalAndLog(t, cmd.Process.Pid, syscall.SIGUSR2, filepath.Join(dir, "fpm.log"), "Reloading in progress")
	})
	for _, mpm := range []string{"event", "prefork"} {
		t.Run("apache2 "+mpm, func(t *testing.T) {
			apache := need(t, "apache2", "httpd")
			mod := "/usr/lib/apache2/modules/mod_mpm_" + mpm + ".so"
			if _, err := os.Stat(mod); err != nil {
				t.Skipf("%s: %v", mod, err)
			}
			dir := t.TempDir()
			conf := filepath.Join(dir, "httpd.conf")
			writeFile(t, conf, fmt.Sprintf(`ServerRoot %[1]s
ServerName localhost
Listen 127.0.0.1:%[2]d
LoadModule mpm_%[3]s_module %[4]s
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
PidFile %[1]s/httpd.pid
ErrorLog %[1]s/error.log
LogLevel notice
Mutex file:%[1]s default
DefaultRuntimeDir %[1]s
User nobody
Group nogroup
DocumentRoot %[1]s
StartServers 2
`, dir, freePort(t), mpm, mod))
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(apache, "-f", conf, "-DFOREGROUND")
			start(t, cmd)
			checkTree(t, cmd.Process.Pid, "httpd", "parent", "child")
			defer signalAndLog(t, cmd.Process.Pid, syscall.SIGUSR1, filepath.Join(dir, "error.log"), "raceful restart") // event: "Doing graceful restart", prefork: "Graceful restart requested"
			for _, c := range children(cmd.Process.Pid) {
				if rt := Identify("/proc", c); rt.Role == "child" && !rt.Has("mpm="+mpm) {
					t.Errorf("child %d: options %q, want mpm=%s", c, rt.Options, mpm)
				}
			}
		})
	}
}

// Identify must stay cheap: it runs once per process per episode.
func TestIdentifyCost(t *testing.T) {
	java := need(t, "java")
	dir := javaClassDir(t)
	cmd := exec.Command(java, "-Xmx32m", "-cp", dir, "Sleep")
	out := start(t, cmd)
	waitFor(t, 60*time.Second, "the JVM", func() bool { return strings.Contains(out.String(), "ready") })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 20
	t0 := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if rt := Identify("/proc", cmd.Process.Pid); rt.Name != "hotspot" {
			t.Fatalf("%#v", rt)
		}
	}
	per := time.Since(t0) / n
	la, _ := os.ReadFile("/proc/loadavg")
	t.Logf("Identify of a JVM: %v per call (load %s)", per, strings.Fields(string(la))[0])
	if per > 500*time.Millisecond {
		t.Errorf("Identify of a JVM takes %v", per)
	}
}

package runtimes

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	rtable "github.com/oomhero/oomhero/internal/runtimes"
	"github.com/oomhero/oomhero/testenv/pods"
	"golang.org/x/sys/unix"
)

const oomheroTag = "localhost/oomhero:runtimes"

var (
	setupOnce sync.Once
	lab       *pods.Lab
	images    map[string]string // runtime -> tag
	setupErr  error
)

func TestMain(m *testing.M) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigc
		fmt.Fprintf(os.Stderr, "runtimes: %v: tearing down pods\n", s)
		pods.DownAll()
		os.Exit(2)
	}()
	code := m.Run()
	pods.DownAll()
	if lab != nil {
		lab.Close()
	}
	os.Exit(code)
}

// need skips (fails under CI=true) when the machine cannot run the suite,
// and builds oomhero's image and the runtime images once.
func need(t *testing.T) (*pods.Lab, map[string]string) {
	t.Helper()
	if err := pods.Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		if os.Getenv("CI") != "true" && strings.Contains(setupErr.Error(), "is not installed") {
			t.Skipf("skipping: %v", setupErr)
		}
		t.Fatalf("runtime suite setup: %v", setupErr)
	}
	return lab, images
}

func setup() error {
	root, err := pods.FindRoot()
	if err != nil {
		return err
	}
	if lab, err = pods.NewLab(root); err != nil {
		return err
	}
	lab.Log = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "runtimes: "+format+"\n", args...) }
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if err := lab.SweepOrphans(ctx); err != nil {
		return err
	}
	if err := buildOomhero(ctx, lab); err != nil {
		return err
	}
	testapp := filepath.Join(lab.Dir, "testapp")
	if err := lab.GoBuild(ctx, "./testenv/app", testapp); err != nil {
		return err
	}
	specs, err := Specs(ctx, root, lab.Dir, testapp)
	if err != nil {
		return err
	}
	images = map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(specs))
	for name, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			tag, err := s.Build(ctx, lab, lab.Dir)
			if err != nil {
				errs <- err
				return
			}
			lab.Log("image %s ready (%v)", tag, time.Since(start).Round(time.Millisecond))
			mu.Lock()
			images[name] = tag
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	return nil
}

// buildOomhero builds oomhero's image from this checkout, or from the
// binary OOMHERO_RT_OOMHERO names (to run the suite against another build,
// e.g. the seed's, and see it fail).
func buildOomhero(ctx context.Context, l *pods.Lab) error {
	bin := os.Getenv("OOMHERO_RT_OOMHERO")
	if bin == "" {
		return l.BuildOomheroImage(ctx, oomheroTag)
	}
	bctx := filepath.Join(l.Dir, "build-oomhero-rt")
	if err := os.MkdirAll(filepath.Join(bctx, "bin"), 0o755); err != nil {
		return err
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("OOMHERO_RT_OOMHERO: %w", err)
	}
	for _, name := range []string{"oomhero", "oomhero-node"} { // the Dockerfile copies both
		if err := os.WriteFile(filepath.Join(bctx, "bin", name), b, 0o755); err != nil {
			return err
		}
	}
	l.Log("building image %s from %s", oomheroTag, bin)
	_, err = l.Podman(ctx, "build", "-q", "-f", filepath.Join(l.Root, "Dockerfile"), "-t", oomheroTag, bctx)
	return err
}

// Case is one pod: a runtime next to oomhero with its default
// configuration, and what the app container declares.
type Case struct {
	Name  string
	Image string // key of Specs
	Args  []string
	Env   []pods.EnvVar // the app container's declaration
	// Ballast: the runtime grows by itself (testdata ballast); otherwise
	// the test app leaker of the server images.
	Ballast bool
	Ready   string // log text when the runtime is ready
	Health  func(ctx context.Context, r *Result) error
	// Harm lists log texts (regexps) that show the runtime acted on a signal
	// for its own purposes (crash, debugger, reload, reopen, restart).
	Harm []string
	// Expect: "unharmed", or "harm" (a harmful signal declared on purpose).
	Expect string
	// Handler lists log texts the example's handlers write: each must
	// appear (the declaration reached the application).
	Handler []string
	// Refused lists signals oomhero must refuse (defaults): at least one
	// refusal of each, for a process of the runtime.
	Refused []string
	// Files lists glob patterns (in the container) that must exist at the
	// end, e.g. a heap snapshot.
	Files []string
	// Ignore matches command lines of processes allowed to come and go.
	Ignore *regexp.Regexp
	// Sidecar is oomhero's own environment (default: none, oomhero's
	// defaults), e.g. OOMHERO_ALLOW for runtimes whose declaration cannot be
	// read (see the nginx and php-fpm cases).
	Sidecar []pods.EnvVar
	// HoldAt is where the ballast stops growing, percent of the limit
	// (default 92).
	HoldAt float64
}

// Result is what a case's run produced.
type Result struct {
	Case       Case
	Run        *pods.Running
	Main       pods.State
	CgroupDir  string
	Before     []Proc
	After      []Proc
	Identity   map[int]rtable.Runtime // pod pid -> runtime, identified before the growth
	AppLog     string
	Delta      string // app log after the growth started
	OomheroLog string
	Oomhero    []pods.Entry
	MainAlive  bool
	HealthErr  error
	Harms      []string
	Version    string
	Peak       float64  // highest working set seen, percent of the limit
	Critical   bool     // oomhero reached critical for the app
	Found      []string // the case's Files found in the container
	States     string   // the containers' states at the end, for diagnostics
}

func env(kv ...string) []pods.EnvVar {
	var out []pods.EnvVar
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, pods.EnvVar{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func httpHealth(path string) func(context.Context, *Result) error {
	return func(ctx context.Context, r *Result) error {
		line, err := HTTPGet(ctx, r.Main.Pid, "127.0.0.1:8080", path)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "HTTP/") {
			return fmt.Errorf("GET %s: %q is not an HTTP answer", path, line)
		}
		if path == "/healthz" && !strings.Contains(line, " 200") {
			return fmt.Errorf("GET %s: %s", path, line)
		}
		return nil
	}
}

var (
	javaArgs    = []string{"-Xmx220m", "-XX:ErrorFile=/tmp/hs_err_pid%p.log", "-cp", "/app", "Ballast", "OomheroListener"}
	javaHarm    = []string{`A fatal error has been detected`, `hs_err_pid`, `(?i)stray.*SR`, `SR_handler`}
	nodeArgs    = []string{"-r", "/app/ballast.js", "/app/oomhero-listener.js"}
	nodeHarm    = []string{`Debugger listening`, `(?i)inspector`}
	pyArgs      = []string{"/app/ballast.py", "/app/oomhero_example.py"}
	pgHarm      = []string{`terminated by signal`, `exited with exit code`, `terminating any other active server processes`, `all server processes terminated`, `not properly shut down`, `redo starts`, `shutdown request`}
	nginxHarm   = []string{`reopening logs`, `reconfiguring`, `changing binary`, `shutting down`, `exiting`, `exited with code`}
	httpdHarm   = []string{`SIGUSR1 received`, `SIGHUP received`, `SIGTERM`, `SIGWINCH`, `(?i)graceful`, `resuming normal operations`, `caught SIG`}
	phpHarm     = []string{`(?i)reloading`, `re-opened`, `(?i)terminating`, `exited on signal`}
	redisHarm   = []string{`Received SIG`, `(?i)shutdown`, `ready to exit`}
	pgBackends  = regexp.MustCompile(`autovacuum worker|\[local\]|^psql|127\.0\.0\.1`)
	notifyURL   = "http://127.0.0.1:8080/oomhero"
	httpLevels  = []string{`oomhero: level=warning`, `oomhero: level=critical`}
	pyHandlers  = []string{`oomhero: warning \(SIGUSR1\)`, `oomhero: critical \(SIGUSR2\)`}
	postgresSQL = func(ctx context.Context, r *Result) error {
		out, err := r.Run.Lab.PodmanCombined(ctx, "exec", r.Run.ContainerName("app"), "/usr/lib/postgresql/15/bin/psql", "-h", "/tmp", "-U", "postgres", "-Atc", "select 1")
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(out)) != "1" {
			return fmt.Errorf("select 1: %q", out)
		}
		return nil
	}
)

func cases() []Case {
	return []Case{
		{Name: "java-default", Image: "java", Args: javaArgs, Ballast: true, Ready: "example: listening", Health: httpHealth("/oomhero"),
			Harm: javaHarm, Expect: "unharmed", Refused: []string{"SIGUSR2"}},
		{Name: "java-http", Image: "java", Args: javaArgs, Ballast: true, Ready: "example: listening", Health: httpHealth("/oomhero"),
			Env: env("OOMHERO_NOTIFY_URL", notifyURL), Harm: javaHarm, Expect: "unharmed", Handler: httpLevels},
		{Name: "java-sigusr2", Image: "java", Args: javaArgs, Ballast: true, Ready: "example: listening",
			Env: env("OOMHERO_CRITICAL_SIGNAL", "SIGUSR2"), Harm: javaHarm, Expect: "harm"},

		{Name: "node-default", Image: "node", Args: nodeArgs, Ballast: true, Ready: "example: listening", Health: httpHealth("/oomhero"),
			Harm: nodeHarm, Expect: "unharmed", Refused: []string{"SIGUSR1"}},
		{Name: "node-http", Image: "node", Args: nodeArgs, Ballast: true, Ready: "example: listening", Health: httpHealth("/oomhero"),
			Env: env("OOMHERO_NOTIFY_URL", notifyURL), Harm: nodeHarm, Expect: "unharmed", Handler: httpLevels},
		{Name: "node-heapsnapshot", Image: "node", Args: append([]string{"--heapsnapshot-signal=SIGUSR2", "--diagnostic-dir=/tmp"}, nodeArgs...), Ballast: true,
			Ready: "example: listening", Health: httpHealth("/oomhero"),
			// A snapshot needs memory of its own: critical early, held below.
			Env:    env("OOMHERO_WARNING_SIGNAL", "none", "OOMHERO_CRITICAL_SIGNAL", "SIGUSR2", "OOMHERO_REPEAT", "once", "OOMHERO_WARNING", "60", "OOMHERO_CRITICAL", "70"),
			HoldAt: 73, Harm: nodeHarm, Expect: "unharmed", Files: []string{"/tmp/*.heapsnapshot"}},
		{Name: "node-sigusr1", Image: "node", Args: nodeArgs, Ballast: true, Ready: "example: listening",
			Env: env("OOMHERO_WARNING_SIGNAL", "SIGUSR1"), Harm: nodeHarm, Expect: "harm"},

		{Name: "python-default", Image: "python", Args: pyArgs, Ballast: true, Ready: "handlers for SIGUSR1 and SIGUSR2 installed",
			Expect: "unharmed", Handler: pyHandlers},
		{Name: "python-declared", Image: "python", Args: pyArgs, Ballast: true, Ready: "handlers for SIGUSR1 and SIGUSR2 installed",
			Env:    env("OOMHERO_WARNING_SIGNAL", "SIGUSR1", "OOMHERO_CRITICAL_SIGNAL", "SIGUSR2", "OOMHERO_REPEAT", "once"),
			Expect: "unharmed", Handler: pyHandlers},

		{Name: "postgres-default", Image: "postgres", Ready: "ready to accept connections", Health: postgresSQL,
			Harm: pgHarm, Expect: "unharmed", Refused: []string{"SIGUSR2"}, Ignore: pgBackends},
		{Name: "postgres-sigusr2", Image: "postgres", Ready: "ready to accept connections",
			Env: env("OOMHERO_CRITICAL_SIGNAL", "SIGUSR2"), Harm: pgHarm, Expect: "harm", Ignore: pgBackends},

		{Name: "nginx-default", Image: "nginx", Ready: "start worker process", Health: httpHealth("/healthz"),
			Harm: nginxHarm, Expect: "unharmed", Refused: []string{"SIGUSR1"}},
		// nginx and php-fpm overwrite their environment with their process
		// titles (/proc/<pid>/environ of every nginx or php-fpm process
		// holds the title): their containers cannot declare anything, so
		// the opt-in is the sidecar's --allow.
		{Name: "nginx-allow-sigusr1", Image: "nginx", Ready: "start worker process", Health: httpHealth("/healthz"),
			Sidecar: env("OOMHERO_ALLOW", "nginx:SIGUSR1"), Harm: nginxHarm, Expect: "harm"},

		{Name: "httpd-default", Image: "httpd", Ready: "resuming normal operations", Health: httpHealth("/healthz"),
			Harm: httpdHarm, Expect: "unharmed", Refused: []string{"SIGUSR1"}},
		{Name: "httpd-sigusr1", Image: "httpd", Ready: "resuming normal operations",
			Env: env("OOMHERO_WARNING_SIGNAL", "SIGUSR1", "OOMHERO_CRITICAL_SIGNAL", "none"), Harm: httpdHarm, Expect: "harm"},

		{Name: "php-fpm-default", Image: "php-fpm", Ready: "ready to handle connections", Health: fpmHealth,
			Harm: phpHarm, Expect: "unharmed", Refused: []string{"SIGUSR1"}},
		{Name: "php-fpm-allow-sigusr2", Image: "php-fpm", Ready: "ready to handle connections",
			Sidecar: env("OOMHERO_ALLOW", "php-fpm:SIGUSR2"), Harm: phpHarm, Expect: "harm"},

		{Name: "redis-default", Image: "redis", Ready: "Ready to accept connections", Health: redisHealth,
			Harm: redisHarm, Expect: "unharmed"},
	}
}

func fpmHealth(ctx context.Context, r *Result) error {
	out, err := FastCGIPing(ctx, r.Main.Pid, "127.0.0.1:9000", "/ping")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "pong") {
		return fmt.Errorf("php-fpm /ping: %q", out)
	}
	return nil
}

func redisHealth(ctx context.Context, r *Result) error {
	out, err := RedisPing(ctx, r.Main.Pid, "127.0.0.1:6379")
	if err != nil {
		return err
	}
	if out != "+PONG" {
		return fmt.Errorf("redis PING: %q", out)
	}
	return nil
}

func TestRuntimes(t *testing.T) {
	l, imgs := need(t)
	only := os.Getenv("OOMHERO_RT_ONLY")
	var re *regexp.Regexp
	if only != "" {
		re = regexp.MustCompile(only)
	}
	for _, c := range cases() {
		if re != nil && !re.MatchString(c.Name) {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			r, err := runCase(ctx, t, l, imgs[c.Image], c)
			if r != nil {
				dir := saveLogs(c.Name, map[string]string{"app": r.AppLog, "oomhero": r.OomheroLog})
				t.Logf("logs in %s", dir)
			}
			if err != nil {
				states := ""
				if r != nil {
					states = "\ncontainers: " + strings.ReplaceAll(strings.TrimSpace(r.States), "\n", "; ")
				}
				t.Fatalf("%s: %v%s", c.Name, err, states)
			}
			check(t, r)
		})
	}
}

func saveLogs(name string, logs map[string]string) string {
	dir := filepath.Join(os.TempDir(), "oomhero-runtimes", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ""
	}
	for n, s := range logs {
		os.WriteFile(filepath.Join(dir, n+".log"), []byte(s), 0o644)
	}
	return dir
}

// runCase plays the case's pod, waits until oomhero watches the app and the
// runtime is ready, starts the growth, holds it at 93 % and waits for the
// critical level (then 4 s of cooldown repeats), and collects everything.
func runCase(ctx context.Context, t *testing.T, l *pods.Lab, image string, c Case) (*Result, error) {
	if image == "" {
		return nil, fmt.Errorf("no image %q", c.Image)
	}
	app := pods.Container{Name: "app", Image: image, Args: c.Args, Env: c.Env, Memory: "256Mi"}
	pod := pods.Pod{Name: pods.PodName("rt-" + c.Name), Containers: []pods.Container{app, pods.OomheroContainer(oomheroTag, pods.SourceFromEnv(), c.Sidecar...)}}
	run, err := l.Play(ctx, pod)
	if err != nil {
		return nil, err
	}
	defer run.Down()
	r := &Result{Case: c, Run: run, Identity: map[int]rtable.Runtime{}}
	defer func() {
		lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer lcancel()
		if out, err := run.Logs(lctx, "app"); err == nil {
			if len(out) >= len(r.AppLog) {
				r.Delta = out[len(r.AppLog):]
			}
			r.AppLog = out
		}
		if out, err := run.Logs(lctx, "oomhero"); err == nil {
			r.OomheroLog = out
			r.Oomhero = pods.ParseOomheroLog(out)
		}
		r.States = run.States(lctx)
	}()
	if r.Main, err = run.State(ctx, "app"); err != nil {
		return r, err
	}
	if r.CgroupDir, err = memCgroupDir(r.Main.Pid); err != nil {
		return r, err
	}
	if _, err := run.WaitLog(ctx, "oomhero", func(log string) bool {
		_, ok, _ := pods.FindWatched(pods.ParseOomheroLog(log), r.Main.ID)
		return ok
	}); err != nil {
		return r, fmt.Errorf("oomhero never watched the app: %w", err)
	}
	if _, err := run.WaitLog(ctx, "app", func(log string) bool { return strings.Contains(log, c.Ready) }); err != nil {
		return r, fmt.Errorf("%s not ready (no %q in its log): %w", c.Image, c.Ready, err)
	}
	r.Version = version(ctx, run, c.Image)
	if c.Health != nil {
		hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.Health(hctx, r)
		hcancel()
		if err != nil {
			return r, fmt.Errorf("health before the growth: %w", err)
		}
	}
	if c.Image == "node" {
		// Node installs its SIGUSR1 handler about a second after start.
		time.Sleep(1500 * time.Millisecond)
	}
	if r.Before, err = Procs(r.CgroupDir); err != nil {
		return r, err
	}
	for _, p := range r.Before {
		r.Identity[p.PodPID] = rtable.Identify("/proc", p.HostPID)
	}
	if r.AppLog, err = run.Logs(ctx, "app"); err != nil {
		return r, err
	}
	// Start the growth.
	if c.Ballast {
		err = writeInRoot(r.Main.Pid, "/tmp/ballast.go")
	} else {
		var p Proc
		if p, err = findProc(r.Before, "testapp"); err == nil {
			err = unix.Kill(p.HostPID, unix.SIGWINCH)
		}
	}
	if err != nil {
		return r, fmt.Errorf("start the growth: %w", err)
	}
	// Hold (ballast) at HoldAt percent of the limit: a monitor of its own,
	// reading only cgroup files, so podman's slowness under load never
	// delays the stop.
	holdAt := c.HoldAt
	if holdAt == 0 {
		holdAt = 92
	}
	mctx, mcancel := context.WithCancel(ctx)
	peak := make(chan float64, 1)
	go func() {
		stopped, pk := false, 0.0
		defer func() { peak <- pk }()
		for {
			if ws, limit, err := WorkingSet(r.CgroupDir); err == nil && limit > 0 {
				pct := 100 * float64(ws) / float64(limit)
				pk = max(pk, pct)
				if c.Ballast && !stopped && pct >= holdAt {
					stopped = writeInRoot(r.Main.Pid, "/tmp/ballast.stop") == nil
				}
			}
			select {
			case <-mctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	endMonitor := func() { mcancel(); r.Peak = <-peak }
	// Wait for the critical level, then 4 s of cooldown repeats.
	var critAt time.Time
	for {
		if critAt.IsZero() {
			if out, err := run.Logs(ctx, "oomhero"); err == nil && reachedCritical(pods.ParseOomheroLog(out), r.Main.ID, r.Before) {
				critAt = time.Now()
				r.Critical = true
			}
		}
		if !critAt.IsZero() && time.Since(critAt) > 4*time.Second {
			break
		}
		if unix.Kill(r.Main.Pid, 0) != nil {
			time.Sleep(2 * time.Second) // let oomhero log what it saw
			break
		}
		select {
		case <-ctx.Done():
			endMonitor()
			return r, fmt.Errorf("the app never reached critical (peak %.1f %%): %w", r.Peak, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	endMonitor()
	st, err := run.State(ctx, "app")
	r.MainAlive = err == nil && st.Status == "running" && st.Pid == r.Main.Pid
	if r.MainAlive {
		r.After, _ = Procs(r.CgroupDir)
		if c.Health != nil {
			hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
			r.HealthErr = c.Health(hctx, r)
			hcancel()
		}
		// Files (a heap snapshot) may take a while under load.
		for deadline := time.Now().Add(60 * time.Second); len(c.Files) > 0 && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			all := true
			r.Found = r.Found[:0]
			for _, g := range c.Files {
				m, _ := filepath.Glob(filepath.Join(fmt.Sprintf("/proc/%d/root", r.Main.Pid), g))
				if len(m) == 0 {
					all = false
					continue
				}
				fi, err := os.Stat(m[0])
				if err == nil {
					r.Found = append(r.Found, fmt.Sprintf("%s (%d bytes, written %s)", filepath.Base(m[0]), fi.Size(), fi.ModTime().UTC().Format("15:04:05.000")))
				}
			}
			if all {
				break
			}
		}
		if c.Image == "node" {
			if conn, err := DialIn(ctx, r.Main.Pid, "127.0.0.1:9229"); err == nil {
				conn.Close()
				r.Harms = append(r.Harms, "the inspector port 127.0.0.1:9229 is open")
			}
		}
	}
	return r, nil
}

// reachedCritical tells whether oomhero logged the critical level for the
// app's container (its "level changed" entry, or anything it sent or
// refused at the critical level to one of the app's processes).
func reachedCritical(es []pods.Entry, id string, procs []Proc) bool {
	pids := map[string]bool{}
	for _, p := range procs {
		pids[fmt.Sprint(p.PodPID)] = true
	}
	for _, e := range es {
		if e.MemoryLevel == "critical" && pids[e.Str("pid")] {
			return true
		}
		// The app is the pod's only container with a limit (oomhero's name
		// for it can change: it names a container after its process).
		if e.Msg == "level changed" && e.Str("to") == "critical" {
			return true
		}
	}
	return false
}

// version asks the runtime for its version (the report records it).
func version(ctx context.Context, run *pods.Running, image string) string {
	var args []string
	switch image {
	case "java":
		args = []string{JavaHome + "/bin/java", "-version"}
	case "node":
		args = []string{"/usr/bin/node", "--version"}
	case "python":
		args = []string{"/usr/bin/python3.11", "--version"}
	case "postgres":
		args = []string{"/usr/lib/postgresql/15/bin/postgres", "--version"}
	case "nginx":
		args = []string{"/usr/sbin/nginx", "-v"}
	case "httpd":
		args = []string{"/usr/sbin/apache2", "-v"}
	case "php-fpm":
		args = []string{"/usr/sbin/php-fpm8.2", "-n", "-v"}
	case "redis":
		args = []string{"/usr/bin/redis-server", "--version"}
	default:
		return ""
	}
	out, err := run.Lab.PodmanCombined(ctx, append([]string{"exec", run.ContainerName("app")}, args...)...)
	if err != nil {
		return "?"
	}
	s := strings.TrimSpace(string(out))
	if i := strings.IndexByte(s, '\n'); i > 0 && image != "java" {
		s = s[:i]
	}
	if image == "java" {
		if lines := strings.Split(s, "\n"); len(lines) > 1 {
			s = strings.TrimSpace(lines[1])
		}
	}
	return s
}

// delivery is one signal oomhero sent or refused to a process of the app.
type delivery struct {
	PodPID  int
	Command string
	Signal  string
	Level   string
	Refused bool
	Msg     string
}

func deliveries(r *Result) []delivery {
	pids := map[int]bool{}
	for _, p := range r.Before {
		pids[p.PodPID] = true
	}
	var out []delivery
	for _, e := range r.Oomhero {
		refused := strings.Contains(strings.ToLower(e.Msg), "refus")
		if e.Msg != "signal sent" && !refused {
			continue
		}
		pid, err := e.Int("pid")
		if err != nil || !pids[pid] {
			continue
		}
		out = append(out, delivery{PodPID: pid, Command: e.Str("command"), Signal: e.Str("signal"), Level: e.MemoryLevel, Refused: refused, Msg: e.Msg})
	}
	return out
}

// harms returns what the runtime's log (after the growth started) and its
// processes show of a signal acted on for the runtime's own purposes.
func harms(r *Result) []string {
	out := append([]string(nil), r.Harms...)
	for _, h := range r.Case.Harm {
		re := regexp.MustCompile(h)
		for _, line := range strings.Split(r.Delta, "\n") {
			if strings.HasPrefix(line, "event=") { // the leaker's own lines
				continue
			}
			if re.MatchString(line) {
				out = append(out, "log: "+strings.TrimSpace(line))
				break
			}
		}
	}
	if !r.MainAlive {
		out = append(out, fmt.Sprintf("the main process (pid %d) is gone", r.Main.Pid))
		return out
	}
	key := func(p Proc) string { return fmt.Sprintf("%d/%d", p.HostPID, p.Start) }
	// Transient: a zombie or an exiting process (empty command line), the
	// runc init of a `podman exec` (the health checks), the exec'd client.
	transient := regexp.MustCompile(`^$|^runc|^/usr/lib/postgresql/15/bin/psql`)
	ignored := func(p Proc) bool {
		return transient.MatchString(p.Cmdline) || r.Case.Ignore != nil && r.Case.Ignore.MatchString(p.Cmdline)
	}
	after := map[string]bool{}
	for _, p := range r.After {
		after[key(p)] = true
	}
	before := map[string]bool{}
	for _, p := range r.Before {
		before[key(p)] = true
		if !after[key(p)] && !ignored(p) {
			out = append(out, "process gone: "+p.String())
		}
	}
	for _, p := range r.After {
		if !before[key(p)] && !ignored(p) {
			out = append(out, "new process: "+p.String())
		}
	}
	return out
}

func check(t *testing.T, r *Result) {
	c := r.Case
	r.Critical = r.Critical || reachedCritical(r.Oomhero, r.Main.ID, r.Before)
	t.Logf("%s: %s; peak working set %.1f %% of the limit; critical reached: %v", c.Name, r.Version, r.Peak, r.Critical)
	if !r.Critical && r.MainAlive {
		t.Errorf("oomhero never reached critical for the app (peak %.1f %%): the case proves nothing", r.Peak)
	}
	hs := harms(r)
	ds := deliveries(r)
	for _, d := range uniq(ds) {
		what := "sent"
		if d.Refused {
			what = "refused (" + d.Msg + ")"
		}
		t.Logf("oomhero: %s %s at %s to pid %d (%s, %s)", d.Signal, what, d.Level, d.PodPID, d.Command, r.Identity[d.PodPID])
	}
	if n := len(pods.Select(r.Oomhero, "notification sent", "")); n > 0 {
		t.Logf("oomhero: %d HTTP notifications sent", n)
	}
	switch c.Expect {
	case "unharmed":
		for _, h := range hs {
			t.Errorf("harmed: %s", h)
		}
		if r.MainAlive && r.HealthErr != nil {
			t.Errorf("health after the growth: %v", r.HealthErr)
		}
		if !r.MainAlive {
			t.Errorf("the runtime's main process is gone")
		}
	case "harm":
		if len(hs) == 0 {
			t.Errorf("declared a harmful signal but saw no effect (log, processes): the detector or the delivery is broken")
		}
		t.Logf("effect of the declared signal: %s", strings.Join(hs, "; "))
	}
	for _, h := range c.Handler {
		if !regexp.MustCompile(h).MatchString(r.Delta) {
			t.Errorf("the example's handler never logged %q", h)
		}
	}
	if len(c.Files) > 0 && r.MainAlive {
		if len(r.Found) < len(c.Files) {
			t.Errorf("want %v in the container, found %v", c.Files, r.Found)
		} else {
			t.Logf("found %s", strings.Join(r.Found, ", "))
		}
	}
	for _, sig := range c.Refused {
		found := false
		for _, d := range ds {
			if d.Refused && d.Signal == sig && r.Identity[d.PodPID].Name != "" && r.Identity[d.PodPID].Name != "go" {
				found = true
			}
		}
		if !found {
			t.Errorf("oomhero's log shows no refusal of %s for the runtime's processes", sig)
		}
	}
	compareTable(t, r, hs, ds)
}

// compareTable checks what the suite saw against internal/runtimes.EffectOf
// for the processes the signals went to.
// uniq drops repeats (the cooldown resends), keeping the first of each
// process, signal and outcome.
func uniq(ds []delivery) []delivery {
	seen := map[string]bool{}
	var out []delivery
	for _, d := range ds {
		k := fmt.Sprint(d.PodPID, d.Signal, d.Refused)
		if !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	return out
}

func compareTable(t *testing.T, r *Result, hs []string, ds []delivery) {
	ds = uniq(ds)
	sentHarmful := map[string][]string{} // signal -> processes the table calls harmful
	sentAny := map[string]bool{}
	for _, d := range ds {
		rt := r.Identity[d.PodPID]
		num := unix.SignalNum(d.Signal)
		if num == 0 {
			t.Errorf("oomhero logged an unknown signal %q", d.Signal)
			continue
		}
		eff := rtable.EffectOf(rt, num)
		row := fmt.Sprintf("%s %s: table %s %q (%s)", rt, d.Signal, harmName(eff.Harm), eff.What, eff.Source)
		if d.Refused {
			if eff.Harm != rtable.Harmful {
				t.Errorf("oomhero refused %s to pid %d (%s) but the table does not call it harmful: %s", d.Signal, d.PodPID, d.Command, row)
			}
			continue
		}
		sentAny[d.Signal] = true
		if eff.Harm == rtable.Harmful {
			sentHarmful[d.Signal] = append(sentHarmful[d.Signal], fmt.Sprintf("pid %d %s", d.PodPID, rt))
			if !consents(r.Case, rt, d.Signal) {
				t.Errorf("oomhero sent %s to pid %d (%s) without a declaration, but the table calls it harmful: %s", d.Signal, d.PodPID, d.Command, row)
			}
		}
		t.Logf("observed: %s to pid %d (%s): %s", d.Signal, d.PodPID, d.Command, row)
	}
	if len(hs) > 0 && len(sentAny) > 0 && len(sentHarmful) == 0 {
		t.Errorf("the runtime was harmed (%s) after %v, but the table calls none of the processes signalled harmful", strings.Join(hs, "; "), keys(sentAny))
	}
	if len(hs) == 0 && len(r.Case.Handler) > 0 {
		for sig, ps := range sentHarmful {
			t.Errorf("%s reached the application's handler unharmed, but the table calls it harmful for %v", sig, ps)
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// consents tells whether the case opted in to sig for runtime rt: declared
// on the app container, or allowed on the sidecar.
func consents(c Case, rt rtable.Runtime, sig string) bool {
	for _, e := range c.Env {
		if (e.Name == "OOMHERO_WARNING_SIGNAL" || e.Name == "OOMHERO_CRITICAL_SIGNAL") && strings.EqualFold(e.Value, sig) {
			return true
		}
	}
	for _, e := range c.Sidecar {
		if e.Name == "OOMHERO_ALLOW" {
			for _, a := range strings.Split(e.Value, ",") {
				if strings.EqualFold(strings.TrimSpace(a), rt.Name+":"+sig) {
					return true
				}
			}
		}
	}
	return false
}

func harmName(h rtable.Harm) string {
	switch h {
	case rtable.Safe:
		return "safe"
	case rtable.Dropped:
		return "dropped"
	case rtable.Harmful:
		return "harmful"
	}
	return fmt.Sprint(int(h))
}

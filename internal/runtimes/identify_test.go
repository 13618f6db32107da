package runtimes

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/oomhero/oomhero/internal/safename"
	"golang.org/x/sys/unix"
)

func TestClassify(t *testing.T) {
	jvm := "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so"
	cases := []struct {
		name string
		f    facts
		want Runtime // Evidence is checked for non-emptiness only
	}{
		{"hotspot debian", facts{Exe: "/usr/lib/jvm/java-17-openjdk-amd64/bin/java", Comm: "java", Args: []string{"java", "-cp", "/app", "Main"},
			Files: []string{"/usr/lib/jvm/java-17-openjdk-amd64/bin/java", jvm}}, Runtime{Name: "hotspot", Version: "17"}},
		{"hotspot temurin in a jar", facts{Exe: "/opt/java/openjdk/bin/java", Comm: "java", Args: []string{"java", "-jar", "app.jar", "-Xrs"},
			Files: []string{"/opt/java/openjdk/lib/server/libjvm.so"}}, Runtime{Name: "hotspot"}},
		{"hotspot -Xrs", facts{Exe: "/usr/local/jdk-21.0.2+13/bin/java", Comm: "java", Args: []string{"java", "-Xmx1g", "-Xrs", "Main"},
			Files: []string{"/usr/local/jdk-21.0.2+13/lib/server/libjvm.so"}}, Runtime{Name: "hotspot", Version: "21.0.2", Options: "Xrs"}},
		{"hotspot -Xrs from JAVA_TOOL_OPTIONS", facts{Exe: "/usr/bin/java", Comm: "java", Args: []string{"java", "Main"}, Files: []string{jvm},
			Env: map[string]string{"JAVA_TOOL_OPTIONS": "-Xmx1g -Xrs"}}, Runtime{Name: "hotspot", Version: "17", Options: "Xrs"}},
		{"temurin image with JAVA_VERSION", facts{Exe: "/opt/java/openjdk/bin/java", Comm: "java", Files: []string{"/opt/java/openjdk/lib/server/libjvm.so"},
			Env: map[string]string{"JAVA_VERSION": "jdk-17.0.9+9"}}, Runtime{Name: "hotspot", Version: "17.0.9+9"}},
		{"JAVA_VERSION that contradicts the path", facts{Exe: "/usr/lib/jvm/java-17-openjdk-amd64/bin/java", Files: []string{jvm},
			Env: map[string]string{"JAVA_VERSION": "21.0.1"}}, Runtime{Name: "hotspot", Version: "17"}},
		{"JAVA_VERSION garbage", facts{Exe: "/opt/java/openjdk/bin/java", Files: []string{"/opt/java/openjdk/lib/server/libjvm.so"},
			Env: map[string]string{"JAVA_VERSION": "\x1b[31m17"}}, Runtime{Name: "hotspot"}},
		{"jvm embedded in python", facts{Exe: "/usr/bin/python3.11", Comm: "python3", Files: []string{"/usr/lib/libpython3.11.so.1.0", jvm}},
			Runtime{Name: "hotspot", Version: "17"}},
		{"java, maps unreadable", facts{Exe: "/usr/lib/jvm/java-11-openjdk-amd64/bin/java", Comm: "java"}, Runtime{Name: "hotspot", Version: "11"}},
		{"openj9", facts{Exe: "/opt/java/openjdk/bin/java", Comm: "java", Files: []string{"/opt/java/openjdk/lib/server/libjvm.so", "/opt/java/openjdk/lib/default/libj9vm29.so"}},
			Runtime{Name: "openj9"}},
		{"node", facts{Exe: "/usr/bin/node", Comm: "node", Args: []string{"node", "--heapsnapshot-signal=SIGUSR2", "server.js", "--disable-sigusr1"}},
			Runtime{Name: "node", Options: "heapsnapshot-signal=SIGUSR2"}},
		{"node options from NODE_OPTIONS", facts{Exe: "/usr/local/bin/node", Comm: "node", Args: []string{"node", "app.js"},
			Env: map[string]string{"NODE_OPTIONS": "--report-on-signal --report-signal SIGUSR1 --disable-sigusr1"}},
			Runtime{Name: "node", Options: "disable-sigusr1 report-signal=SIGUSR1"}},
		{"node -e and -r take a value", facts{Exe: "/usr/bin/node", Args: []string{"node", "-r", "./otel.js", "--heapsnapshot-signal", "SIGUSR1", "-e", "--disable-sigusr1"}},
			Runtime{Name: "node", Options: "heapsnapshot-signal=SIGUSR1"}},
		{"node options after the script are the app's", facts{Exe: "/usr/bin/node", Args: []string{"node", "app.js", "--heapsnapshot-signal=SIGUSR2"}}, Runtime{Name: "node"}},
		{"node image", facts{Exe: "/usr/local/bin/node", Args: []string{"node", "a.js"}, Env: map[string]string{"NODE_VERSION": "20.11.1"}}, Runtime{Name: "node", Version: "20.11.1"}},
		{"node report default signal", facts{Exe: "/usr/bin/node", Args: []string{"node", "--report-on-signal", "a.js"}}, Runtime{Name: "node", Options: "report-signal=SIGUSR2"}},
		{"electron-ish with libnode", facts{Exe: "/opt/app/app", Comm: "app", Files: []string{"/usr/lib/x86_64-linux-gnu/libnode.so.108"}}, Runtime{Name: "node"}},
		{"postmaster", facts{Exe: "/usr/lib/postgresql/15/bin/postgres", Comm: "postgres", Args: []string{"/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql/15/main"}},
			Runtime{Name: "postgres", Role: "postmaster", Version: "15"}},
		{"postmaster child before its title", facts{Exe: "/usr/lib/postgresql/15/bin/postgres", Comm: "postgres", Args: []string{"/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql/15/main"},
			ParentComm: "postgres", ParentExe: "/usr/lib/postgresql/15/bin/postgres"},
			Runtime{Name: "postgres", Role: RoleUntitled, Version: "15"}},
		{"postmaster under pg_ctl", facts{Exe: "/usr/lib/postgresql/15/bin/postgres", Comm: "postgres", Args: []string{"/usr/lib/postgresql/15/bin/postgres", "-D", "/d"},
			ParentComm: "pg_ctl", ParentExe: "/usr/lib/postgresql/15/bin/pg_ctl"},
			Runtime{Name: "postgres", Role: "postmaster", Version: "15"}},
		{"checkpointer", facts{Exe: "/usr/lib/postgresql/15/bin/postgres", Comm: "postgres", Args: []string{"postgres: checkpointer "}},
			Runtime{Name: "postgres", Role: "checkpointer", Version: "15"}},
		{"checkpointer with cluster_name", facts{Exe: "/usr/lib/postgresql/15/bin/postgres", Comm: "postgres", Args: []string{"postgres: 15/main: checkpointer "}},
			Runtime{Name: "postgres", Role: "checkpointer", Version: "15"}},
		{"pg backend", facts{Exe: "/usr/local/bin/postgres", Comm: "postgres", Args: []string{"postgres: app appdb 10.0.0.7(51234) idle"}},
			Runtime{Name: "postgres", Role: "backend"}},
		{"pg backend with cluster_name", facts{Comm: "postgres", Args: []string{"postgres: 15/main: postgres postgres [local] SELECT"}},
			Runtime{Name: "postgres", Role: "backend"}},
		{"pg walsender", facts{Comm: "postgres", Args: []string{"postgres: walsender replicator 10.0.0.8(40000) streaming 0/3000148"}},
			Runtime{Name: "postgres", Role: "walsender"}},
		{"pg autovacuum launcher", facts{Comm: "postgres", Args: []string{"postgres: autovacuum launcher"}}, Runtime{Name: "postgres", Role: "autovacuum-launcher"}},
		{"nginx master", facts{Exe: "/usr/sbin/nginx", Comm: "nginx", Args: []string{"nginx: master process /usr/sbin/nginx -g daemon off;"}}, Runtime{Name: "nginx", Role: "master"}},
		{"nginx worker", facts{Exe: "/usr/sbin/nginx", Comm: "nginx", Args: []string{"nginx: worker process"}}, Runtime{Name: "nginx", Role: "worker"}},
		{"nginx worker before its title", facts{Exe: "/usr/sbin/nginx", Comm: "nginx", Args: []string{"nginx: master process /usr/sbin/nginx -g daemon off;"},
			ParentComm: "nginx", ParentExe: "/usr/sbin/nginx"}, Runtime{Name: "nginx", Role: RoleUntitled}},
		{"nginx master under a shell", facts{Exe: "/usr/sbin/nginx", Comm: "nginx", Args: []string{"nginx: master process /usr/sbin/nginx"},
			ParentComm: "sh", ParentExe: "/bin/dash"}, Runtime{Name: "nginx", Role: "master"}},
		{"nginx cache manager", facts{Comm: "nginx", Args: []string{"nginx: cache manager process"}}, Runtime{Name: "nginx", Role: "cache-manager"}},
		{"php-fpm master", facts{Exe: "/usr/sbin/php-fpm8.2", Comm: "php-fpm8.2", Args: []string{"php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"}},
			Runtime{Name: "php-fpm", Role: "master", Version: "8.2"}},
		{"php-fpm pool", facts{Exe: "/usr/local/sbin/php-fpm", Comm: "php-fpm", Args: []string{"php-fpm: pool www"}}, Runtime{Name: "php-fpm", Role: "pool"}},
		{"apache parent", facts{Exe: "/usr/sbin/apache2", Comm: "apache2", Args: []string{"/usr/sbin/apache2", "-k", "start"}, ParentComm: "containerd-shim",
			Files: []string{"/usr/lib/apache2/modules/mod_mpm_event.so"}}, Runtime{Name: "httpd", Role: "parent", Options: "mpm=event"}},
		{"httpd prefork child", facts{Exe: "/usr/local/apache2/bin/httpd", Comm: "httpd", ParentComm: "httpd", ParentExe: "/usr/local/apache2/bin/httpd",
			Files: []string{"/usr/local/apache2/modules/mod_mpm_prefork.so"}}, Runtime{Name: "httpd", Role: "child", Options: "mpm=prefork"}},
		{"redis server", facts{Exe: "/usr/bin/redis-server", Comm: "redis-server", Args: []string{"/usr/bin/redis-server *:6379"}}, Runtime{Name: "redis", Role: "server"}},
		{"redis server, Debian's link", facts{Exe: "/usr/bin/redis-check-rdb", Comm: "redis-server", Args: []string{"/usr/bin/redis-server 127.0.0.1:6379"}}, Runtime{Name: "redis", Role: "server"}},
		{"redis bgsave child", facts{Exe: "/usr/bin/redis-server", Comm: "redis-server", Args: []string{"redis-rdb-bgsave *:6379"}}, Runtime{Name: "redis", Role: "fork-child"}},
		{"redis aof child", facts{Exe: "/usr/bin/redis-server", Comm: "redis-aof-rewrit", Args: []string{"redis-aof-rewrite 127.0.0.1:6379"}}, Runtime{Name: "redis", Role: "fork-child"}},
		{"haproxy master", facts{Exe: "/usr/local/sbin/haproxy", Comm: "haproxy", Args: []string{"haproxy", "-W", "-db", "-f", "/cfg"}}, Runtime{Name: "haproxy", Role: "master"}},
		{"haproxy worker", facts{Exe: "/usr/local/sbin/haproxy", Comm: "haproxy", Args: []string{"haproxy", "-W", "-db"}, ParentComm: "haproxy"}, Runtime{Name: "haproxy", Role: "worker"}},
		{"mariadb", facts{Exe: "/usr/sbin/mariadbd", Comm: "mariadbd"}, Runtime{Name: "mysqld"}},
		{"envoy", facts{Exe: "/usr/local/bin/envoy", Comm: "envoy"}, Runtime{Name: "envoy"}},
		{"uwsgi master", facts{Exe: "/usr/local/bin/uwsgi", Comm: "uwsgi", Args: []string{"uwsgi", "--ini", "app.ini"}, ParentComm: "tini",
			Files: []string{"/usr/lib/libpython3.11.so.1.0"}}, Runtime{Name: "uwsgi", Role: "master"}},
		{"uwsgi worker", facts{Exe: "/usr/local/bin/uwsgi", Comm: "uwsgi", Args: []string{"uwsgi", "--ini", "app.ini"}, ParentComm: "uwsgi"}, Runtime{Name: "uwsgi", Role: "worker"}},
		{"python", facts{Exe: "/usr/bin/python3.11", Comm: "python3", Args: []string{"python3", "app.py"}}, Runtime{Name: "python", Version: "3.11"}},
		{"python shared lib", facts{Exe: "/root/.pyenv/versions/3.12.1/bin/python3.12", Comm: "python3",
			Files: []string{"/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0"}}, Runtime{Name: "python", Version: "3.12"}},
		{"gunicorn arbiter", facts{Exe: "/usr/local/bin/python3.12", Comm: "gunicorn", Args: []string{"/usr/local/bin/python3.12", "/usr/local/bin/gunicorn", "app:app"},
			ParentComm: "sh"}, Runtime{Name: "gunicorn", Role: "arbiter", Version: "3.12"}},
		{"gunicorn worker", facts{Exe: "/usr/local/bin/python3.12", Comm: "gunicorn", Args: []string{"/usr/local/bin/python3.12", "/usr/local/bin/gunicorn", "app:app"},
			ParentComm: "gunicorn"}, Runtime{Name: "gunicorn", Role: "worker", Version: "3.12"}},
		{"gunicorn -m, titled", facts{Exe: "/usr/bin/python3.11", Args: []string{"gunicorn: worker [app:app]"}}, Runtime{Name: "gunicorn", Role: "worker", Version: "3.11"}},
		{"ruby", facts{Exe: "/usr/bin/ruby3.1", Comm: "ruby", Args: []string{"ruby", "app.rb"}}, Runtime{Name: "ruby", Version: "3.1"}},
		{"puma master", facts{Exe: "/usr/local/bin/ruby", Comm: "puma 6.4.2 (tcp", Args: []string{"puma 6.4.2 (tcp://0.0.0.0:3000) [app]"},
			Files: []string{"/usr/local/lib/libruby.so.3.3.0"}}, Runtime{Name: "puma", Role: "master", Version: "3.3.0"}},
		{"puma worker", facts{Exe: "/usr/local/bin/ruby", Args: []string{"puma: cluster worker 0: 1 [app]"}}, Runtime{Name: "puma", Role: "worker"}},
		{"unicorn worker", facts{Exe: "/usr/bin/ruby3.1", Args: []string{"unicorn worker[0] -c config/unicorn.rb"}}, Runtime{Name: "unicorn", Role: "worker", Version: "3.1"}},
		{"php cli", facts{Exe: "/usr/bin/php8.2", Comm: "php"}, Runtime{Name: "php", Version: "8.2"}},
		{"perl", facts{Exe: "/usr/bin/perl", Comm: "perl", Files: []string{"/usr/lib/x86_64-linux-gnu/libperl.so.5.36.0"}}, Runtime{Name: "perl", Version: "5.36.0"}},
		{"beam", facts{Exe: "/usr/local/lib/erlang/erts-14.2.1/bin/beam.smp", Comm: "beam.smp"}, Runtime{Name: "beam", Version: "erts-14.2.1"}},
		{"dotnet", facts{Exe: "/usr/share/dotnet/dotnet", Comm: "dotnet", Files: []string{"/usr/share/dotnet/shared/Microsoft.NETCore.App/8.0.1/libcoreclr.so"}},
			Runtime{Name: "dotnet", Version: "8.0.1"}},
		{"bash", facts{Exe: "/usr/bin/bash", Comm: "bash"}, Runtime{Name: "shell"}},
		{"busybox sh", facts{Exe: "/bin/busybox", Comm: "sh"}, Runtime{Name: "shell"}},
		{"busybox httpd is not Apache", facts{Exe: "/bin/busybox", Comm: "httpd"}, Runtime{}},
		{"apache, exe unreadable", facts{Comm: "apache2", ParentComm: "apache2"}, Runtime{Name: "httpd", Role: "child"}},
		{"tini", facts{Exe: "/sbin/docker-init", Comm: "docker-init"}, Runtime{Name: "tini"}},
		{"dumb-init", facts{Exe: "/usr/bin/dumb-init", Comm: "dumb-init"}, Runtime{Name: "dumb-init"}},
		{"deleted binary", facts{Exe: "/usr/sbin/nginx (deleted)", Comm: "nginx", Args: []string{"nginx: worker process"}}, Runtime{Name: "nginx", Role: "worker"}},
		{"node, exe unreadable", facts{Comm: "node", Args: []string{"node", "server.js"}}, Runtime{Name: "node"}},
		{"java, exe and maps unreadable", facts{Comm: "java", Args: []string{"java", "-Xrs", "-jar", "a.jar"}}, Runtime{Name: "hotspot", Options: "Xrs"}},
		{"python, exe unreadable", facts{Comm: "python3.12"}, Runtime{Name: "python", Version: "3.12"}},
		{"unknown", facts{Exe: "/app/server", Comm: "server", Args: []string{"/app/server"}}, Runtime{}},
		{"nothing", facts{}, Runtime{}},
	}
	for _, c := range cases {
		got := classify(c.f)
		if c.want.Name != "" && got.Evidence == "" {
			t.Errorf("%s: no evidence: %+v", c.name, got)
		}
		got.Evidence = ""
		if got != c.want {
			t.Errorf("%s: classify = %#v, want %#v", c.name, got, c.want)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	cases := map[string][]string{
		"":                                    nil,
		"\x00\x00":                            nil,
		"node\x00-e\x00x\x00":                 {"node", "-e", "x"},
		"nginx: worker process          \x00": {"nginx: worker process"},
		"postgres: checkpointer \x00\x00\x00": {"postgres: checkpointer"},
		"a\x00\x00b":                          {"a", "", "b"},
	}
	for in, want := range cases {
		if got := parseCmdline([]byte(in)); !reflect.DeepEqual(got, want) {
			t.Errorf("parseCmdline(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseMaps(t *testing.T) {
	maps := "55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234   /usr/bin/node\n" +
		"7f00-7f01 r-xp 00000000 fd:01 99 /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so\n" +
		"7f01-7f02 r--p 00001000 fd:01 99 /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so\n" +
		"7f02-7f03 rw-p 00000000 00:00 0 \n" +
		"7ffd-7ffe rw-p 00000000 00:00 0                          [stack]\n" +
		"7f03-7f04 r--p 00000000 fd:01 5 /tmp/a file with spaces.so (deleted)\n" +
		"7f04-7f05 r--p 00000000 fd:01 6 /usr/lib/libc.so.6"
	got := parseMaps([]byte(maps), 100)
	want := []string{"/usr/bin/node", "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so", "/tmp/a file with spaces.so (deleted)"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseMaps = %q, want %q (the unterminated last line is dropped)", got, want)
	}
	if got := parseMaps([]byte(maps), 1); len(got) != 1 {
		t.Errorf("cap 1: %q", got)
	}
	if got := parseMaps([]byte("no newline"), 10); got != nil {
		t.Errorf("no complete line: %q", got)
	}
}

func TestParsePPid(t *testing.T) {
	for in, want := range map[string]int{
		"42 (sleep) S 7 42 42 0 -1":     7,
		"42 (a) b) c) R 1 1 1":          1,
		"42 (x":                         0,
		"42 (x) S notanumber":           0,
		"42 (evil\n) S 9 1 1 0 -1 4194": 9,
	} {
		got, _ := parsePPid([]byte(in))
		if got != want {
			t.Errorf("parsePPid(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestIdentifyGoneProcess(t *testing.T) {
	rt := Identify(t.TempDir(), 12345)
	if rt.Name != "" || !strings.Contains(rt.Evidence, "comm") {
		t.Errorf("Identify of a missing process = %+v, want no name and the reason", rt)
	}
}

// A fake procfs tree: Identify reads only what it must and bounds every read.
func TestIdentifyFakeProc(t *testing.T) {
	proc := t.TempDir()
	dir := filepath.Join(proc, "77")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("comm", "node\n")
	write("cmdline", "node\x00--heapsnapshot-signal\x00SIGUSR2\x00app.js\x00")
	// maps far beyond the bound, with the library only past it: not seen.
	line := "7f00-7f01 rw-p 00000000 00:00 0 \n"
	big := strings.Repeat(line, maxMaps/len(line)+10) + "7f01-7f02 r--p 0 fd:01 1 /usr/lib/libjvm.so\n"
	write("maps", big)
	write("stat", "77 (node) S 1 77 77 0 -1")
	write("environ", "PATH=/bin\x00NODE_OPTIONS=--disable-sigusr1\x00")
	if err := os.Symlink("/usr/bin/node", filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	rt := Identify(proc, 77)
	want := Runtime{Name: "node", Evidence: "exe /usr/bin/node", Options: "disable-sigusr1 heapsnapshot-signal=SIGUSR2"}
	if rt != want {
		t.Errorf("Identify = %#v, want %#v", rt, want)
	}
}

// FuzzIdentify feeds arbitrary procfs contents to the pure parsers and to
// classify: nothing may panic, and what goes to logs stays clean.
func FuzzIdentify(f *testing.F) {
	f.Add([]byte("/usr/bin/node"), []byte("node\n"), []byte("node\x00--report-on-signal\x00a.js\x00"),
		[]byte("7f00-7f01 r-xp 00000000 fd:01 9 /usr/lib/libnode.so.108\n"), []byte("NODE_OPTIONS=--heapsnapshot-signal=SIGUSR2\x00"))
	f.Add([]byte("/usr/lib/postgresql/15/bin/postgres"), []byte("postgres"), []byte("postgres: 15/main: checkpointer \x00"),
		[]byte(""), []byte(""))
	f.Add([]byte("/usr/lib/jvm/java-17-openjdk-amd64/bin/java"), []byte("java"), []byte("java\x00-Xrs\x00Main\x00"),
		[]byte("7f-80 r-xp 0 fd:01 1 /usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so\n"), []byte("JAVA_TOOL_OPTIONS=-Xrs"))
	f.Add([]byte("\xff\xfe"), []byte("\x00\n\r"), []byte("nginx: \x1b[31mworker"), []byte("a b c d e /x\n/y\n"), []byte("=\x00==\x00"))
	f.Fuzz(func(t *testing.T, exe, comm, cmdline, maps, environ []byte) {
		fc := facts{
			Exe:   string(exe),
			Comm:  string(comm),
			Args:  parseCmdline(cmdline),
			Files: parseMaps(maps, maxFiles),
			Env:   parseEnviron(environ),
		}
		rt := classify(fc)
		if rt.Name != "" && !knownNames[rt.Name] {
			t.Fatalf("classify returned unknown name %q", rt.Name)
		}
		if o := rt.Options; o != safename.Clean(o) || !utf8.ValidString(o) {
			t.Fatalf("options not clean: %q", o)
		}
		for _, sig := range []string{"SIGUSR1", "SIGUSR2", "SIGTERM"} {
			_ = EffectOf(rt, sigNum(sig))
		}
		parsePPid(maps)
	})
}

func sigNum(name string) unix.Signal { return unix.SignalNum(name) }

func TestGoVersionIsBounded(t *testing.T) {
	// A read that never returns: a FIFO with no writer blocks open(2).
	fifo := filepath.Join(t.TempDir(), "exe")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	old := goReadTimeout
	goReadTimeout = 100 * time.Millisecond
	defer func() { goReadTimeout = old }()
	t0 := time.Now()
	for i := 0; i < cap(goReads)+2; i++ {
		if v, ok := goVersion(fifo); ok {
			t.Fatalf("FIFO: %q", v)
		}
	}
	if d := time.Since(t0); d > time.Duration(cap(goReads)+1)*goReadTimeout+time.Second {
		t.Errorf("stuck reads held the caller %v", d)
	}
	// Release the stuck opens so the goroutines end.
	for i := 0; i < cap(goReads); i++ {
		if fh, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			fh.Close()
		}
	}
	waitFor(t, 5*time.Second, "the stuck reads to end", func() bool { return len(goReads) == 0 })
	if v, ok := goVersion("/proc/self/exe"); !ok || v == "" {
		t.Errorf("this test binary after stuck reads: %q %v", v, ok)
	}
}

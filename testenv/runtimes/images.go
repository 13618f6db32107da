package runtimes

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// JavaHome is Debian's OpenJDK 17.
const JavaHome = "/usr/lib/jvm/java-17-openjdk-amd64"

// Paths of the suite's own files in the images.
const (
	appDir     = "/app"                   // examples and ballasts
	testappBin = "/usr/local/bin/testapp" // the leaker of server images
	withLeaker = "/usr/local/bin/with-leaker"
	confDir    = "/etc/oomhero-rt"
)

// withLeakerScript starts the project's test app as a leaker next to a
// server that does not grow by itself, then runs the server as the
// container's main process. The leaker waits for SIGWINCH, then leaks
// LEAK_RATE MiB/s until LEAK_CAP percent of the limit and holds.
const withLeakerScript = `#!/bin/sh
` + testappBin + ` -mode leak -rate "${LEAK_RATE:-20}" -cap-percent "${LEAK_CAP:-93}" -chunk 1024 -start-signal SIGWINCH -sample-interval 0 &
exec "$@"
`

const nginxConf = `daemon off;
master_process on;
worker_processes 2;
pid /tmp/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path /tmp/nginx-body;
    proxy_temp_path /tmp/nginx-proxy;
    fastcgi_temp_path /tmp/nginx-fastcgi;
    uwsgi_temp_path /tmp/nginx-uwsgi;
    scgi_temp_path /tmp/nginx-scgi;
    server {
        listen 127.0.0.1:8080;
        location /healthz { return 200 "ok\n"; }
    }
}
`

const httpdConf = `ServerRoot /usr/lib/apache2
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
ServerName localhost
Listen 127.0.0.1:8080
PidFile /tmp/httpd.pid
DefaultRuntimeDir /tmp
Mutex file:/tmp default
ErrorLog /proc/self/fd/2
LogLevel info
User www-data
Group www-data
DocumentRoot /var/www
<Directory /var/www>
    Require all granted
</Directory>
StartServers 1
ServerLimit 1
ThreadsPerChild 4
MaxRequestWorkers 4
MinSpareThreads 1
MaxSpareThreads 8
`

const phpFpmConf = `[global]
pid = /tmp/php-fpm.pid
error_log = /proc/self/fd/2
log_level = notice
daemonize = no
[www]
user = www-data
group = www-data
listen = 127.0.0.1:9000
pm = static
pm.max_children = 2
ping.path = /ping
`

const postgresStart = `#!/bin/sh
set -e
/usr/lib/postgresql/15/bin/initdb -D /tmp/pgdata -U postgres -A trust -E UTF8 --locale=C -N >/tmp/initdb.log 2>&1 || { cat /tmp/initdb.log; exit 1; }
exec ` + withLeaker + ` /usr/lib/postgresql/15/bin/postgres -D /tmp/pgdata -k /tmp -c listen_addresses=127.0.0.1 -c port=5432 -c logging_collector=off -c timezone=UTC -c log_timezone=UTC -c fsync=off
`

// javac compiles the sources into a new directory under dir and returns
// the class files.
func javac(ctx context.Context, dir string, srcs ...string) ([]File, error) {
	out := filepath.Join(dir, "classes")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	bin := filepath.Join(JavaHome, "bin", "javac")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("javac is not installed (package openjdk-17-jdk-headless, testenv/install-deps): %w", err)
	}
	if b, err := exec.CommandContext(ctx, bin, append([]string{"-d", out}, srcs...)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("javac %s: %w: %s", strings.Join(srcs, " "), err, b)
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		return nil, err
	}
	var fs []File
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".class") {
			fs = append(fs, File{Path: appDir + "/" + e.Name(), Mode: 0o644, Host: filepath.Join(out, e.Name())})
		}
	}
	return fs, nil
}

// Specs returns the image of each runtime, by name. root is the repository
// root, scratch a directory for build products, testapp the path of the
// built test app (the leaker of the server images).
func Specs(ctx context.Context, root, scratch, testapp string) (map[string]ImageSpec, error) {
	td := filepath.Join(root, "testenv", "runtimes", "testdata")
	ex := filepath.Join(root, "examples")
	classes, err := javac(ctx, scratch, filepath.Join(ex, "java", "OomheroListener.java"), filepath.Join(td, "Ballast.java"))
	if err != nil {
		return nil, err
	}
	leaker := []File{
		{Path: testappBin, Mode: 0o755, Host: testapp},
		{Path: withLeaker, Mode: 0o755, Data: []byte(withLeakerScript)},
	}
	return map[string]ImageSpec{
		"java": {
			Name:     "java",
			Packages: []string{"openjdk-17-jre-headless"},
			// The CDS archive is made by the package's postinst.
			Paths:      []string{JavaHome + "/lib/server/classes.jsa"},
			Files:      classes,
			Entrypoint: []string{JavaHome + "/bin/java"},
			WorkDir:    "/tmp",
		},
		"node": {
			Name:       "node",
			Packages:   []string{"nodejs"},
			Skip:       []string{"/usr/lib/node_modules/", "/usr/share/", "/usr/include/"},
			Files:      []File{{Path: appDir + "/oomhero-listener.js", Host: filepath.Join(ex, "node", "oomhero-listener.js")}, {Path: appDir + "/ballast.js", Host: filepath.Join(td, "ballast.js")}},
			Entrypoint: []string{"/usr/bin/node"},
			WorkDir:    "/tmp",
		},
		"python": {
			Name:       "python",
			Packages:   []string{"python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib"},
			Files:      []File{{Path: appDir + "/oomhero_example.py", Host: filepath.Join(ex, "python", "oomhero_example.py")}, {Path: appDir + "/ballast.py", Host: filepath.Join(td, "ballast.py")}},
			Entrypoint: []string{"/usr/bin/python3.11", "-u"},
			WorkDir:    "/tmp",
		},
		"postgres": {
			Name:       "postgres",
			Packages:   []string{"postgresql-15", "postgresql-client-15", "dash"},
			Paths:      []string{"/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/Etc/UTC"},
			Files:      append([]File{{Path: "/usr/local/bin/start-postgres", Mode: 0o755, Data: []byte(postgresStart)}}, leaker...),
			Entrypoint: []string{"/usr/local/bin/start-postgres"},
			User:       "postgres",
			Env:        []string{"TZ=UTC"},
			WorkDir:    "/tmp",
		},
		"nginx": {
			Name:       "nginx",
			Packages:   []string{"nginx", "dash"},
			Files:      append([]File{{Path: confDir + "/nginx.conf", Data: []byte(nginxConf)}}, leaker...),
			Dirs:       []Dir{{Path: "/var/lib/nginx", Mode: 0o755}, {Path: "/var/log/nginx", Mode: 0o755}},
			Entrypoint: []string{withLeaker, "/usr/sbin/nginx", "-c", confDir + "/nginx.conf"},
		},
		"httpd": {
			Name:       "httpd",
			Packages:   []string{"apache2-bin", "dash"},
			Files:      append([]File{{Path: confDir + "/httpd.conf", Data: []byte(httpdConf)}, {Path: "/var/www/healthz", Data: []byte("ok\n")}}, leaker...),
			Entrypoint: []string{withLeaker, "/usr/sbin/apache2", "-f", confDir + "/httpd.conf", "-DFOREGROUND"},
		},
		"php-fpm": {
			Name:       "php-fpm",
			Packages:   []string{"php8.2-fpm", "dash"},
			Files:      append([]File{{Path: confDir + "/php-fpm.conf", Data: []byte(phpFpmConf)}}, leaker...),
			Entrypoint: []string{withLeaker, "/usr/sbin/php-fpm8.2", "-F", "-n", "-y", confDir + "/php-fpm.conf"},
		},
		"redis": {
			Name:       "redis",
			Packages:   []string{"redis-server", "redis-tools", "dash"},
			Files:      leaker,
			Entrypoint: []string{withLeaker, "/usr/bin/redis-server", "--port", "6379", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"},
			User:       "redis",
			Dirs:       []Dir{{Path: "/var/lib/redis", Mode: 0o755, UID: 102, GID: 102}},
			WorkDir:    "/var/lib/redis",
		},
	}, nil
}

package declare

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/config"
)

func env(kv ...string) []byte { return []byte(strings.Join(kv, "\x00") + "\x00") }

func TestParseEverything(t *testing.T) {
	d := Parse(env("PATH=/usr/bin", "OOMHERO=off", "OOMHERO_WARNING=65", "OOMHERO_CRITICAL= 80% ",
		"OOMHERO_WARNING_SIGNAL=usr1", "OOMHERO_CRITICAL_SIGNAL=none", "OOMHERO_TARGETS=Largest",
		"OOMHERO_NOTIFY_URL=http://127.0.0.1:8080/oomhero", "OOMHERO_REPEAT=once", "OOMHERO_COOLDOWN=5",
		"OOMHERO_NAME=bloat", "OOMHERO_DRY_RUN=true", "OOMHEROIC=1"))
	if len(d.Errors) != 0 {
		t.Fatalf("errors: %v", d.Errors)
	}
	if !d.Off || d.Warning != 65 || d.Critical != 80 || d.WarningSignal != (Signal{unix.SIGUSR1, true}) ||
		d.CriticalSignal != (Signal{0, true}) || d.Targets != config.Largest || d.NotifyURL != "http://127.0.0.1:8080/oomhero" ||
		d.Repeat != config.Once || d.Cooldown != 5*time.Second || d.Name != "bloat" ||
		d.DryRun == nil || !*d.DryRun {
		t.Fatalf("%+v", d)
	}
	if len(d.Set) != len(Names) || d.Set[0] != "OOMHERO=off" || d.Set[2] != "OOMHERO_CRITICAL=80%" {
		t.Fatalf("Set %q", d.Set)
	}
}

func TestParseNothing(t *testing.T) {
	for _, in := range [][]byte{nil, env("HOME=/root"), env("OOMHERO_WARNING="), []byte("OOMHERO_WARNING"), env("OOMHERO_TARGETS=  ")} {
		if d := Parse(in); !d.Empty() {
			t.Errorf("%q: %+v", in, d)
		}
	}
}

func TestParseFirstWinsAndLastEntryWithoutNUL(t *testing.T) {
	d := Parse([]byte("OOMHERO_WARNING=60\x00OOMHERO_WARNING=70\x00OOMHERO_CRITICAL=85"))
	if d.Warning != 60 || d.Critical != 85 || len(d.Errors) != 0 {
		t.Fatalf("%+v", d)
	}
}

func TestParseErrorsPerVariable(t *testing.T) {
	d := Parse(env("OOMHERO=maybe", "OOMHERO_WARNING=0", "OOMHERO_CRITICAL=95", "OOMHERO_WARNING_SIGNAL=SIGFOO",
		"OOMHERO_TARGETS=some", "OOMHERO_NOTIFY_URL=ftp://x", "OOMHERO_REPEAT=twice", "OOMHERO_COOLDOWN=-1s",
		"OOMHERO_WARNIG=65"))
	want := []string{Off, Warning, WarningSignal, Targets, NotifyURL, Repeat, Cooldown, "OOMHERO_WARNIG"}
	var got []string
	for _, e := range d.Errors {
		got = append(got, e.Name)
		if e.Accepted == "" || e.Value == "" {
			t.Errorf("error without value or accepted: %+v", e)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("errors for %v, want %v", got, want)
	}
	// The good one stays.
	if d.Critical != 95 || d.Warning != 0 || d.Off || d.WarningSignal.Declared {
		t.Fatalf("%+v", d)
	}
	if !strings.Contains(d.Errors[0].Error(), `OOMHERO="maybe"`) {
		t.Fatal(d.Errors[0].Error())
	}
}

func TestParseWarningAboveCritical(t *testing.T) {
	d := Parse(env("OOMHERO_WARNING=95", "OOMHERO_CRITICAL=90"))
	if d.Warning != 0 || d.Critical != 90 || len(d.Errors) != 1 || d.Errors[0].Name != Warning || len(d.Set) != 1 {
		t.Fatalf("%+v %v", d, d.Errors)
	}
}

func TestApply(t *testing.T) {
	base := &config.Config{Warning: 75, Critical: 90, WarningSignal: unix.SIGUSR1, CriticalSignal: unix.SIGUSR2,
		Targets: config.Handlers, Repeat: config.Cooldown, Cooldown: time.Second}
	d := Parse(env("OOMHERO_WARNING=60", "OOMHERO_CRITICAL_SIGNAL=SIGTERM", "OOMHERO_REPEAT=once", "OOMHERO_COOLDOWN=1m",
		"OOMHERO_TARGETS=main", "OOMHERO_NOTIFY_URL=http://localhost/x"))
	c, errs := d.Apply(base)
	if len(errs) != 0 || c.Warning != 60 || c.Critical != 90 || c.WarningSignal != unix.SIGUSR1 || c.CriticalSignal != unix.SIGTERM ||
		c.Repeat != config.Once || c.Cooldown != time.Minute || c.Targets != config.Main || c.NotifyURL != "http://localhost/x" {
		t.Fatalf("%+v %v", c, errs)
	}
	if base.Warning != 75 || base.CriticalSignal != unix.SIGUSR2 {
		t.Fatal("Apply changed the base")
	}
	// Declared warning above the sidecar's critical: refused, default kept.
	d = Parse(env("OOMHERO_WARNING=95"))
	c, errs = d.Apply(base)
	if len(errs) != 1 || errs[0].Name != Warning || c.Warning != 75 {
		t.Fatalf("%+v %v", c, errs)
	}
	d = Parse(env("OOMHERO_CRITICAL=50"))
	c, errs = d.Apply(base)
	if len(errs) != 1 || errs[0].Name != Critical || c.Critical != 90 {
		t.Fatalf("%+v %v", c, errs)
	}
}

func TestEqual(t *testing.T) {
	a, b := Parse(env("OOMHERO_WARNING=60", "OOMHERO_REPEAT=x")), Parse(env("OOMHERO_WARNING=60", "OOMHERO_REPEAT=x"))
	if !a.Equal(&b) {
		t.Fatal("equal declarations differ")
	}
	c := Parse(env("OOMHERO_WARNING=61", "OOMHERO_REPEAT=x"))
	if a.Equal(&c) {
		t.Fatal("different declarations equal")
	}
}

func TestScanKeepsOnlyOurs(t *testing.T) {
	big := strings.Repeat("x", 3*ReadChunk)
	in := env("A="+big, "OOMHERO_WARNING=61", "OOMHER=1", "B="+big, "OOMHERO_NOTIFY_URL=http://127.0.0.1/"+strings.Repeat("p", MaxEntry), "OOMHERO_CRITICAL=70")
	kept, total, err := scan(iotest.OneByteReader(bytes.NewReader(in)))
	if err != nil || total != len(in) {
		t.Fatal(err, total)
	}
	if string(kept) != "OOMHERO_WARNING=61\x00OOMHERO_CRITICAL=70\x00" {
		t.Fatalf("kept %q", kept)
	}
	// Truncated: the partial last entry is dropped.
	kept, _, err = scan(bytes.NewReader([]byte("OOMHERO_WARNING=61\x00OOMHERO_CRITICAL=7")))
	if err != nil || string(kept) != "OOMHERO_WARNING=61\x00" {
		t.Fatalf("%q %v", kept, err)
	}
}

func TestScanBounded(t *testing.T) {
	r := &endless{}
	kept, total, err := scan(r)
	if !errors.Is(err, ErrTruncated) || total != MaxEnviron || len(kept) == 0 || len(kept) > MaxEnviron {
		t.Fatalf("err %v total %d kept %d", err, total, len(kept))
	}
}

// endless is an environment that never ends: OOMHERO entries forever.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = "OOMHERO_X=1\x00"[i%12]
	}
	return len(p), nil
}

func TestReadRealProcess(t *testing.T) {
	// A real process started with a declaration, through the real procfs.
	cmd := exec.Command("sleep", "30")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "OOMHERO_WARNING=42", "OOMHERO_TARGETS=main"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Until the child has exec'ed, its environment is empty (ErrEmpty).
	var d Declaration
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if d, err = Read("/proc", cmd.Process.Pid); !errors.Is(err, ErrEmpty) {
			break
		}
	}
	if err != nil || d.Warning != 42 || d.Targets != config.Main {
		t.Fatalf("%+v %v", d, err)
	}
	dir := t.TempDir()
	if _, err := Read(dir, 1); err == nil {
		t.Fatal("missing environ read without error")
	}
	os.MkdirAll(filepath.Join(dir, "7"), 0o755)
	os.WriteFile(filepath.Join(dir, "7", "environ"), env("OOMHERO_CRITICAL=88"), 0o644)
	if d, err := Read(dir, 7); err != nil || d.Critical != 88 {
		t.Fatalf("%+v %v", d, err)
	}
	os.WriteFile(filepath.Join(dir, "7", "environ"), nil, 0o644)
	if _, err := Read(dir, 7); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty environ: %v", err)
	}
	os.Remove(filepath.Join(dir, "7", "environ"))
	os.Symlink("/etc/passwd", filepath.Join(dir, "7", "environ"))
	if _, err := Read(dir, 7); err == nil {
		t.Fatal("followed a symlink")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(env("OOMHERO_WARNING=65", "OOMHERO_CRITICAL=90"))
	f.Add(env("OOMHERO=off"))
	f.Add(env("OOMHERO_WARNING_SIGNAL=SIGUSR1", "OOMHERO_CRITICAL_SIGNAL=none", "OOMHERO_TARGETS=largest"))
	f.Add([]byte("OOMHERO_NOTIFY_URL=http://[::1]:80/x\x00OOMHERO_REPEAT=once\x00OOMHERO_COOLDOWN=1m30s"))
	f.Add([]byte("OOMHERO_WARNING=95\x00OOMHERO_CRITICAL=90\x00OOMHERO_BOGUS=\xff\x00=\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		d := Parse(in)
		if d.Warning != 0 && (d.Warning < 1 || d.Warning > 100) || d.Critical != 0 && (d.Critical < 1 || d.Critical > 100) {
			t.Fatalf("threshold out of range: %+v", d)
		}
		if d.Warning > 0 && d.Critical > 0 && d.Warning > d.Critical {
			t.Fatalf("warning above critical: %+v", d)
		}
		if d.Cooldown < 0 || d.WarningSignal.Sig > 64 || d.CriticalSignal.Sig > 64 {
			t.Fatalf("%+v", d)
		}
		for _, e := range d.Errors {
			if len(e.Value) > 64+3 || len(e.Name) > 64+3 {
				t.Fatalf("unbounded error: %q", e.Error())
			}
		}
		// Streaming scan keeps exactly the entries Parse looks at.
		kept, _, err := scan(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if len(in) > 0 && in[len(in)-1] == 0 || !bytes.Contains(in, []byte("OOMHERO")) {
			d2 := Parse(kept)
			if !d.Equal(&d2) && !longEntry(in) {
				t.Fatalf("scan+Parse %+v != Parse %+v", d2, d)
			}
		}
		base := &config.Config{Warning: 75, Critical: 90, Targets: config.Handlers, Repeat: config.Cooldown, Cooldown: time.Second}
		c, _ := d.Apply(base)
		if c.Warning > c.Critical {
			t.Fatalf("Apply: warning %d above critical %d", c.Warning, c.Critical)
		}
	})
}

func longEntry(in []byte) bool {
	for _, e := range bytes.Split(in, []byte{0}) {
		if len(e) > MaxEntry {
			return true
		}
	}
	return false
}

// OOMHERO_NAME takes a Kubernetes container name (an RFC 1123 label) and
// nothing else: it becomes a log field and a metric label.
func TestParseName(t *testing.T) {
	for _, ok := range []string{"bloat", "app-1", "a", strings.Repeat("x", 63)} {
		if d := Parse(env(Name + "=" + ok)); d.Name != ok || len(d.Errors) != 0 {
			t.Errorf("%q: name %q, errors %v", ok, d.Name, d.Errors)
		}
	}
	for _, bad := range []string{"Bloat", "-app", "app-", "a_b", "a.b", "a b", "x\x1b[31m", strings.Repeat("x", 64)} {
		d := Parse(env(Name + "=" + bad))
		if d.Name != "" || len(d.Errors) != 1 || d.Errors[0].Name != Name {
			t.Errorf("%q: name %q, errors %v; want one error naming %s", bad, d.Name, d.Errors, Name)
		}
	}
}

func TestReadRewritten(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "9"), 0o755); err != nil {
		t.Fatal(err)
	}
	// nginx's master after ngx_setproctitle: the title over argv and environ.
	title := append([]byte("nginx: master process /usr/sbin/nginx -g daemon off;"), make([]byte, 300)...)
	if err := os.WriteFile(filepath.Join(dir, "9", "environ"), title, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir, 9); !errors.Is(err, ErrRewritten) {
		t.Fatalf("Read of a process title = %v, want ErrRewritten", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "9", "environ"), []byte("PATH=/bin\x00OOMHERO_WARNING=60\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d, err := Read(dir, 9); err != nil || d.Empty() {
		t.Fatalf("Read of a real environment = %+v, %v", d, err)
	}
}

func TestDryRunDeclared(t *testing.T) {
	base := &config.Config{Warning: 75, Critical: 90, DryRun: true}
	for _, tc := range []struct {
		in      string
		want    bool
		errName string
	}{
		{"OOMHERO_DRY_RUN=false", false, ""}, // opts the container in while the sidecar tries
		{"OOMHERO_DRY_RUN=TRUE", true, ""},
		{"OOMHERO_DRY_RUN=maybe", true, DryRun}, // bad: the sidecar's value
		{"HOME=/", true, ""},
	} {
		d := Parse(env(tc.in))
		c, _ := d.Apply(base)
		if c.DryRun != tc.want {
			t.Errorf("%s: dry run %v, want %v", tc.in, c.DryRun, tc.want)
		}
		if tc.errName != "" && (len(d.Errors) != 1 || d.Errors[0].Name != tc.errName || d.Errors[0].Accepted != config.BoolAccepted) {
			t.Errorf("%s: errors %v", tc.in, d.Errors)
		}
	}
	c, _ := (&Declaration{}).Apply(&config.Config{})
	if c.DryRun {
		t.Error("nothing declared must keep the sidecar's dry-run off")
	}
}

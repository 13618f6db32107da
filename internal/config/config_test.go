package config

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEmptyOOMHEROVariableCounts(t *testing.T) {
	c, err := Parse(nil, env(map[string]string{"OOMHERO_LISTEN": "", "WARNING": ""}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "" || c.Warning != 75 {
		t.Fatalf("OOMHERO_LISTEN= must turn the server off (got %q); WARNING= means unset (got %d)", c.Listen, c.Warning)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Warning != 75 || c.Critical != 90 || c.WarningSignal != unix.SIGUSR1 || c.CriticalSignal != unix.SIGUSR2 ||
		c.Cooldown != time.Second || c.Metric != "workingset" || c.Targets != Handlers || c.Source != "auto" ||
		c.Interval != 100*time.Millisecond {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestPrecedence(t *testing.T) {
	e := env(map[string]string{"WARNING": "50", "OOMHERO_WARNING": "60", "CRITICAL": "70", "COOLDOWN": "3"})
	c, err := Parse([]string{"--warning", "65"}, e, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Warning != 65 || c.Critical != 70 || c.Cooldown != 3*time.Second {
		t.Fatalf("got warning %d critical %d cooldown %v", c.Warning, c.Critical, c.Cooldown)
	}
	c, err = Parse(nil, e, &bytes.Buffer{})
	if err != nil || c.Warning != 60 {
		t.Fatalf("OOMHERO_WARNING must win over WARNING: %v %v", c, err)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		name string
	}{
		{env: map[string]string{"WARNING": "abc"}, name: "WARNING"},
		{env: map[string]string{"WARNING": "0"}, name: "WARNING"},
		{env: map[string]string{"CRITICAL": "101"}, name: "CRITICAL"},
		{env: map[string]string{"WARNING": "95", "CRITICAL": "90"}, name: "WARNING"},
		{env: map[string]string{"WARNING_SIGNAL": "SIGFOO"}, name: "WARNING_SIGNAL"},
		{env: map[string]string{"CRITICAL_SIGNAL": "65"}, name: "CRITICAL_SIGNAL"},
		{env: map[string]string{"COOLDOWN": "soon"}, name: "COOLDOWN"},
		{env: map[string]string{"COOLDOWN": "-1s"}, name: "COOLDOWN"},
		{env: map[string]string{"OOMHERO_METRIC": "pss"}, name: "OOMHERO_METRIC"},
		{args: []string{"--targets", "some"}, name: "--targets"},
		{args: []string{"--bogus"}, name: "arguments"},
	} {
		_, err := Parse(tc.args, env(tc.env), &bytes.Buffer{})
		var ce *Error
		if !errors.As(err, &ce) || ce.Name != tc.name {
			t.Errorf("%v %v: want error naming %s, got %v", tc.env, tc.args, tc.name, err)
		}
	}
}

func TestSignals(t *testing.T) {
	for in, want := range map[string]unix.Signal{
		"SIGUSR1": unix.SIGUSR1, "usr2": unix.SIGUSR2, "sigterm": unix.SIGTERM, "Term": unix.SIGTERM,
		"9": unix.SIGKILL, "RTMIN": 34, "rtmin+2": 36, "SIGRTMAX": 64, "RTMAX-1": 63, "SIGWINCH": unix.SIGWINCH,
	} {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "65", "SIGNOPE", "RTMIN+40"} {
		if _, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) accepted", in)
		}
	}
}

func TestHelpListsEveryOption(t *testing.T) {
	var out bytes.Buffer
	if _, err := Parse([]string{"--help"}, env(nil), &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("want ErrHelp, got %v", err)
	}
	for _, o := range options(&Config{}) {
		if o.nodeOnly {
			continue // TestNodeHelpListsEveryOption
		}
		for _, want := range []string{"--" + o.name, o.env()} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("--help lacks %s", want)
			}
		}
		if o.seed != "" && !strings.Contains(out.String(), o.seed) {
			t.Errorf("--help lacks %s", o.seed)
		}
	}
}

func TestDeliveryOptions(t *testing.T) {
	c, err := Parse([]string{"--repeat", "ONCE", "--targets", "largest", "--allow", "node:SIGUSR2, hotspot:usr1",
		"--notify-url", "http://127.0.0.1:8080/x", "--warning-signal", "none"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Repeat != Once || c.Targets != Largest || len(c.Allow) != 2 || !c.Allowed("node", unix.SIGUSR2) ||
		!c.Allowed("hotspot", unix.SIGUSR1) || c.Allowed("node", unix.SIGUSR1) || c.NotifyURL != "http://127.0.0.1:8080/x" ||
		c.WarningSignal != 0 || c.NotifyRemote {
		t.Fatalf("%+v", c)
	}
	c, err = Parse(nil, env(map[string]string{"OOMHERO_REPEAT": "cooldown", "OOMHERO_ALLOW": "postgres:SIGUSR2", "OOMHERO_NOTIFY_REMOTE": "true"}), &bytes.Buffer{})
	if err != nil || c.Repeat != Cooldown || !c.Allowed("postgres", unix.SIGUSR2) || !c.NotifyRemote {
		t.Fatalf("%+v %v", c, err)
	}
	c, _ = Parse(nil, env(nil), &bytes.Buffer{})
	if c.Repeat != Cooldown || len(c.Allow) != 0 || c.NotifyURL != "" {
		t.Fatalf("defaults %+v", c)
	}
	if SignalName(0) != "none" {
		t.Fatal(SignalName(0))
	}
}

func TestDeliveryOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		name string
	}{
		{env: map[string]string{"OOMHERO_REPEAT": "twice"}, name: "OOMHERO_REPEAT"},
		{args: []string{"--repeat", ""}, name: "--repeat"},
		{env: map[string]string{"OOMHERO_ALLOW": "node"}, name: "OOMHERO_ALLOW"},
		{env: map[string]string{"OOMHERO_ALLOW": "node:SIGFOO"}, name: "OOMHERO_ALLOW"},
		{env: map[string]string{"OOMHERO_ALLOW": "No De:SIGUSR1"}, name: "OOMHERO_ALLOW"},
		{args: []string{"--allow", ":SIGUSR1"}, name: "--allow"},
		{env: map[string]string{"OOMHERO_NOTIFY_URL": "ftp://127.0.0.1/"}, name: "OOMHERO_NOTIFY_URL"},
		{args: []string{"--notify-url", "127.0.0.1:8080"}, name: "--notify-url"},
		{args: []string{"--notify-url", "http://user:pw@127.0.0.1/"}, name: "--notify-url"},
		{env: map[string]string{"OOMHERO_NOTIFY_REMOTE": "yes please"}, name: "OOMHERO_NOTIFY_REMOTE"},
		{env: map[string]string{"OOMHERO_TARGETS": "biggest"}, name: "OOMHERO_TARGETS"},
		{env: map[string]string{"WARNING_SIGNAL": "nothing"}, name: "WARNING_SIGNAL"},
	} {
		_, err := Parse(tc.args, env(tc.env), &bytes.Buffer{})
		var ce *Error
		if !errors.As(err, &ce) || ce.Name != tc.name || ce.Accepted == "" {
			t.Errorf("%v %v: want error naming %s, got %v", tc.env, tc.args, tc.name, err)
		}
	}
}

func TestSelectionAndDryRun(t *testing.T) {
	c, err := Parse([]string{"--dry-run", "--include-container", "^(bloat|web)", "--exclude-container", "-canary$",
		"--exclude-command", `^(sh|bash)$`}, env(map[string]string{"OOMHERO_INCLUDE_COMMAND": "java|node"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.DryRun {
		t.Fatal("--dry-run not set")
	}
	for _, tc := range []struct {
		name string
		ok   bool
		why  string
	}{
		{"bloat", true, ""},
		{"web@4242", true, ""},
		{"bloat-canary", false, `matches --exclude-container "-canary$"`}, // exclude wins over include
		{"redis", false, `does not match --include-container "^(bloat|web)"`},
		{"", false, "does not match"},
	} {
		ok, why := c.ContainerSelected(tc.name)
		if ok != tc.ok || !strings.Contains(why, tc.why) {
			t.Errorf("container %q: %v %q, want %v %q", tc.name, ok, why, tc.ok, tc.why)
		}
	}
	for _, tc := range []struct {
		comm string
		ok   bool
	}{{"java", true}, {"node", true}, {"nodejs", true}, {"sh", false}, {"bash", false}, {"python3", false}} {
		if ok, _ := c.CommandSelected(tc.comm); ok != tc.ok {
			t.Errorf("command %q: %v, want %v", tc.comm, ok, tc.ok)
		}
	}
	// Exclude wins even when the include names the same thing.
	c, err = Parse([]string{"--include-command", "^java$", "--exclude-command", "^java$"}, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := c.CommandSelected("java"); ok || !strings.Contains(why, "--exclude-command") {
		t.Fatalf("java: %v %q", ok, why)
	}
	// No patterns: everything is selected, dry run is off.
	c, _ = Parse(nil, env(nil), &bytes.Buffer{})
	if ok, _ := c.ContainerSelected("anything"); !ok || c.DryRun {
		t.Fatalf("defaults: selected %v, dry run %v", ok, c.DryRun)
	}
	if ok, _ := c.CommandSelected(""); !ok {
		t.Fatal("defaults: command not selected")
	}
	c, _ = Parse(nil, env(map[string]string{"OOMHERO_DRY_RUN": "1"}), &bytes.Buffer{})
	if !c.DryRun {
		t.Fatal("OOMHERO_DRY_RUN=1 not applied")
	}
}

func TestSelectionErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		name string
	}{
		{args: []string{"--include-container", "(bloat"}, name: "--include-container"},
		{args: []string{"--exclude-container", "a**"}, name: "--exclude-container"},
		{env: map[string]string{"OOMHERO_INCLUDE_COMMAND": `\p{Nope}`}, name: "OOMHERO_INCLUDE_COMMAND"},
		{env: map[string]string{"OOMHERO_EXCLUDE_COMMAND": "(?<name>x)y["}, name: "OOMHERO_EXCLUDE_COMMAND"},
		{env: map[string]string{"OOMHERO_EXCLUDE_CONTAINER": `(a)\1`}, name: "OOMHERO_EXCLUDE_CONTAINER"}, // backreference: not RE2
		{env: map[string]string{"OOMHERO_DRY_RUN": "yes"}, name: "OOMHERO_DRY_RUN"},
		{args: []string{"--dry-run=sometimes"}, name: "--dry-run"},
	} {
		_, err := Parse(tc.args, env(tc.env), &bytes.Buffer{})
		var ce *Error
		if !errors.As(err, &ce) || ce.Name != tc.name || ce.Accepted == "" {
			t.Errorf("%v %v: want error naming %s, got %v", tc.env, tc.args, tc.name, err)
		}
	}
}

func TestNodeModeDefaults(t *testing.T) {
	side, err := Parse(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if side.Mode != ModeSidecar || side.Node() || side.OptIn != OptInAll || side.CgroupRoot != "" || side.Proc != "/proc" {
		t.Fatalf("sidecar defaults changed: mode %q opt-in %q cgroup-root %q proc %q", side.Mode, side.OptIn, side.CgroupRoot, side.Proc)
	}
	node, err := ParseNode(nil, env(map[string]string{"NODE_NAME": "worker-1"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !node.Node() || node.OptIn != OptInDeclared || node.CgroupRoot != "/host/sys/fs/cgroup" || node.Proc != "/proc" ||
		node.Kube != KubeAuto || node.NodeName != "worker-1" || node.Kubeconfig != "" {
		t.Fatalf("node defaults: %+v", node)
	}
	// Explicit flags and OOMHERO_* variables win over node mode's defaults.
	node, err = ParseNode([]string{"--opt-in", "ALL", "--cgroup-root=/sys/fs/cgroup", "--kube", "off", "--node-name", "n.example"},
		env(map[string]string{"OOMHERO_NODE_NAME": "other", "NODE_NAME": "x"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if node.OptIn != OptInAll || node.CgroupRoot != "/sys/fs/cgroup" || node.Kube != KubeOff || node.NodeName != "n.example" {
		t.Fatalf("node flags: %+v", node)
	}
	node, err = ParseNode(nil, env(map[string]string{"OOMHERO_NODE_NAME": "other", "NODE_NAME": "x", "OOMHERO_OPT_IN": "all", "OOMHERO_CGROUP_ROOT": ""}), &bytes.Buffer{})
	if err != nil || node.NodeName != "other" || node.OptIn != OptInAll || node.CgroupRoot != "" {
		t.Fatalf("node env: %+v %v", node, err)
	}
	// The sidecar accepts --opt-in (declared: only containers that opt in)
	// but not the node's own flags.
	side, err = Parse([]string{"--opt-in", "declared"}, env(nil), &bytes.Buffer{})
	if err != nil || side.OptIn != OptInDeclared {
		t.Fatalf("sidecar --opt-in declared: %+v %v", side, err)
	}
	for _, f := range []string{"--node-name=a", "--kube=off", "--kubeconfig=/x"} {
		if _, err := Parse([]string{f}, env(nil), &bytes.Buffer{}); err == nil {
			t.Errorf("sidecar accepted node-only %s", f)
		}
	}
	// NODE_NAME is not read by the sidecar.
	if _, err := Parse(nil, env(map[string]string{"NODE_NAME": "Not_A_Node"}), &bytes.Buffer{}); err != nil {
		t.Errorf("sidecar read NODE_NAME: %v", err)
	}
}

func TestNodeModeErrors(t *testing.T) {
	kc := t.TempDir() + "/kubeconfig"
	if err := os.WriteFile(kc, []byte("apiVersion: v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := ParseNode([]string{"--kubeconfig", kc}, env(nil), &bytes.Buffer{}); err != nil || c.Kubeconfig != kc {
		t.Fatalf("--kubeconfig %s: %v %v", kc, c, err)
	}
	for _, tc := range []struct {
		env      map[string]string
		args     []string
		name     string
		accepted string
	}{
		{args: []string{"--opt-in", "some"}, name: "--opt-in", accepted: OptInAccepted},
		{env: map[string]string{"OOMHERO_OPT_IN": "yes"}, name: "OOMHERO_OPT_IN", accepted: OptInAccepted},
		{args: []string{"--kube", "on"}, name: "--kube", accepted: "one of auto, off"},
		{args: []string{"--node-name", "Worker_1"}, name: "--node-name", accepted: "node name"},
		{args: []string{"--node-name", "a..b"}, name: "--node-name", accepted: "node name"},
		{args: []string{"--node-name", "-a"}, name: "--node-name", accepted: "node name"},
		{args: []string{"--node-name", strings.Repeat("a", 64)}, name: "--node-name", accepted: "node name"},
		{env: map[string]string{"NODE_NAME": "UPPER"}, name: "NODE_NAME", accepted: "node name"},
		{args: []string{"--kubeconfig", "/nonexistent/kubeconfig"}, name: "--kubeconfig", accepted: "no such file"},
		{env: map[string]string{"KUBECONFIG": t.TempDir()}, name: "KUBECONFIG", accepted: "a readable kubeconfig file"},
		{args: []string{"--proc", ""}, name: "--proc", accepted: "a path"},
		{args: []string{"extra"}, name: "arguments", accepted: "no positional arguments"},
	} {
		_, err := ParseNode(tc.args, env(tc.env), &bytes.Buffer{})
		var ce *Error
		if !errors.As(err, &ce) || ce.Name != tc.name || !strings.Contains(err.Error(), tc.accepted) {
			t.Errorf("%v %v: want error naming %s (%q), got %v", tc.env, tc.args, tc.name, tc.accepted, err)
		}
	}
	// --kube off: the kubeconfig is not used, so not checked.
	if _, err := ParseNode([]string{"--kube=off"}, env(map[string]string{"KUBECONFIG": "/nonexistent"}), &bytes.Buffer{}); err != nil {
		t.Errorf("--kube=off with a stale KUBECONFIG: %v", err)
	}
}

func TestNodeHelpListsEveryOption(t *testing.T) {
	var out bytes.Buffer
	if _, err := ParseNode([]string{"--help"}, env(nil), &out); !errors.Is(err, ErrHelp) {
		t.Fatal(err)
	}
	c := &Config{}
	for _, o := range options(c) {
		if !strings.Contains(out.String(), "--"+o.name+"\n") || !strings.Contains(out.String(), o.env()) {
			t.Errorf("oomhero node --help lacks --%s or %s", o.name, o.env())
		}
	}
	for _, want := range []string{"Usage: oomhero node", "default /host/sys/fs/cgroup", "default declared", "NODE_NAME", "KUBECONFIG", "oomhero.dev/watch"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("oomhero node --help lacks %q", want)
		}
	}
	out.Reset()
	if _, err := Parse([]string{"--help"}, env(nil), &out); !errors.Is(err, ErrHelp) {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "--node-name") || !strings.Contains(out.String(), "default all") || !strings.Contains(out.String(), "oomhero node [options]") {
		t.Errorf("sidecar --help:\n%s", out.String())
	}
}

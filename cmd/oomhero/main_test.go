package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestBadConfigurationExits2NamingTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"WARNING": "abc"}, `WARNING="abc"`},
		{map[string]string{"WARNING": "95", "CRITICAL": "90"}, `WARNING="95"`},
		{map[string]string{"CRITICAL_SIGNAL": "SIGNOPE"}, `CRITICAL_SIGNAL="SIGNOPE"`},
		{map[string]string{"COOLDOWN": "often"}, `COOLDOWN="often"`},
		{map[string]string{"OOMHERO_REPEAT": "always"}, `OOMHERO_REPEAT="always"`},
		{map[string]string{"OOMHERO_ALLOW": "node"}, `OOMHERO_ALLOW="node"`},
		{map[string]string{"OOMHERO_TARGETS": "biggest"}, `OOMHERO_TARGETS="biggest"`},
		{map[string]string{"OOMHERO_NOTIFY_URL": "file:///etc/passwd"}, `OOMHERO_NOTIFY_URL="file:///etc/passwd"`},
	} {
		var out, errb bytes.Buffer
		code := run(nil, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming %s", tc.env, code, errb.String(), tc.want)
		}
		if strings.Contains(errb.String(), "starting") {
			t.Errorf("%v: started anyway", tc.env)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, func(string) (string, bool) { return "", false }, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "--critical-signal") || !strings.Contains(out.String(), "CRITICAL_SIGNAL") ||
		!strings.Contains(out.String(), "--allow") || !strings.Contains(out.String(), "OOMHERO_REPEAT") ||
		!strings.Contains(out.String(), "largest") || !strings.Contains(out.String(), "OOMHERO_NOTIFY_URL") {
		t.Fatalf("--help: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--version"}, func(string) (string, bool) { return "", false }, &out, &errb); code != 0 ||
		!strings.HasPrefix(out.String(), "oomhero ") {
		t.Fatalf("--version: exit %d %q", code, out.String())
	}
}

func TestNodeBadConfigurationExits2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"node", "--opt-in", "some"}, nil, `--opt-in="some": one of declared, all`},
		{[]string{"node", "--kube", "maybe"}, nil, `--kube="maybe": one of auto, off`},
		{[]string{"node"}, map[string]string{"NODE_NAME": "Bad_Node"}, `NODE_NAME="Bad_Node"`},
		{[]string{"node", "--kubeconfig", "/nonexistent/config"}, nil, `--kubeconfig="/nonexistent/config"`},
		{[]string{"node", "extra"}, nil, `arguments="extra"`},
		{[]string{"--node-name", "n1"}, nil, `flag provided but not defined: -node-name`},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 with %s", tc.args, tc.env, code, errb.String(), tc.want)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"node", "--help"}, func(string) (string, bool) { return "", false }, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "--node-name") || !strings.Contains(out.String(), "--opt-in") {
		t.Fatalf("node --help: exit %d\n%s", code, out.String())
	}
}

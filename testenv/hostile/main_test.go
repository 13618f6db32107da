package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestTrees builds each fake tree in a temporary directory (no chroot, no
// root needed) and checks the trap is what the suite expects.
func TestTrees(t *testing.T) {
	for _, tc := range []struct {
		attack string
		check  func(t *testing.T, dir string)
	}{
		{"fifo-procs", func(t *testing.T, dir string) {
			wantMode(t, filepath.Join(dir, "cgroup.procs"), os.ModeNamedPipe)
			wantMode(t, filepath.Join(dir, "memory.stat"), 0)
		}},
		{"fifo-files", func(t *testing.T, dir string) {
			wantContent(t, filepath.Join(dir, "cgroup.procs"), strconv.Itoa(os.Getpid())+"\n")
			for _, n := range memoryFiles {
				wantMode(t, filepath.Join(dir, n), os.ModeNamedPipe)
			}
		}},
		{"zero-procs", func(t *testing.T, dir string) { wantLink(t, filepath.Join(dir, "cgroup.procs"), "/dev/zero") }},
		{"zero-files", func(t *testing.T, dir string) {
			for _, n := range memoryFiles {
				wantLink(t, filepath.Join(dir, n), "/dev/zero")
			}
		}},
		{"sparse-procs", func(t *testing.T, dir string) { wantSparse(t, filepath.Join(dir, "cgroup.procs")) }},
		{"sparse-files", func(t *testing.T, dir string) {
			for _, n := range memoryFiles {
				wantSparse(t, filepath.Join(dir, n))
			}
		}},
		{"event-host", func(t *testing.T, dir string) {
			// The relative link leads out of the fake root to /host/secret.txt
			// of the container's real root ("/" here).
			name := filepath.Join(dir, "cgroup.event_control")
			target, err := os.Readlink(name)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(target, "/") {
				t.Errorf("%s -> %s: want a relative link", name, target)
			}
			if got := filepath.Clean(filepath.Join(dir, target)); got != "/host/secret.txt" {
				t.Errorf("%s -> %s resolves to %s, want /host/secret.txt", name, target, got)
			}
		}},
		{"event-bind", func(t *testing.T, dir string) {
			if _, err := os.Lstat(filepath.Join(dir, "cgroup.event_control")); !os.IsNotExist(err) {
				t.Errorf("event-bind created cgroup.event_control (the pod mounts it): %v", err)
			}
		}},
	} {
		t.Run(tc.attack, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "fake")
			spec, err := treeSpec(options{attack: tc.attack, hostFile: "/host/secret.txt"})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{"sys/fs/cgroup/memory", "sys/fs/cgroup/memory/libpod_parent/x/libpod-y"} {
				if err := buildDir(root, d, spec); err != nil {
					t.Fatal(err)
				}
				tc.check(t, filepath.Join(root, d))
			}
		})
	}
}

func TestUnknownAttack(t *testing.T) {
	if _, err := treeSpec(options{attack: "nope"}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("treeSpec(nope) = %v, want an error naming it", err)
	}
}

// TestForgedNames: the comm names fit TASK_COMM_LEN and are what they claim.
func TestForgedNames(t *testing.T) {
	for _, c := range []string{CommUTF8, CommNewline} {
		if len(c) > 15 {
			t.Errorf("comm %q is %d bytes, the kernel keeps 15", c, len(c))
		}
	}
	if strings.ToValidUTF8(CommUTF8, "") == CommUTF8 {
		t.Errorf("CommUTF8 %q is valid UTF-8", CommUTF8)
	}
	if !strings.Contains(CommNewline, "\nlevel=ERROR") || !strings.Contains(ArgvForged, "\nlevel=ERROR") {
		t.Errorf("the newline names forge no log line")
	}
}

func wantMode(t *testing.T, name string, want os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Type(); got != want {
		t.Errorf("%s: type %v, want %v", name, got, want)
	}
}

func wantLink(t *testing.T, name, target string) {
	t.Helper()
	got, err := os.Readlink(name)
	if err != nil {
		t.Fatal(err)
	}
	if got != target {
		t.Errorf("%s -> %s, want -> %s", name, got, target)
	}
}

func wantContent(t *testing.T, name, want string) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s holds %q, want %q", name, b, want)
	}
}

func wantSparse(t *testing.T, name string) {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != tib {
		t.Errorf("%s: size %d, want %d", name, fi.Size(), tib)
	}
}

package watch

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestCgroupDir(t *testing.T) {
	for _, tc := range []struct {
		d    CgroupDir
		want string
	}{
		{CgroupDir{Root: "/proc/7/root", Rel: "sys/fs/cgroup/memory"}, "/proc/7/root/sys/fs/cgroup/memory"},
		{CgroupDir{Root: "/", Rel: "sys/fs/cgroup"}, "/sys/fs/cgroup"},
		{CgroupDir{Root: "/sys/fs/cgroup", Rel: "/kubepods/x"}, "/sys/fs/cgroup/kubepods/x"},
		{CgroupDir{Root: "/sys/fs/cgroup/memory/c"}, "/sys/fs/cgroup/memory/c"},
		{CgroupDir{Root: "/x", Rel: "."}, "/x"},
	} {
		if got := tc.d.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.d, got, tc.want)
		}
	}
	d := CgroupDir{Root: "/proc/7/root", Rel: "sys/fs/cgroup", Ino: 5}
	if d != (CgroupDir{Root: "/proc/7/root", Rel: "sys/fs/cgroup", Ino: 5}) || d.IsZero() || !(CgroupDir{}).IsZero() {
		t.Fatal("comparison")
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "dir", d)
	var m map[string]any
	if err := json.Unmarshal([]byte(b.String()), &m); err != nil || m["dir"] != "/proc/7/root/sys/fs/cgroup" {
		t.Fatalf("JSON log: %s", b.String())
	}
	b.Reset()
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "dir", d)
	if !strings.Contains(b.String(), "dir=/proc/7/root/sys/fs/cgroup") {
		t.Fatalf("text log: %s", b.String())
	}
}

package cgroup

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oomhero/oomhero/internal/watch"
	"time"
)

// Each case reads testdata/pressure/<name>/memory.pressure.
func TestReadPressure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		want    Pressure
		wantErr error
	}{
		{name: "idle"},
		{name: "stalled", want: Pressure{
			Some: Stall{1.11, 2.22, 3.33, 4444 * time.Microsecond},
			Full: Stall{5.55, 6.66, 7.77, 8888 * time.Microsecond},
		}},
		{name: "full-stall", want: Pressure{
			Some: Stall{100, 99.5, 42, 123456789 * time.Microsecond},
			Full: Stall{100, 98.25, 40, 120 * time.Second},
		}},
		{name: "extra-field", want: Pressure{
			Some: Stall{1.11, 2.22, 3.33, 4444 * time.Microsecond},
			Full: Stall{5.55, 6.66, 7.77, 8888 * time.Microsecond},
		}},
		{name: "no-full", wantErr: ErrParse},
		{name: "missing-total", wantErr: ErrParse},
		{name: "bad-number", wantErr: ErrParse},
		{name: "over-100", wantErr: ErrParse},
		{name: "unknown-line", wantErr: ErrParse},
		{name: "empty", wantErr: ErrParse},
		{name: "no-file", wantErr: ErrNoPressure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join("testdata", "pressure", tc.name)
			got, err := ReadPressure(fake(t, dir))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ReadPressure: err %v, want %v", err, tc.wantErr)
				}
				if got != (Pressure{}) {
					t.Errorf("ReadPressure returned figures with an error: %+v", got)
				}
			} else if err != nil || got != tc.want {
				t.Fatalf("ReadPressure = %+v, %v; want %+v", got, err, tc.want)
			}

			r, err := OpenPressure(fake(t, dir))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("OpenPressure: err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenPressure: %v", err)
			}
			defer r.Close()
			for i := 0; i < 2; i++ { // rereads the same open file
				if got, err := r.Read(); err != nil || got != tc.want {
					t.Fatalf("Read #%d = %+v, %v; want %+v", i, got, err, tc.want)
				}
			}
		})
	}
}

// TestPressureReaderSeesChanges: a PressureReader rereads the file, it does
// not keep its first content.
func TestPressureReaderSeesChanges(t *testing.T) {
	d := t.TempDir()
	idle, err := os.ReadFile(filepath.Join("testdata", "pressure", "idle", PressureFile))
	if err != nil {
		t.Fatal(err)
	}
	stalled, err := os.ReadFile(filepath.Join("testdata", "pressure", "stalled", PressureFile))
	if err != nil {
		t.Fatal(err)
	}
	write(t, d, map[string]string{PressureFile: string(idle)})
	r, err := OpenPressure(fake(t, d))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	write(t, d, map[string]string{PressureFile: string(stalled)})
	p, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if p.Full.Avg10 != 5.55 {
		t.Errorf("after rewrite: full avg10 = %v, want 5.55", p.Full.Avg10)
	}
}

// TestReadPressureRealKernel reads the memory.pressure of this process's own
// cgroup v2 directory (the unified hierarchy, also mounted on hosts whose
// memory controller is on cgroup v1) and the system-wide PSI file.
func TestReadPressureRealKernel(t *testing.T) {
	if _, err := os.Stat("/proc/pressure/memory"); err != nil {
		t.Skipf("kernel without PSI: %v", err)
	}
	b, err := os.ReadFile("/proc/pressure/memory")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePressure(b); err != nil {
		t.Fatalf("/proc/pressure/memory: %v", err)
	}
	mnt := cgroup2Mount(t)
	if mnt == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no cgroup2 mount (CI=true: failing instead of skipping)")
		}
		t.Skip("no cgroup2 mount")
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var rel string
	for _, l := range strings.Split(string(self), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			rel = p
		}
	}
	dir := watch.CgroupDir{Root: mnt, Rel: rel}
	p, err := ReadPressure(dir)
	if err != nil {
		t.Fatalf("ReadPressure(%s): %v", dir, err)
	}
	t.Logf("%s: %+v", dir, p)
}

func cgroup2Mount(t *testing.T) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts ... - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) >= 5 && len(sf) >= 1 && sf[0] == "cgroup2" && pf[3] == "/" {
			return pf[4]
		}
	}
	return ""
}

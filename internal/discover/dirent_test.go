package discover

import (
	"encoding/binary"
	"os"
	"slices"
	"strconv"
	"testing"
)

// TestListPIDsMatchesReaddir: the in-place getdents64 parse lists the
// same PIDs as the standard library, on this machine's procfs.
func TestListPIDsMatchesReaddir(t *testing.T) {
	s := &Scanner{root: "/proc"}
	got, err := s.listPIDs()
	if err != nil {
		t.Fatal(err)
	}
	names, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for _, n := range names {
		if pid, err := strconv.Atoi(n.Name()); err == nil && pid > 0 {
			want = append(want, pid)
		}
	}
	// Processes come and go between the two reads: compare the ones that
	// both saw, and ask that nearly all were.
	both := 0
	for _, p := range want {
		if slices.Contains(got, p) {
			both++
		}
	}
	if len(got) == 0 || both < len(want)*9/10 {
		t.Fatalf("getdents parse found %d PIDs, readdir %d, %d in both", len(got), len(want), both)
	}
	if !slices.Contains(got, os.Getpid()) {
		t.Fatalf("own PID %d not listed", os.Getpid())
	}
}

// dirent builds one getdents64 record.
func dirent(name string, reclen int) []byte {
	if reclen == 0 {
		reclen = (19 + len(name) + 1 + 7) &^ 7
	}
	b := make([]byte, max(reclen, 19+len(name)))
	binary.NativeEndian.PutUint16(b[16:18], uint16(reclen))
	copy(b[19:], name)
	return b[:max(reclen, 0)]
}

// FuzzAppendDirentPIDs: any buffer; only positive decimal names, no panic.
func FuzzAppendDirentPIDs(f *testing.F) {
	var seed []byte
	for _, n := range []string{".", "..", "1", "42", "self", "4194304", "0", "007", "99999999999"} {
		seed = append(seed, dirent(n, 0)...)
	}
	f.Add(seed)
	f.Add(dirent("12", 5))
	f.Add(append(dirent("12", 0), 1, 2, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range appendDirentPIDs(nil, b) {
			if p <= 0 || p > 999999999 {
				t.Fatalf("PID %d", p)
			}
		}
	})
}

func TestAppendDirentPIDs(t *testing.T) {
	var b []byte
	for _, n := range []string{".", "..", "1", "42", "self", "0", "007", "1234567890"} {
		b = append(b, dirent(n, 0)...)
	}
	if got := appendDirentPIDs(nil, b); !slices.Equal(got, []int{1, 42, 7}) {
		t.Fatalf("got %v, want [1 42 7]", got)
	}
}

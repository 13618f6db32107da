package discover

import (
	"os"
	"testing"
)

// BenchmarkRescan is the steady-state cost of one rescan of this host's
// procfs (a directory listing, and the files of one known process in
// revalidateEvery).
func BenchmarkRescan(b *testing.B) {
	s, err := NewScanner("/proc", os.Getpid())
	if err != nil {
		b.Skip(err)
	}
	groups, err := s.Scan()
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, g := range groups {
		n += len(g.Procs)
	}
	b.ReportMetric(float64(n), "procs")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Scan(); err != nil {
			b.Fatal(err)
		}
	}
}

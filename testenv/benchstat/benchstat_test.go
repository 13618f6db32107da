package benchstat

import "testing"

func TestStats(t *testing.T) {
	if m, lo, hi := MedianRange([]float64{3, 1, 4, 2}); m != 2 || lo != 1 || hi != 4 {
		t.Errorf("MedianRange = %v %v %v, want 2 1 4", m, lo, hi)
	}
	if m := Median([]float64{5, 1, 3}); m != 3 {
		t.Errorf("Median = %v, want 3", m)
	}
	if m := Mean([]float64{1, 2, 6}); m != 3 {
		t.Errorf("Mean = %v, want 3", m)
	}
	if m, lo, hi := MedianRange(nil); m != 0 || lo != 0 || hi != 0 || Mean(nil) != 0 {
		t.Error("empty input: want zeros")
	}
}

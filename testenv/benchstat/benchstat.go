// Package benchstat holds the few statistics the benchmarks print
// (testenv/bench, testenv/nodebench).
package benchstat

import "slices"

// MedianRange returns the median (the lower middle of an even count) and
// the range of xs; zeros when xs is empty.
func MedianRange(xs []float64) (med, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2], s[0], s[len(s)-1]
}

// Median is MedianRange's median.
func Median(xs []float64) float64 { m, _, _ := MedianRange(xs); return m }

// Mean of xs (0 when empty): with windows of equal length, the CPU share
// of the whole steady time, the windows that held a periodic full scan
// included (the median leaves them out).
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/oomhero/oomhero/internal/safefs"
	"github.com/oomhero/oomhero/internal/watch"
)

// ErrNoPressure is wrapped when a cgroup has no memory pressure figures:
// no memory.pressure file (a cgroup v1 memory hierarchy, a kernel without
// CONFIG_PSI) or PSI turned off at boot (the file exists but reading it fails
// with EOPNOTSUPP; boot with psi=1 on kernels built with
// CONFIG_PSI_DEFAULT_DISABLED).
var ErrNoPressure = errors.New("memory pressure (PSI) not available")

// PressureFile is the name of a cgroup v2 directory's memory pressure file.
const PressureFile = "memory.pressure"

// Stall is one line of a pressure stall file: the share of wall time in
// which tasks of the cgroup were stalled on memory, as percentages averaged
// over the last 10, 60 and 300 seconds, and the total stall time since the
// cgroup was created.
type Stall struct {
	Avg10, Avg60, Avg300 float64 // percent, 0..100
	Total                time.Duration
}

// Pressure is a cgroup's memory pressure: Some is the time in which at least
// one task was stalled on memory (reclaim, refaults, swap-in), Full the time
// in which all non-idle tasks were stalled at once.
type Pressure struct {
	Some, Full Stall
}

// ReadPressure reads d/memory.pressure. d is a cgroup v2 directory; on a
// host whose memory controller is on cgroup v1, PSI is still kept per cgroup
// of the unified (cgroup2) hierarchy when one is mounted
// (/sys/fs/cgroup/unified in hybrid mode): pass the container's directory
// there. Errors wrap ErrNoPressure when the figures do not exist.
func ReadPressure(d watch.CgroupDir) (Pressure, error) {
	r, err := OpenPressure(d)
	if err != nil {
		return Pressure{}, err
	}
	defer r.Close()
	return r.p, nil
}

func pressureErr(name string, err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.EOPNOTSUPP) {
		return fmt.Errorf("%s: %w: %w", name, ErrNoPressure, err)
	}
	return fmt.Errorf("read %s: %w", name, err)
}

// ParsePressure parses the content of a PSI file (cgroup memory.pressure or
// /proc/pressure/memory):
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=0
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//
// Both lines and all four fields are required (total is in microseconds);
// unknown fields are ignored, so later kernels may add some.
func ParsePressure(b []byte) (Pressure, error) {
	var p Pressure
	var seen [2]bool
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		kind, rest, _ := bytes.Cut(line, []byte{' '})
		var dst *Stall
		switch string(kind) {
		case "some":
			dst, seen[0] = &p.Some, true
		case "full":
			dst, seen[1] = &p.Full, true
		default:
			return Pressure{}, fmt.Errorf("%w: pressure line %q", ErrParse, line)
		}
		if err := parseStall(rest, dst); err != nil {
			return Pressure{}, fmt.Errorf("%w: pressure line %q: %w", ErrParse, line, err)
		}
	}
	if !seen[0] || !seen[1] {
		return Pressure{}, fmt.Errorf("%w: pressure: want a some and a full line", ErrParse)
	}
	return p, nil
}

func parseStall(b []byte, s *Stall) error {
	// One bit per field: a repeated field must not stand in for a
	// missing one (which would then read 0).
	const need = 0b1111
	found := 0
	for _, f := range bytes.Fields(b) {
		k, v, ok := bytes.Cut(f, []byte{'='})
		if !ok {
			return fmt.Errorf("field %q", f)
		}
		var dst *float64
		switch string(k) {
		case "avg10":
			dst, found = &s.Avg10, found|0b0001
		case "avg60":
			dst, found = &s.Avg60, found|0b0010
		case "avg300":
			dst, found = &s.Avg300, found|0b0100
		case "total":
			us, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil || us > math.MaxInt64/uint64(time.Microsecond) {
				return fmt.Errorf("total %q", v)
			}
			s.Total = time.Duration(us) * time.Microsecond
			found |= 0b1000
			continue
		default:
			continue
		}
		x, err := strconv.ParseFloat(string(v), 64)
		if err != nil || !(x >= 0 && x <= 100) { // NaN too
			return fmt.Errorf("%s %q", k, v)
		}
		*dst = x
	}
	if found != need {
		return errors.New("want avg10, avg60, avg300 and total")
	}
	return nil
}

// PressureReader rereads one memory.pressure file with pread, for pollers
// that read it on every tick. It is not safe for concurrent use.
type PressureReader struct {
	f   *safefs.File
	buf []byte
	p   Pressure // the last reading
}

// OpenPressure opens d/memory.pressure through package safefs and reads it
// once, so a cgroup whose PSI is off fails here (wrapping ErrNoPressure) and
// not on every tick.
func OpenPressure(d watch.CgroupDir) (*PressureReader, error) {
	dir, err := OpenDir(d)
	if err != nil {
		return nil, pressureErr(safefs.Join(d.String(), PressureFile), err)
	}
	defer dir.Close()
	f, err := dir.Open(PressureFile)
	if err != nil {
		return nil, pressureErr(dir.Name()+"/"+PressureFile, err)
	}
	r := &PressureReader{f: f, buf: make([]byte, 256)}
	if _, err := r.Read(); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// Read reads and parses the file.
func (r *PressureReader) Read() (Pressure, error) {
	b, err := r.f.ReadAll(r.buf, safefs.LimitSmall)
	if err != nil {
		return Pressure{}, pressureErr(r.f.Name(), err)
	}
	if cap(b) > cap(r.buf) {
		r.buf = b[:cap(b)]
	}
	p, err := ParsePressure(b)
	if err != nil {
		return Pressure{}, fmt.Errorf("%s: %w", r.f.Name(), err)
	}
	r.p = p
	return p, nil
}

// Close closes the file.
func (r *PressureReader) Close() error { return r.f.Close() }

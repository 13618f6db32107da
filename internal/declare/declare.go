// Package declare reads what an application container declares about
// oomhero in its own environment: its consent to signals, its thresholds,
// where to send HTTP notifications, or that it wants nothing at all.
//
// The names are the sidecar's own OOMHERO_* options; set on an application
// container they apply to that container only:
//
//	OOMHERO=off                        no signal and no notification (still watched)
//	OOMHERO_WARNING=65                 warning threshold, percent of the limit
//	OOMHERO_CRITICAL=90                critical threshold
//	OOMHERO_WARNING_SIGNAL=SIGUSR1     signal at warning, or none (declaring is consent)
//	OOMHERO_CRITICAL_SIGNAL=SIGUSR2    signal at critical, or none
//	OOMHERO_TARGETS=handlers           handlers, main, all or largest
//	OOMHERO_NOTIFY_URL=http://127.0.0.1:8080/oomhero
//	OOMHERO_REPEAT=once                cooldown or once
//	OOMHERO_COOLDOWN=1s
//	OOMHERO_NAME=bloat                 the container's name in logs, metrics and events
//	OOMHERO_DRY_RUN=true               log and count signals and notifications, send none
//	                                   (false: send them although the sidecar runs --dry-run)
//
// OOMHERO_NAME exists because a sidecar cannot learn its pod-mates'
// container names without the Kubernetes API (the Downward API gives a
// container its own pod's fields, never another container's name): a pod
// spec that sets it to the container's own name (a DNS-1123 label, as
// Kubernetes requires of container names) makes oomhero say "bloat" where
// it would otherwise say the main process's command.
//
// Parse is pure (environ bytes in, Declaration out); Read reads
// /proc/<pid>/environ with a bounded read. A bad value is an Error for that
// variable, never a failure of the whole declaration: the caller logs it and
// keeps its own default for that option. Apply merges a Declaration over the
// sidecar's configuration.
//
// The process environment is what the container was started with (the
// kernel keeps it in the process's memory); a variable a program sets later
// is not seen. Nothing here needs the Kubernetes API, so a node agent reads
// declarations the same way.
//
// The node agent also reads pod annotations (annotations.go):
// oomhero.dev/watch opts a pod's containers in or out, and
// oomhero.dev/warning, critical, warning-signal, critical-signal, targets,
// notify-url, repeat, cooldown and dry-run carry the same values pod-wide
// (FromAnnotations); the container's environment wins, option by option
// (Merge).
package declare

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/oomhero/oomhero/internal/config"
)

// Variable names.
const (
	Off            = "OOMHERO"
	Warning        = "OOMHERO_WARNING"
	Critical       = "OOMHERO_CRITICAL"
	WarningSignal  = "OOMHERO_WARNING_SIGNAL"
	CriticalSignal = "OOMHERO_CRITICAL_SIGNAL"
	Targets        = "OOMHERO_TARGETS"
	NotifyURL      = "OOMHERO_NOTIFY_URL"
	Repeat         = "OOMHERO_REPEAT"
	Cooldown       = "OOMHERO_COOLDOWN"
	Name           = "OOMHERO_NAME"
	DryRun         = "OOMHERO_DRY_RUN"
)

// Names lists every variable a container may declare.
var Names = []string{Off, Warning, Critical, WarningSignal, CriticalSignal, Targets, NotifyURL, Repeat, Cooldown, Name, DryRun}

// Signal is a declared signal: Declared tells whether the variable was set
// (with a valid value); Sig 0 is "none".
type Signal struct {
	Sig      unix.Signal
	Declared bool
}

// Declaration is what one container declared. Zero fields were not declared.
type Declaration struct {
	Off                           bool
	Warning, Critical             int // percent of the limit; 0: not declared
	WarningSignal, CriticalSignal Signal
	Targets                       config.Targets // "": not declared
	NotifyURL                     string         // "": not declared
	Repeat                        config.Repeat  // "": not declared
	Cooldown                      time.Duration  // 0: not declared
	Name                          string         // "": not declared
	DryRun                        *bool          // nil: not declared
	// Set lists the valid declarations as NAME=value, in the order of Names.
	Set []string
	// Errors lists the variables with a bad value (their option is left
	// undeclared), in the order of Names.
	Errors []*config.Error
}

// Empty reports whether nothing was declared, valid or not.
func (d *Declaration) Empty() bool { return len(d.Set) == 0 && len(d.Errors) == 0 }

// Equal reports whether two declarations declare the same (same valid
// values, same errors).
func (d *Declaration) Equal(o *Declaration) bool {
	return slices.Equal(d.Set, o.Set) && slices.EqualFunc(d.Errors, o.Errors, func(a, b *config.Error) bool { return *a == *b })
}

// MaxValue bounds a declared value; longer values are an Error.
const MaxValue = 2048

// Parse reads the declarations in environ: NUL-separated NAME=value entries,
// as /proc/<pid>/environ holds them. Entries that are not OOMHERO
// variables are ignored; an unknown OOMHERO_* name is an Error (likely a
// typo). When a name appears twice the first one counts, as getenv(3) and
// Go's os.Getenv see it. An empty value counts as not declared.
func Parse(environ []byte) Declaration {
	vals := map[string]string{}
	var unknown []*config.Error
	for len(environ) > 0 {
		entry := environ
		if i := bytes.IndexByte(environ, 0); i >= 0 {
			entry, environ = environ[:i], environ[i+1:]
		} else {
			environ = nil
		}
		if !bytes.HasPrefix(entry, []byte(Off)) {
			continue
		}
		k, v, ok := bytes.Cut(entry, []byte("="))
		if !ok {
			continue
		}
		name := string(k)
		if _, seen := vals[name]; seen {
			continue
		}
		if name != Off && !strings.HasPrefix(name, Off+"_") {
			continue // OOMHEROIC=1: not ours
		}
		if !slices.Contains(Names, name) {
			if len(unknown) < 8 {
				unknown = append(unknown, &config.Error{Name: clip(name), Value: clip(string(v)),
					Accepted: "a per-container variable: " + strings.Join(Names, ", ")})
			}
			vals[name] = ""
			continue
		}
		vals[name] = string(v)
	}
	var d Declaration
	for _, name := range Names {
		raw, ok := vals[name]
		v := strings.TrimSpace(raw)
		if !ok || v == "" {
			continue
		}
		if len(v) > MaxValue {
			d.Errors = append(d.Errors, &config.Error{Name: name, Value: clip(v), Accepted: fmt.Sprintf("at most %d bytes", MaxValue)})
			continue
		}
		if err := d.set(name, v); err != nil {
			d.Errors = append(d.Errors, &config.Error{Name: name, Value: clip(v), Accepted: err.Error()})
			continue
		}
		d.Set = append(d.Set, name+"="+v)
	}
	if d.Warning > 0 && d.Critical > 0 && d.Warning > d.Critical {
		d.Errors = append(d.Errors, &config.Error{Name: Warning, Value: strconv.Itoa(d.Warning),
			Accepted: fmt.Sprintf("at most %s (%d)", Critical, d.Critical)})
		d.Set = slices.DeleteFunc(d.Set, func(s string) bool { return strings.HasPrefix(s, Warning+"=") })
		d.Warning = 0
	}
	d.Errors = append(d.Errors, unknown...)
	return d
}

func (d *Declaration) set(name, v string) (err error) {
	switch name {
	case Off:
		switch strings.ToLower(v) {
		case "off":
			d.Off = true
		case "on":
		default:
			return errors.New("off (or on, the default)")
		}
	case Warning:
		d.Warning, err = config.ParseThreshold(v)
	case Critical:
		d.Critical, err = config.ParseThreshold(v)
	case WarningSignal:
		d.WarningSignal.Sig, err = config.ParseSignalOrNone(v)
		d.WarningSignal.Declared = err == nil
	case CriticalSignal:
		d.CriticalSignal.Sig, err = config.ParseSignalOrNone(v)
		d.CriticalSignal.Declared = err == nil
	case Targets:
		d.Targets, err = config.ParseTargets(v)
	case NotifyURL:
		d.NotifyURL, err = config.ParseURL(v)
	case Repeat:
		d.Repeat, err = config.ParseRepeat(v)
	case Cooldown:
		d.Cooldown, err = config.ParseCooldown(v)
	case Name:
		if !isDNSLabel(v) {
			return errors.New("a Kubernetes container name: at most 63 of a-z, 0-9 and '-', starting and ending with a letter or digit")
		}
		d.Name = v
	case DryRun:
		var b bool
		if b, err = config.ParseBool(v); err == nil {
			d.DryRun = &b
		}
	}
	return err
}

// isDNSLabel reports whether s is an RFC 1123 label, the form Kubernetes
// requires of a container name.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// clip shortens a value for a log line.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Apply returns the configuration for one container: base with the
// declared options in place of the sidecar's. A declared threshold that
// contradicts the other one (warning above critical) is left out and
// reported as an Error.
func (d *Declaration) Apply(base *config.Config) (*config.Config, []*config.Error) {
	c := *base
	var errs []*config.Error
	if d.Warning > 0 {
		c.Warning = d.Warning
	}
	if d.Critical > 0 {
		c.Critical = d.Critical
	}
	if c.Warning > c.Critical {
		// One of them was declared (Parse rejects both at once), the other
		// is the sidecar's.
		if d.Warning > 0 {
			errs = append(errs, &config.Error{Name: Warning, Value: strconv.Itoa(d.Warning),
				Accepted: fmt.Sprintf("at most the critical threshold (%d)", c.Critical)})
			c.Warning = base.Warning
		} else {
			errs = append(errs, &config.Error{Name: Critical, Value: strconv.Itoa(d.Critical),
				Accepted: fmt.Sprintf("at least the warning threshold (%d)", c.Warning)})
			c.Critical = base.Critical
		}
	}
	if d.WarningSignal.Declared {
		c.WarningSignal = d.WarningSignal.Sig
	}
	if d.CriticalSignal.Declared {
		c.CriticalSignal = d.CriticalSignal.Sig
	}
	if d.Targets != "" {
		c.Targets = d.Targets
	}
	if d.NotifyURL != "" {
		c.NotifyURL = d.NotifyURL
	}
	if d.Repeat != "" {
		c.Repeat = d.Repeat
	}
	if d.Cooldown > 0 {
		c.Cooldown = d.Cooldown
	}
	if d.DryRun != nil {
		c.DryRun = *d.DryRun
	}
	return &c, errs
}

// Read limits: the environment is read in chunks of ReadChunk bytes, at most
// MaxEnviron bytes in all (Linux caps a process's arguments and environment
// at a quarter of its stack limit, 2 MiB by default, but a raised limit
// allows more); only OOMHERO entries are kept, each at most MaxEntry bytes.
const (
	ReadChunk  = 32 << 10
	MaxEnviron = 8 << 20
	MaxEntry   = 4 << 10
)

// ErrTruncated is returned (with what was read) when the environment is
// longer than MaxEnviron.
var ErrTruncated = errors.New("environment longer than the read limit")

// ErrEmpty is returned for an empty environment: a zombie or a kernel
// thread, whose environment cannot be seen.
var ErrEmpty = errors.New("empty environment (process exiting?)")

// Read reads the declarations of process pid from proc/<pid>/environ
// (proc is a procfs mount oomhero trusts; the environ file is a procfs file
// that reads the process's memory, so nothing in the container's root is
// followed). It keeps only OOMHERO entries, so memory stays bounded
// whatever the environment's size.
func Read(proc string, pid int) (Declaration, error) {
	f, err := os.OpenFile(filepath.Join(proc, strconv.Itoa(pid), "environ"), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return Declaration{}, err
	}
	defer f.Close()
	kept, total, eq, err := scanEnv(f)
	if err != nil && !errors.Is(err, ErrTruncated) {
		return Declaration{}, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if total == 0 {
		return Declaration{}, fmt.Errorf("%s: %w", f.Name(), ErrEmpty)
	}
	if !eq {
		return Declaration{}, fmt.Errorf("%s: %w", f.Name(), ErrRewritten)
	}
	d := Parse(kept)
	if err != nil {
		err = fmt.Errorf("%s: %w (%d bytes read)", f.Name(), err, total)
	}
	return d, err
}

// ErrRewritten is returned for an environment with no NAME=value entry at
// all: the process wrote its process title over it (nginx, php-fpm and
// PostgreSQL do, through setproctitle-like code), so what it was started
// with cannot be read any more.
var ErrRewritten = errors.New("no NAME=value entry: the process rewrote its environment (process title)")

// scan reads r in chunks and keeps the OOMHERO entries, NUL-terminated.
// An entry that is not complete when the read ends (truncated) is dropped.
func scan(r io.Reader) (kept []byte, total int, err error) {
	kept, total, _, err = scanEnv(r)
	return kept, total, err
}

// scanEnv is scan that also tells whether any entry had a '='.
func scanEnv(r io.Reader) (kept []byte, total int, eq bool, err error) {
	buf := make([]byte, ReadChunk)
	var cur []byte // the current entry, while it may be ours
	skipping := false
	for total < MaxEnviron {
		n, rerr := r.Read(buf[:min(len(buf), MaxEnviron-total)])
		total += n
		if !eq && bytes.IndexByte(buf[:n], '=') >= 0 {
			eq = true
		}
		for _, b := range buf[:n] {
			if b == 0 {
				if !skipping && len(cur) > 0 {
					kept = append(append(kept, cur...), 0)
				}
				cur, skipping = cur[:0], false
				continue
			}
			if skipping {
				continue
			}
			cur = append(cur, b)
			// Decide as soon as the prefix tells.
			if len(cur) <= len(Off) && cur[len(cur)-1] != Off[len(cur)-1] || len(cur) > MaxEntry {
				skipping = true
			}
		}
		if rerr == io.EOF || (n == 0 && rerr == nil) {
			return kept, total, eq, nil
		}
		if rerr != nil {
			return kept, total, eq, rerr
		}
	}
	return kept, total, eq, ErrTruncated
}

//go:build profile

package main

// The profiling variant (go build -tags profile): with OOMHERO_CPUPROFILE
// set, oomhero writes a CPU profile to that file, from
// OOMHERO_CPUPROFILE_AFTER (a duration, default 0: start-up included) for
// OOMHERO_CPUPROFILE_FOR (default 60s). The released binary has no such
// code.

import (
	"os"
	"runtime/pprof"
	"time"
)

func init() {
	path := os.Getenv("OOMHERO_CPUPROFILE")
	if path == "" {
		return
	}
	after, span := profileDuration("OOMHERO_CPUPROFILE_AFTER", 0), profileDuration("OOMHERO_CPUPROFILE_FOR", time.Minute)
	f, err := os.Create(path)
	if err != nil {
		profileFail(err)
	}
	go func() {
		time.Sleep(after)
		if err := pprof.StartCPUProfile(f); err != nil {
			profileFail(err)
		}
		time.Sleep(span)
		pprof.StopCPUProfile()
		f.Close()
	}()
}

func profileDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		profileFail(err)
	}
	return d
}

func profileFail(err error) {
	os.Stderr.WriteString("OOMHERO_CPUPROFILE: " + err.Error() + "\n")
	os.Exit(2)
}

//go:build pgoprofile

package main

// Built only by bench/pgo.sh (-tags pgoprofile): records the CPU profile
// that becomes default.pgo, the profile the Go compiler optimizes keygate
// with (profile-guided optimization).

import (
	"os"
	"runtime/pprof"
	"strconv"
	"time"
)

func init() {
	path := os.Getenv("PGO_PROFILE")
	if path == "" {
		return
	}
	secs, err := strconv.Atoi(os.Getenv("PGO_SECONDS"))
	if err != nil || secs <= 0 {
		secs = 20
	}
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	go func() {
		time.Sleep(time.Duration(secs) * time.Second)
		pprof.StopCPUProfile()
		f.Close()
	}()
}

// Package cpuprofile starts the CPU profile the bench commands write when
// given -cpuprofile.
package cpuprofile

import (
	"log"
	"os"
	"runtime/pprof"
)

// Start profiles the CPU into path until the returned function is called;
// with an empty path it does nothing.
func Start(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

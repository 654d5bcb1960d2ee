package selinux

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// benchTreeSize is how many paths the lookup benchmarks label: a tree of
// an OS image's size.
const benchTreeSize = 100000

// libselinuxSample is how many of those paths libselinux labels in its
// benchmark (it takes about 0.1 ms a path).
const libselinuxSample = 5000

var (
	benchPathsOnce sync.Once
	benchPaths     []query
)

// realisticPaths returns up to benchTreeSize paths and modes of this
// machine's /usr and /etc, the latter as /usr/etc (where an ostree-ext
// commit holds it): a real OS tree's mix of directories, files and
// symbolic links.
func realisticPaths() []query {
	benchPathsOnce.Do(func() {
		for _, root := range [][2]string{{"/usr", "/usr"}, {"/etc", "/usr/etc"}} {
			filepath.WalkDir(root[0], func(path string, d fs.DirEntry, err error) error {
				if len(benchPaths) >= benchTreeSize {
					return filepath.SkipAll
				}
				if err != nil {
					return nil
				}
				mode := uint32(0o100644)
				switch {
				case d.IsDir():
					mode = 0o040755
				case d.Type()&fs.ModeSymlink != 0:
					mode = 0o120777
				}
				benchPaths = append(benchPaths, query{root[1] + strings.TrimPrefix(path, root[0]), mode})
				return nil
			})
		}
	})
	return benchPaths
}

// benchTree returns realisticPaths, skipping a benchmark without any.
func benchTree(b *testing.B) []query {
	paths := realisticPaths()
	if len(paths) == 0 {
		b.Skip("no paths under /usr or /etc")
	}
	return paths
}

// sample returns n of the paths, evenly spread.
func sample(paths []query, n int) []query {
	if n >= len(paths) {
		return paths
	}
	out := make([]query, n)
	for i := range out {
		out[i] = paths[i*len(paths)/n]
	}
	return out
}

func debianPolicy(b *testing.B) *Policy {
	b.Helper()
	p, err := LoadFileContexts(os.DirFS(debianPolicyFiles), "file_contexts")
	if err != nil {
		b.Skipf("Debian reference policy: %v", err)
	}
	return p
}

// BenchmarkLoadDebianPolicy loads the Debian reference policy's file
// contexts (about 5,600 specifications).
func BenchmarkLoadDebianPolicy(b *testing.B) {
	debianPolicy(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadFileContexts(os.DirFS(debianPolicyFiles), "file_contexts"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookup is the cost of one lookup in the Debian reference
// policy over a real OS tree's paths.
func BenchmarkLookup(b *testing.B) {
	p := debianPolicy(b)
	paths := benchTree(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		q := paths[i%len(paths)]
		if _, _, err := p.Lookup(q.path, q.mode); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkLookupSample looks up the same paths BenchmarkLibselinuxLookup
// gives libselinux, for a like-for-like comparison.
func BenchmarkLookupSample(b *testing.B) {
	p := debianPolicy(b)
	paths := sample(benchTree(b), libselinuxSample)
	i := 0
	for b.Loop() {
		q := paths[i%len(paths)]
		p.Lookup(q.path, q.mode)
		i++
	}
}

// BenchmarkLibselinuxLookup measures libselinux 3.4's own lookup time on
// the Debian reference policy's text file contexts (as libostree opens
// them) for libselinuxSample of the paths: the python driver times a
// loop of selabel_lookup_raw calls through ctypes and subtracts a loop of
// as many ctypes calls of strlen, so the reported libselinux-ns/lookup is
// libselinux's time. It reports the first round apart: those lookups also
// compile the regexps they try (libselinux compiles lazily).
func BenchmarkLibselinuxLookup(b *testing.B) {
	files := debianPolicyText(b)
	l := startLibselinux(b)
	root := writePolicy(b, files)
	if errno := l.open(root); errno != 0 {
		b.Fatalf("selabel_open: %v", errno)
	}
	for _, q := range sample(benchTree(b), libselinuxSample) {
		fmt.Fprintf(l.in, "queue %d %x\n", q.mode, q.path)
	}
	// A first round compiles the regexps (libselinux compiles lazily).
	fmt.Fprintf(l.in, "bench 1\n")
	first, err := strconv.ParseFloat(l.readLine(), 64)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var total float64
	for range b.N {
		fmt.Fprintf(l.in, "bench 1\n")
		ns, err := strconv.ParseFloat(l.readLine(), 64)
		if err != nil {
			b.Fatal(err)
		}
		total += ns
	}
	b.ReportMetric(total/float64(b.N), "libselinux-ns/lookup")
	b.ReportMetric(first, "libselinux-first-round-ns/lookup")
	b.ReportMetric(float64(libselinuxSample), "lookups/op")
}

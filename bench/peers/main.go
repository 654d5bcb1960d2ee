// Command peers measures updatecache against the tools people would use
// instead: requests and bytes per update check, check latency over a
// delaying proxy, and a full pull, each beside skopeo (and for checks a
// model of ostree-ext's requests), all against the real registry server
// (docker-registry) on loopback. It prints Markdown sections for
// BENCHMARKS.md; bench/run.sh runs it. The fleet section has N machines
// check at once, straight to the origin and through a pull-through cache.
//
//	go build -o /tmp/updatecache ./cmd/updatecache
//	go run ./bench/peers -updatecache /tmp/updatecache -runs 20 -pull-runs 5
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

type config struct {
	updatecache string
	sections    map[string]bool
	runs        int
	delay       time.Duration
	pullRuns    int
	pullMiB     int
	fleetSizes  []int
	fleetProcs  int
	fleetAuth   string
}

func main() {
	var c config
	var sections, work, fleetSizes string
	flag.StringVar(&c.updatecache, "updatecache", "", "the updatecache binary to measure (required)")
	flag.StringVar(&sections, "sections", "requests,latency,pull,fleet", "what to measure, comma-separated")
	flag.IntVar(&c.runs, "runs", 20, "runs of each check for the latency table")
	flag.DurationVar(&c.delay, "delay", 50*time.Millisecond, "delay the proxy adds to every request for the latency table")
	flag.IntVar(&c.pullRuns, "pull-runs", 5, "runs of each pull")
	flag.IntVar(&c.pullMiB, "pull-mib", 48, "size of the pulled image's files in MiB (half random, half text)")
	flag.StringVar(&fleetSizes, "fleet-sizes", "1,100,1000", "fleet sizes (machines checking at once), comma-separated")
	flag.IntVar(&c.fleetProcs, "fleet-procs", 100, "most check processes running at once in the fleet section")
	flag.StringVar(&c.fleetAuth, "fleet-auth", authToken, "the fleet's origin: "+authToken+" (anonymous pull tokens) or "+authNone)
	flag.StringVar(&work, "work", "", "work directory (default: a new temporary one, removed afterwards)")
	flag.Parse()
	for _, f := range strings.Split(fleetSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			c.fleetSizes = nil
			break
		}
		c.fleetSizes = append(c.fleetSizes, n)
	}
	if c.updatecache == "" || c.runs < 1 || c.pullRuns < 1 || c.pullMiB < 4 || c.fleetSizes == nil || c.fleetProcs < 1 {
		fmt.Fprintln(os.Stderr, "peers: -updatecache is required; -runs, -pull-runs and -fleet-procs must be at least 1, -pull-mib at least 4, -fleet-sizes positive numbers")
		flag.Usage()
		os.Exit(2)
	}
	c.sections = map[string]bool{}
	for _, s := range strings.Split(sections, ",") {
		c.sections[strings.TrimSpace(s)] = true
	}
	if work == "" {
		dir, err := os.MkdirTemp("", "updatecache-peers-")
		if err != nil {
			fatal(err)
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	if err := run(context.Background(), c, work, os.Stdout); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "peers:", err)
	os.Exit(1)
}

// bench is the measuring set-up: the real registry, updatecachetest's
// counting and delaying proxy in front of it, and a byte-counting relay in
// front of the proxy, which is the address the tools are given.
type bench struct {
	ctx         context.Context
	cfg         config
	work        string
	reg         *registry
	proxy       *updatecachetest.Registry
	wire        *wireCounter
	run         *runner
	updatecache string
	out         io.Writer
	origin      *fleetOrigin // the fleet section's
	fleetEnvs   int          // fleet environments made, each in a directory of its own
}

func run(ctx context.Context, c config, work string, out io.Writer) error {
	b, err := newBench(ctx, c, work, out)
	if err != nil {
		return err
	}
	defer b.close()
	var kinds []*imageKind
	if c.sections["requests"] || c.sections["latency"] {
		if kinds, err = b.imageKinds(); err != nil {
			return err
		}
	}
	if c.sections["requests"] {
		if err := b.requestsSection(kinds); err != nil {
			return fmt.Errorf("requests: %w", err)
		}
	}
	if c.sections["latency"] {
		if err := b.latencySection(kinds); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	if c.sections["pull"] {
		if err := b.pullSection(); err != nil {
			return fmt.Errorf("pull: %w", err)
		}
	}
	if c.sections["fleet"] {
		if err := b.fleetSection(); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
	}
	return nil
}

// newBench starts the registry, the proxy and the relay; close stops them.
func newBench(ctx context.Context, c config, work string, out io.Writer) (b *bench, err error) {
	updatecache, err := filepath.Abs(c.updatecache)
	if err != nil {
		return nil, err
	}
	b = &bench{ctx: ctx, cfg: c, work: work, updatecache: updatecache, out: out}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.run, err = newRunner(work); err != nil {
		return b, err
	}
	if b.reg, err = startRegistry(work, testtool.RegistryConfig{}); err != nil {
		return b, err
	}
	if b.proxy, err = updatecachetest.StartProxy(&url.URL{Scheme: "http", Host: b.reg.host}); err != nil {
		return b, err
	}
	b.wire, err = startWireCounter(b.proxy.Host())
	return b, err
}

func (b *bench) close() {
	if b.wire != nil {
		b.wire.close()
	}
	if b.proxy != nil {
		b.proxy.Stop()
	}
	if b.reg != nil {
		b.reg.stop()
	}
}

func (b *bench) printf(format string, args ...any) { fmt.Fprintf(b.out, format, args...) }

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "peers: "+format+"\n", args...)
}

// push stores a at repo:tag in the registry directly, not through the
// proxy, so pushes neither count nor wait.
func (b *bench) push(repo, tag string, a updatecachetest.Artifact) error {
	_, err := updatecachetest.Push(b.ctx, b.reg.host, repo, tag, a, updatecachetest.HTTPOptions{})
	return err
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// The fleet section: N machines check the same tag at the same moment,
// each with an OSTree repository of its own with v1 deployed, either
// straight from the origin or through a pull-through cache (docker-registry
// in proxy mode) that registries.conf names as the origin's mirror. The
// origin is the bench's docker-registry behind the counting proxy and the
// byte-counting relay, so everything counted is what the origin sees; the
// proxy delays each of its requests by the -delay flag, the cache being near
// the machines and the origin far.

const fleetRepo = "fleet/os"

// fleetTool is one way a machine checks for an update.
type fleetTool struct {
	name string
	// procs: one process per check, at most -fleet-procs at once;
	// otherwise one goroutine per check, all at once.
	procs bool
	check func(ctx context.Context, e *fleetEnv, repoPath string, want fleetWant) error
}

// fleetWant is what a check must find: the tag's digest and Prepare's
// outcome.
type fleetWant struct {
	digest  digest.Digest
	outcome updatecache.Outcome
}

// fleetEnv is how the machines reach the registry in one series of rounds:
// the registries.conf they read, as a file (for the commands) and in a
// SystemContext (for Prepare), and the pull-through cache if there is one.
type fleetEnv struct {
	conf  string
	sys   *types.SystemContext
	cache *registry // nil: straight to the origin
}

func (e *fleetEnv) close() {
	if e.cache != nil {
		e.cache.stop()
	}
}

// newFleetEnv writes, under dir, a registries.conf that names the origin
// (insecure: it serves plain HTTP on loopback), and with viaCache starts an
// empty pull-through cache of the origin and names it the origin's mirror
// (insecure too), as a fleet's registries.conf would. Each
// env has a directory of its own, since containers/image caches a parsed
// registries.conf by its path.
func (b *bench) newFleetEnv(dir string, viaCache bool) (*fleetEnv, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sys, err := updatecachetest.SystemContext(dir)
	if err != nil {
		return nil, err
	}
	// registries.conf decides, as on a machine that does not pass
	// --tls-verify=false.
	sys.DockerInsecureSkipTLSVerify = types.OptionalBoolUndefined
	e := &fleetEnv{conf: sys.SystemRegistriesConfPath, sys: sys}
	conf := fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", b.origin.host)
	if viaCache {
		e.cache, err = startRegistry(filepath.Join(dir, "cache"), testtool.RegistryConfig{ProxyRemoteURL: "http://" + b.origin.host})
		if err != nil {
			return nil, fmt.Errorf("starting the pull-through cache: %w", err)
		}
		conf += fmt.Sprintf("\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", e.cache.host)
	}
	if err := os.WriteFile(e.conf, []byte(conf), 0o600); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (b *bench) fleetRef() string { return "docker://" + b.origin.host + "/" + fleetRepo + ":stable" }

func (b *bench) fleetTools() []fleetTool {
	ref := b.fleetRef()
	return []fleetTool{
		{name: "updatecache: Prepare, goroutines", check: func(ctx context.Context, e *fleetEnv, repoPath string, want fleetWant) error {
			repo, err := updatecache.OpenRepo(repoPath)
			if err != nil {
				return err
			}
			// A session of its own per check, as separate machines have:
			// Prepare builds one (an HTTP transport included) each call.
			res, err := updatecache.Prepare(ctx, repo, ref, updatecache.PrepareOptions{
				RegistryOptions: updatecache.RegistryOptions{SystemContext: e.sys}})
			if err != nil {
				return err
			}
			return want.outcomeIs(res.Outcome.String())
		}},
		{name: "updatecache check, processes", procs: true, check: func(ctx context.Context, e *fleetEnv, repoPath string, want fleetWant) error {
			out, err := b.run.output(ctx, e.conf, b.updatecache, "--repo", repoPath, "--json", "check", "--authfile", b.run.authFile, ref)
			if err != nil {
				return err
			}
			var res struct{ Outcome string }
			if err := json.Unmarshal(out, &res); err != nil {
				return fmt.Errorf("updatecache check output: %w: %s", err, out)
			}
			return want.outcomeIs(res.Outcome)
		}},
		{name: "skopeo inspect --no-tags, processes", procs: true, check: func(ctx context.Context, e *fleetEnv, _ string, want fleetWant) error {
			out, err := b.run.output(ctx, e.conf, skopeo(e.conf, "inspect", "--no-tags", "--authfile", b.run.authFile, ref)...)
			if err != nil {
				return err
			}
			var res struct{ Digest digest.Digest }
			if err := json.Unmarshal(out, &res); err != nil {
				return fmt.Errorf("skopeo inspect output: %w: %s", err, out)
			}
			if res.Digest != want.digest {
				return fmt.Errorf("skopeo inspect found %s, want %s", res.Digest, want.digest)
			}
			return nil
		}},
	}
}

func (w fleetWant) outcomeIs(got string) error {
	if got != w.outcome.String() {
		return fmt.Errorf("check outcome %s, want %s", got, w.outcome)
	}
	return nil
}

// fleetRound is one moment of the fleet's life: where the tag points and
// what the cache holds then.
type fleetRound struct {
	name  string
	cache string // what the pull-through cache holds before the round
	v2    bool   // the tag points to v2
}

var (
	directRounds = []fleetRound{
		{name: "no update"},
		{name: "new update", v2: true},
		{name: "repeated check", v2: true},
	}
	cacheRounds = []fleetRound{
		{name: "no update", cache: "nothing (cold)"},
		{name: "no update", cache: "v1 (warm)"},
		{name: "new update", cache: "v1, not v2", v2: true},
		{name: "repeated check", cache: "v1 and v2 (warm)", v2: true},
	}
)

// fleetResult is one round's measurements.
type fleetResult struct {
	topology string
	round    fleetRound
	n        int
	tool     string
	counts   originCounts
	wire     wireStats
	latency  []time.Duration // of the checks that succeeded, sorted
	failed   int
	wall     time.Duration
}

// fleetSection measures every tool at every fleet size, straight to the
// origin and through a new, empty pull-through cache, and prints the table.
func (b *bench) fleetSection() error {
	v1, results, err := b.runFleet()
	if err != nil {
		return err
	}
	b.printFleet(v1, results)
	return nil
}

// runFleet runs the rounds and returns v1, the deployed image, and the
// results in the order run.
func (b *bench) runFleet() (*updatecachetest.Image, []fleetResult, error) {
	v1, err := checkImage("1", runtime.GOARCH)
	if err != nil {
		return nil, nil, err
	}
	v2, err := checkImage("2", runtime.GOARCH)
	if err != nil {
		return nil, nil, err
	}
	if b.origin, err = b.startFleetOrigin(b.cfg.fleetAuth); err != nil {
		return nil, nil, err
	}
	defer b.origin.close()
	// The machines' repositories name the image by the origin's address.
	machines, err := b.fleetMachines(slices.Max(b.cfg.fleetSizes), v1)
	if err != nil {
		return nil, nil, err
	}
	defer b.origin.delay(b.cfg.delay)()
	var results []fleetResult
	for _, n := range b.cfg.fleetSizes {
		for _, viaCache := range []bool{false, true} {
			for _, t := range b.fleetTools() {
				series, err := b.fleetSeries(t, machines[:n], viaCache, v1, v2)
				if err != nil {
					return nil, nil, err
				}
				results = append(results, series...)
			}
		}
	}
	return v1, results, nil
}

// fleetSeries runs a topology's rounds with one tool on machines that
// have nothing cached, through a new, empty cache if viaCache.
func (b *bench) fleetSeries(t fleetTool, machines []string, viaCache bool, v1, v2 *updatecachetest.Image) ([]fleetResult, error) {
	topology, rounds := "direct", directRounds
	if viaCache {
		topology, rounds = "via cache", cacheRounds
	}
	if err := b.clearFleet(machines); err != nil {
		return nil, err
	}
	b.fleetEnvs++
	e, err := b.newFleetEnv(filepath.Join(b.work, "fleet", fmt.Sprint("env-", b.fleetEnvs)), viaCache)
	if err != nil {
		return nil, err
	}
	defer e.close()
	var results []fleetResult
	for _, r := range rounds {
		img, want := v1, fleetWant{v1.ManifestDigest, updatecache.NoUpdate}
		if r.v2 {
			img, want = v2, fleetWant{v2.ManifestDigest, updatecache.UpdateCached}
		}
		if _, err := updatecachetest.Push(b.ctx, b.origin.regHost, fleetRepo, "stable", img, b.origin.push); err != nil {
			return nil, err
		}
		res, err := b.fleetRound(t, e, machines, want)
		if err != nil {
			return nil, err
		}
		res.topology, res.round, res.n = topology, r, len(machines)
		results = append(results, res)
		progress("fleet: N=%d, %s, %s, %s%s: %d failed, %s s", res.n, topology, t.name, r.name, r.cacheNote(), res.failed, secs(res.wall))
	}
	return results, nil
}

func (r fleetRound) cacheNote() string {
	if r.cache == "" {
		return ""
	}
	return " (cache holds " + r.cache + ")"
}

// fleetMachines creates n OSTree repositories with v1 deployed.
func (b *bench) fleetMachines(n int, v1 *updatecachetest.Image) ([]string, error) {
	machines := make([]string, n)
	for i := range machines {
		machines[i] = filepath.Join(b.work, "fleet", fmt.Sprintf("machine-%04d", i))
		if err := updatecachetest.CreateRepo(machines[i], updatecachetest.ModeArchive); err != nil {
			return nil, err
		}
		if _, err := updatecachetest.Deploy(b.ctx, machines[i], b.fleetRef(), v1, ""); err != nil {
			return nil, err
		}
	}
	return machines, nil
}

// clearFleet forgets the update each machine cached, so that a series of
// rounds starts where a fleet on v1 would.
func (b *bench) clearFleet(machines []string) error {
	for _, m := range machines {
		repo, err := updatecache.OpenRepo(m)
		if err != nil {
			return err
		}
		if err := updatecache.ClearCachedUpdate(b.ctx, repo, b.fleetRef()); err != nil {
			return err
		}
	}
	return nil
}

// fleetRound runs one check on each machine, all at once (processes at
// most -fleet-procs at a time), and measures what the origin saw.
func (b *bench) fleetRound(t fleetTool, e *fleetEnv, machines []string, want fleetWant) (fleetResult, error) {
	res := fleetResult{tool: t.name}
	if err := b.origin.reset(); err != nil {
		return res, err
	}
	latency := make([]time.Duration, len(machines))
	errs := make([]error, len(machines))
	workers := len(machines)
	if t.procs {
		workers = min(workers, b.cfg.fleetProcs)
	}
	jobs := make(chan int, len(machines))
	for i := range machines {
		jobs <- i
	}
	close(jobs)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				t0 := time.Now()
				errs[i] = t.check(b.ctx, e, machines[i], want)
				latency[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	res.wall = time.Since(start)
	var err error
	if res.counts, res.wire, err = b.origin.stats(); err != nil {
		return res, err
	}
	for i, err := range errs {
		if err != nil {
			if res.failed == 0 {
				progress("fleet: %s: first failure: %v", t.name, err)
			}
			res.failed++
			continue
		}
		res.latency = append(res.latency, latency[i])
	}
	if res.failed == len(machines) {
		return res, fmt.Errorf("%s: every check failed: %w", t.name, errs[0])
	}
	slices.Sort(res.latency)
	return res, nil
}

func (b *bench) printFleet(v1 *updatecachetest.Image, results []fleetResult) {
	b.printf("## A fleet checking at once: straight to the origin and through a pull-through cache\n\n")
	b.printf("N machines check the same tag at the same moment (the worst case, no timer jitter), each with an OSTree\n")
	b.printf("repository of its own with v1 deployed, in rounds: \"no update\" (the tag on v1), \"new update\" (the tag moved to v2,\n")
	b.printf("nothing cached on the machines), \"repeated check\" (v2 cached by the round before). The origin is docker-registry\n")
	b.printf("%s, behind the counting proxy and the byte-counting relay, %v away per request (the proxy delays each one); \"via cache\" puts a\n", originAuthText[b.cfg.fleetAuth], b.cfg.delay)
	b.printf("second docker-registry in proxy mode (`proxy: remoteurl:` the origin, on loopback, so near the machines) in between, named\n")
	b.printf("in registries.conf as a `[[registry.mirror]]` of the origin, started empty for each tool and size. Both entries are\n")
	b.printf("`insecure = true` (plain HTTP), so each check first tries HTTPS: that TLS probe goes to the first registry asked (the\n")
	b.printf("origin straight, the cache through it; the cache reaches the origin over plain HTTP) and is counted apart from the bytes.\n")
	b.printf("Image: %d layers, a manifest of %d bytes and a config of %d bytes.\n\n", checkLayers, len(v1.Manifest), v1.Config.Size)
	b.printf("- `updatecache: Prepare, goroutines`: one goroutine per machine, all started at once, in this process; each call opens\n")
	b.printf("  the repository and builds its own registry session (its own HTTP transport and connections), as a separate machine\n")
	b.printf("  would: the \"connections\" column shows no connection is shared between checks.\n")
	b.printf("- `updatecache check, processes` and `skopeo inspect --no-tags, processes`: one process per machine, at most %d\n", b.cfg.fleetProcs)
	b.printf("  running at once (so at N above %d the origin sees at most %d checks at a time); latency is the process's wall time,\n", b.cfg.fleetProcs, b.cfg.fleetProcs)
	b.printf("  start-up included, not the wait for a slot.\n")
	b.printf("- Per check: the origin's counts divided by N. Latency: p50 and p99 of the checks' own times; round: wall time of all N.\n\n")
	b.printf("| topology | cache holds | round | N | tool | requests | `/v2/` ping | token | manifest HEAD | manifest GET | blob GET | other | bytes from origin | bytes to origin | connections | TLS probes | failed | p50 ms | p99 ms | round s |\n")
	b.printf("| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		n, c := float64(r.n), r.counts
		cache := r.round.cache
		if cache == "" {
			cache = "–"
		}
		b.printf("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %.0f | %s | %s | %d | %s | %s | %s |\n",
			r.topology, cache, r.round.name, r.n, r.tool,
			perCheck(c.Total, n), perCheck(c.Ping, n), perCheck(c.Token, n), perCheck(c.ManifestHEAD, n), perCheck(c.ManifestGET, n), perCheck(c.BlobGET, n), perCheck(c.Other(), n),
			float64(r.wire.Down)/n, float64(r.wire.Up)/n, perCheck(int(r.wire.Conns), n), perCheck(int(r.wire.TLSProbes), n),
			r.failed, ms(quantile(r.latency, 0.5)), ms(quantile(r.latency, 0.99)), secs(r.wall))
	}
	b.printf("\n")
	b.printFleetSummary(results)
}

// originAuthText describes the origin's auth in the section's text.
var originAuthText = map[string]string{
	authToken: "with token auth (its token service, which gives anonymous clients pull tokens as public registries do, counted as part of it)",
	authNone:  "without auth",
}

// perCheck formats a count divided by the number of checks, to three
// significant digits, so a few requests among many checks still show.
func perCheck(count int, n float64) string {
	return fmt.Sprintf("%.3g", float64(count)/n)
}

// printFleetSummary says, for the largest fleet, what the origin sees per
// check straight and through the warm cache, and what the cold cache
// fetched for all the checks together.
func (b *bench) printFleetSummary(results []fleetResult) {
	n := slices.Max(b.cfg.fleetSizes)
	find := func(topology, round, cache, tool string) *fleetResult {
		for i, r := range results {
			if r.n == n && r.topology == topology && r.round.name == round && r.round.cache == cache && r.tool == tool {
				return &results[i]
			}
		}
		return nil
	}
	perCheckAt := func(r *fleetResult) string {
		return fmt.Sprintf("%s requests, %.0f bytes", perCheck(r.counts.Total, float64(r.n)), float64(r.wire.Down)/float64(r.n))
	}
	b.printf("What the origin sees at N=%d, per check (requests, bytes it sends), straight and through the warm cache:\n\n", n)
	for _, t := range b.fleetTools() {
		noDirect, noCache := find("direct", "no update", "", t.name), find("via cache", "no update", cacheRounds[1].cache, t.name)
		newDirect, newCache := find("direct", "new update", "", t.name), find("via cache", "new update", cacheRounds[2].cache, t.name)
		cold := find("via cache", "no update", cacheRounds[0].cache, t.name)
		b.printf("- %s: no update, %s straight, %s through the cache; new update, %s straight, %s through the cache. ",
			t.name, perCheckAt(noDirect), perCheckAt(noCache), perCheckAt(newDirect), perCheckAt(newCache))
		b.printf("For all %d checks the cold cache sent the origin %d manifest HEADs, %d manifest GETs and %d blob GETs; "+
			"for the new update, %d, %d and %d.\n", n, cold.counts.ManifestHEAD, cold.counts.ManifestGET, cold.counts.BlobGET,
			newCache.counts.ManifestHEAD, newCache.counts.ManifestGET, newCache.counts.BlobGET)
	}
	b.printf("\n")
}

package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/updatecachetest"
)

// imageKind is one way an OS image is published: versions v1 (deployed)
// and v2 (the update) under the tag "stable" of repo.
type imageKind struct {
	name     string
	repo     string
	v1, v2   updatecachetest.Artifact
	deployed *updatecachetest.Image // v1 for this machine's platform
	top      digest.Digest          // v1's index digest, "" for a single image
	repoPath string                 // an OSTree repository with v1 deployed
}

func (b *bench) imageKinds() ([]*imageKind, error) {
	single1, err := checkImage("1", runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	single2, err := checkImage("2", runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	multi1, err := checkIndex("1")
	if err != nil {
		return nil, err
	}
	multi2, err := checkIndex("2")
	if err != nil {
		return nil, err
	}
	kinds := []*imageKind{
		{name: "single-arch", repo: "single/os", v1: single1, v2: single2, deployed: single1},
		// Deployed with the index digest recorded, as updatecache's pull
		// leaves it, so the tag's HEAD can be compared directly.
		{name: "multi-arch", repo: "multi/os", v1: multi1, v2: multi2, deployed: multi1.Images[0], top: multi1.ManifestDigest},
	}
	for _, k := range kinds {
		k.repoPath = filepath.Join(b.work, "repo-"+k.name)
		if err := updatecachetest.CreateRepo(k.repoPath, updatecachetest.ModeArchive); err != nil {
			return nil, err
		}
		if _, err := updatecachetest.Deploy(b.ctx, k.repoPath, k.ref(b.wire.host()), k.deployed, k.top); err != nil {
			return nil, err
		}
	}
	return kinds, nil
}

func (k *imageKind) ref(host string) string { return "docker://" + host + "/" + k.repo + ":stable" }

// A checkTool checks for an update of an image kind. verdict is "update" or
// "no update" when the tool decides, "" when it only reads (skopeo).
type checkTool struct {
	name string
	// timed tools are commands, whose latency the latency table compares.
	timed bool
	check func(k *imageKind) (s sample, verdict string, err error)
}

const (
	verdictUpdate   = "update"
	verdictNoUpdate = "no update"
)

// checkTools are the tools compared; the anchor model last, since it is a
// model and runs in this process rather than as a command.
func (b *bench) checkTools() []checkTool {
	host := b.wire.host()
	inspect := func(flags ...string) func(k *imageKind) (sample, string, error) {
		return func(k *imageKind) (sample, string, error) {
			argv := skopeo(b.run.registriesConf, append([]string{"inspect", "--tls-verify=false", "--authfile", b.run.authFile}, flags...)...)
			s, _, err := b.run.run(append(argv, k.ref(host))...)
			return s, "", err
		}
	}
	return []checkTool{
		{"updatecache check", true, func(k *imageKind) (sample, string, error) {
			s, out, err := b.run.run(b.updatecache, "--repo", k.repoPath, "--json", "check",
				"--tls-verify=false", "--authfile", b.run.authFile, k.ref(host))
			if err != nil {
				return s, "", err
			}
			var res struct {
				UpdateAvailable, Persisted bool
				Reason                     string
			}
			if err := json.Unmarshal(out, &res); err != nil {
				return s, "", fmt.Errorf("updatecache check output: %w: %s", err, out)
			}
			if res.UpdateAvailable && !res.Persisted {
				return s, "", fmt.Errorf("updatecache check did not cache the update: %s", res.Reason)
			}
			if res.UpdateAvailable {
				return s, verdictUpdate, nil
			}
			return s, verdictNoUpdate, nil
		}},
		{"skopeo inspect", true, inspect()},
		{"skopeo inspect --no-tags", true, inspect("--no-tags")},
		// Fetching one manifest decides nothing for an index or a
		// config-only change, so it is left out of the timings.
		{"skopeo inspect --raw", false, inspect("--raw")},
		{"anchor model (ostree-ext's requests)", false, func(k *imageKind) (sample, string, error) {
			m := &anchorModel{host: host, repo: k.repo, tag: "stable", platform: k.deployed.Platform, deployed: k.deployed}
			start := time.Now()
			update, err := m.check(b.ctx)
			s := sample{Wall: time.Since(start)}
			if update {
				return s, verdictUpdate, err
			}
			return s, verdictNoUpdate, err
		}},
	}
}

// checkCase is one situation of a check: what the tag points to and what
// the tools must conclude.
type checkCase struct {
	name    string
	tagTo   func(k *imageKind) updatecachetest.Artifact
	verdict string
	// clearCache forgets updatecache's cached update before each run, so
	// that every run finds the update new.
	clearCache bool
}

var (
	caseNoUpdate = checkCase{name: "no update", tagTo: func(k *imageKind) updatecachetest.Artifact { return k.v1 }, verdict: verdictNoUpdate}
	caseNew      = checkCase{name: "new update", tagTo: func(k *imageKind) updatecachetest.Artifact { return k.v2 }, verdict: verdictUpdate, clearCache: true}
	caseRepeated = checkCase{name: "repeated check", tagTo: func(k *imageKind) updatecachetest.Artifact { return k.v2 }, verdict: verdictUpdate}
)

func (b *bench) clearCache(k *imageKind) error {
	repo, err := updatecache.OpenRepo(k.repoPath)
	if err != nil {
		return err
	}
	return updatecache.ClearCachedUpdate(b.ctx, repo, k.ref(b.wire.host()))
}

// measured is what one check cost at the registry.
type measured struct {
	counts updatecachetest.Counts
	wire   wireStats
}

// measure runs one check with fresh counters and checks its verdict.
func (b *bench) measure(t checkTool, k *imageKind, c checkCase) (measured, sample, error) {
	if err := b.wire.reset(); err != nil {
		return measured{}, sample{}, err
	}
	b.proxy.Reset()
	s, verdict, err := t.check(k)
	if err != nil {
		return measured{}, s, err
	}
	if verdict != "" && verdict != c.verdict {
		return measured{}, s, fmt.Errorf("%s on %s, %s: concluded %q", t.name, k.name, c.name, verdict)
	}
	w, err := b.wire.stats()
	return measured{counts: b.proxy.Counts(), wire: w}, s, err
}

// requestsSection measures every tool once in each case: the requests the
// registry saw and the bytes on the wire. updatecache runs first in each
// case, so "new update" is its first sight of v2 and "repeated check" its
// second.
func (b *bench) requestsSection(kinds []*imageKind) error {
	b.printf("## Requests and bytes per update check\n\n")
	b.printf("Counted at the real registry (docker-registry) behind updatecachetest's counting proxy; bytes are\n")
	b.printf("everything on the wire (HTTP headers and bodies), counted by a TCP relay in front of the proxy.\n")
	b.printf("Images: %d layers (a manifest of %d bytes and a config of %d bytes for this platform); the update changes %d layers.\n",
		checkLayers, len(kinds[0].deployed.Manifest), kinds[0].deployed.Config.Size, changedLayers)
	b.printf("Multi-arch: an OCI index of two platforms (%d bytes); the deployed image records the index digest, as updatecache's pull does.\n\n",
		len(kinds[1].v1.(*updatecachetest.Index).Manifest))
	b.printf("| image | case | tool | requests | `/v2/` ping | manifest HEAD | manifest GET | blob GET | other | bytes from registry | bytes to registry | TLS probes (bytes to/from) |\n")
	b.printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	tools := b.checkTools()
	type key struct{ kind, c, tool string }
	results := map[key]measured{}
	for _, k := range kinds {
		for _, c := range []checkCase{caseNoUpdate, caseNew, caseRepeated} {
			if err := b.push(k.repo, "stable", c.tagTo(k)); err != nil {
				return err
			}
			if c.clearCache {
				if err := b.clearCache(k); err != nil {
					return err
				}
			}
			for _, t := range tools {
				m, _, err := b.measure(t, k, c)
				if err != nil {
					return err
				}
				results[key{k.name, c.name, t.name}] = m
				n := m.counts
				other := n.Total - n.Ping - n.ManifestHEAD - n.ManifestGET - n.BlobGET
				b.printf("| %s | %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d (%d/%d) |\n",
					k.name, c.name, t.name, n.Total, n.Ping, n.ManifestHEAD, n.ManifestGET, n.BlobGET, other,
					m.wire.Down, m.wire.Up, m.wire.TLSProbes, m.wire.ProbeUp, m.wire.ProbeDown)
			}
		}
		progress("requests: %s done", k.name)
	}
	b.printf("\n")
	// The comparison that matters for a periodic check: most checks find
	// nothing new, or the update already cached.
	b.printf("The checks most periodic runs make (HTTP bytes, TLS probes aside):\n\n")
	ours, anchor, skopeo := tools[0].name, tools[len(tools)-1].name, "skopeo inspect --no-tags"
	for _, k := range kinds {
		for _, c := range []string{caseNoUpdate.name, caseRepeated.name} {
			u, a, s := results[key{k.name, c, ours}], results[key{k.name, c, anchor}], results[key{k.name, c, skopeo}]
			b.printf("- %s, %s: updatecache makes %d GETs (manifests and blobs) and receives %d bytes; the anchor model %d GETs, %d bytes (%.0f×); %s %d GETs, %d bytes (%.0f×).\n",
				k.name, c, u.counts.ManifestGET+u.counts.BlobGET, u.wire.Down,
				a.counts.ManifestGET+a.counts.BlobGET, a.wire.Down, float64(a.wire.Down)/float64(u.wire.Down),
				skopeo, s.counts.ManifestGET+s.counts.BlobGET, s.wire.Down, float64(s.wire.Down)/float64(u.wire.Down))
		}
	}
	b.printf("\n")
	return nil
}

// latencySection times the command-line checks with every request delayed
// at the proxy, the tools interleaved run by run so that a change in the
// machine's load affects them alike.
func (b *bench) latencySection(kinds []*imageKind) error {
	var tools []checkTool
	for _, t := range b.checkTools() {
		if t.timed {
			tools = append(tools, t)
		}
	}
	b.printf("## Check latency with %v added to every request\n\n", b.cfg.delay)
	b.printf("The proxy delays every request by %v (updatecachetest.Fault{Delay: %v}); %d runs of each command,\n", b.cfg.delay, b.cfg.delay, b.cfg.runs)
	b.printf("interleaved, after one unmeasured run each. Wall time of the whole process, in milliseconds;\n")
	b.printf("CPU is user+system time of the process; for \"new update\" updatecache's cached update is cleared before each run.\n\n")
	b.printf("| image | case | tool | requests | median ms | p25–p75 ms | min–max ms | median CPU ms | max RSS MiB |\n")
	b.printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	b.proxy.AddFault(updatecachetest.Fault{Delay: b.cfg.delay})
	defer b.proxy.ClearFaults()
	for _, k := range kinds {
		for _, c := range []checkCase{caseNoUpdate, caseNew} {
			if err := b.push(k.repo, "stable", c.tagTo(k)); err != nil {
				return err
			}
			samples := make([][]sample, len(tools))
			requests := make([]int, len(tools))
			for i := -1; i < b.cfg.runs; i++ {
				for j, t := range tools {
					if c.clearCache {
						if err := b.clearCache(k); err != nil {
							return err
						}
					}
					m, s, err := b.measure(t, k, c)
					if err != nil {
						return err
					}
					if i >= 0 {
						samples[j] = append(samples[j], s)
						requests[j] = m.counts.Total
					}
				}
			}
			for j, t := range tools {
				s := summarize(samples[j])
				b.printf("| %s | %s | %s | %d | %s | %s–%s | %s–%s | %s | %s |\n", k.name, c.name, t.name,
					requests[j], ms(s.Median), ms(s.P25), ms(s.P75), ms(s.Min), ms(s.Max), ms(s.MedianCPU), mib(s.MaxRSS))
			}
			progress("latency: %s, %s done", k.name, c.name)
		}
	}
	b.printf("\n")
	return nil
}

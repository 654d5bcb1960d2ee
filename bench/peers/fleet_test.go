package main

import (
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/osimage/updatecache/internal/testtool"
)

// TestFleet runs the fleet section's rounds for a fleet of three with the
// real registry, its proxy mode and skopeo, and checks what the table
// reports: every check succeeds, each check has connections of its own,
// and the origin's counts (token service included) are those of each
// tool's requests, straight and through the cache.
func TestFleet(t *testing.T) {
	for _, tool := range [][2]string{{"docker-registry", "docker-registry"}, {"skopeo", "skopeo"}, {"go", "golang-go"}} {
		testtool.Need(t, tool[0], tool[1])
	}
	if testing.Short() {
		t.Skip("skipping in short mode: builds the CLI and starts eight registries")
	}
	work := t.TempDir()
	bin := filepath.Join(work, "updatecache")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/osimage/updatecache/cmd/updatecache").CombinedOutput(); err != nil {
		t.Fatalf("building the CLI: %v\n%s", err, out)
	}
	const n = 3
	b, err := newBench(context.Background(), config{updatecache: bin, fleetSizes: []int{n}, fleetProcs: 2, fleetAuth: authToken}, work, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	_, results, err := b.runFleet()
	if err != nil {
		t.Fatal(err)
	}
	if want := len(b.fleetTools()) * (len(directRounds) + len(cacheRounds)); len(results) != want {
		t.Fatalf("%d results, want %d", len(results), want)
	}

	const prepare, cli, skopeo = "updatecache: Prepare, goroutines", "updatecache check, processes", "skopeo inspect --no-tags, processes"
	cold, warm, newOnly, bothWarm := cacheRounds[0].cache, cacheRounds[1].cache, cacheRounds[2].cache, cacheRounds[3].cache
	type want struct{ token, head, manifestGET, blobGET int }
	tests := []struct {
		topology, round, cache string
		tools                  []string
		want                   want
	}{
		// One anonymous token per check.
		{"direct", "no update", "", []string{prepare, cli}, want{n, n, 0, 0}},
		{"direct", "new update", "", []string{prepare, cli}, want{n, n, n, n}},
		{"direct", "repeated check", "", []string{prepare, cli}, want{n, n, 0, 0}},
		{"direct", "no update", "", []string{skopeo}, want{n, 0, n, n}},
		{"direct", "new update", "", []string{skopeo}, want{n, 0, n, n}},
		// The cache asks the origin for a token and the tag on every
		// check, and for the rest only what it does not hold.
		{"via cache", "no update", warm, []string{prepare, cli, skopeo}, want{n, n, 0, 0}},
		{"via cache", "repeated check", bothWarm, []string{prepare, cli, skopeo}, want{n, n, 0, 0}},
	}
	for _, r := range results {
		if r.failed != 0 {
			t.Errorf("%s, %s, %s: %d checks failed", r.topology, r.round.name, r.tool, r.failed)
		}
		if r.topology == "direct" && r.wire.Conns < n {
			t.Errorf("%s, %s, %s: %d connections for %d checks: checks shared connections", r.topology, r.round.name, r.tool, r.wire.Conns, n)
		}
		switch {
		case r.round.cache == cold && r.counts.ManifestGET == 0:
			t.Errorf("%s, %s, %s: the cold cache fetched no manifest from the origin", r.topology, r.round.name, r.tool)
		case r.round.cache == newOnly && r.tool != skopeo && r.counts.BlobGET == 0:
			t.Errorf("%s, %s, %s: the cache fetched no config from the origin for the new update", r.topology, r.round.name, r.tool)
		}
		for _, tc := range tests {
			if tc.topology != r.topology || tc.round != r.round.name || tc.cache != r.round.cache || !slices.Contains(tc.tools, r.tool) {
				continue
			}
			c := r.counts
			if got := (want{c.Token, c.ManifestHEAD, c.ManifestGET, c.BlobGET}); got != tc.want {
				t.Errorf("%s, %s (cache: %s), %s: origin saw %+v, want %+v", r.topology, r.round.name, r.round.cache, r.tool, got, tc.want)
			}
		}
	}
}

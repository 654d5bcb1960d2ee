package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// crashSeedEnv replays a TestCrashSafety run: the seed is logged.
const crashSeedEnv = "UPDATECACHE_CRASH_SEED"

// crashRequestDelay slows every registry request so that kills also land
// while the command waits for the registry.
const crashRequestDelay = 5 * time.Millisecond

// crashOutcome counts how the kills of one command landed.
type crashOutcome struct {
	kills     int
	exited    int // the command had finished before the kill
	untouched int // killed before it changed anything
	litter    int // killed while writing: only temporary files left
	layers    int // pull only: killed after importing layers, before moving the ref
	written   int // killed after its write was in place
}

func (o crashOutcome) String() string {
	return fmt.Sprintf("%d kills: %d exited first; killed: %d before changing anything, %d mid-write (temporary files left, nothing replaced), %d after importing layers (ref not moved), %d after the write was in place",
		o.kills, o.exited, o.untouched, o.litter, o.layers, o.written)
}

// repoMarks are what a killed command may have changed: the detached
// metadata of the merge commit, the image ref, the layer refs, and
// temporary files (in objects/ and refs/, and entries in tmp/).
type repoMarks struct {
	commitmeta []byte
	image      string
	blobs      int
	litter     []string
}

func (e *cliEnv) marks(t *testing.T, commit string) repoMarks {
	t.Helper()
	m := repoMarks{commitmeta: readCommitmeta(t, e.repo, commit), image: revParse(t, e.repo, e.imageRef(t)), blobs: blobRefs(t, e.repo)}
	for _, dir := range []string{"objects", "refs"} {
		m.litter = append(m.litter, tempFilesIn(t, filepath.Join(e.repo, dir))...)
	}
	staging, err := filepath.Glob(filepath.Join(e.repo, "tmp", "*"))
	require.NoError(t, err)
	m.litter = append(m.litter, staging...)
	return m
}

// add counts one run of a command, from the marks before and after it.
func (o *crashOutcome) add(t *testing.T, res procExit, before, after repoMarks) {
	t.Helper()
	o.kills++
	switch {
	case !res.killed:
		require.Equal(t, 0, res.code, "not killed, and failed: %s", res.stderr)
		o.exited++
	case after.image != before.image || !bytes.Equal(after.commitmeta, before.commitmeta):
		o.written++
	case after.blobs > before.blobs:
		o.layers++
	case len(after.litter) > len(before.litter):
		o.litter++
	default:
		o.untouched++
	}
}

// TestCrashSafety SIGKILLs the command at random moments: check (with a
// new version pushed first, so it writes), clear and pull, in turn. After
// every kill the repository passes the real ostree fsck (which also loads
// the commit of every ref), libostree reads the detached metadata, and the
// cached update is whole and either the one before the kill or the new one.
// After a killed pull the image ref points to the old or the new merge
// commit, and a new pull succeeds. The kill moment is uniform between 0 and
// 1.5 times how long the command takes when left alone, measured first.
// UPDATECACHE_LONG=1 kills 200 times each instead of 20.
func TestCrashSafety(t *testing.T) {
	testtool.Ostree(t)
	bin := buildCLI(t)
	rounds := sized(20, 200)
	e := newLongCLIEnv(t, sized(10*time.Minute, 90*time.Minute))
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(crashSeedEnv); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, crashSeedEnv)
	}
	t.Logf("seed %d (replay with %s=%d)", seed, crashSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	e.reg.AddFault(updatecachetest.Fault{Delay: crashRequestDelay})

	version := 1
	push := func() string {
		version++
		img := e.image(strconv.Itoa(version))
		e.push(img)
		return img.ManifestDigest.String()
	}
	deployed, commit := e.deployedDigest(t)
	cached := ""

	// Left alone three times each: every command works, and its median
	// duration sets the range of kill moments.
	var checkTook, clearTook, pullTook []time.Duration
	for range 3 {
		want := push()
		res := runBin(e.ctx, bin, e.checkArgs()...)
		require.Equal(t, 0, res.code, res.stderr)
		require.Equal(t, want, cachedDigest(t, e.repo, commit))
		checkTook = append(checkTook, res.took)
		res = runBin(e.ctx, bin, e.clearArgs()...)
		require.Equal(t, 0, res.code, res.stderr)
		require.Empty(t, cachedDigest(t, e.repo, commit))
		clearTook = append(clearTook, res.took)
		want = push()
		res = runBin(e.ctx, bin, e.pullArgs()...)
		require.Equal(t, 0, res.code, res.stderr)
		deployed, commit = e.deployedDigest(t)
		require.Equal(t, want, deployed)
		pullTook = append(pullTook, res.took)
	}
	killRange := func(took []time.Duration) time.Duration {
		slices.Sort(took)
		return took[len(took)/2] * 5 / 4
	}
	checkRange, clearRange, pullRange := killRange(checkTook), killRange(clearTook), killRange(pullTook)
	t.Logf("kill moments uniform in [0, 1.25 × the median uninterrupted run): check %v, clear %v, pull %v", checkRange, clearRange, pullRange)
	killAt := func(r time.Duration) time.Duration { return time.Duration(rng.Int64N(int64(r))) }

	var checks, clears, pulls crashOutcome
	for round := range rounds {
		// check, with a new version in the registry.
		want := push()
		before := e.marks(t, commit)
		res := runBinKilledAfter(e.ctx, bin, killAt(checkRange), e.checkArgs()...)
		fsck(t, e.repo)
		got := cachedDigest(t, e.repo, commit)
		require.Contains(t, []string{cached, want}, got, "round %d: check left a cached update that is neither the old nor the new one", round)
		if !res.killed {
			require.Equal(t, want, got)
		}
		checks.add(t, res, before, e.marks(t, commit))
		cached = got

		// clear.
		before = e.marks(t, commit)
		res = runBinKilledAfter(e.ctx, bin, killAt(clearRange), e.clearArgs()...)
		fsck(t, e.repo)
		got = cachedDigest(t, e.repo, commit)
		require.Contains(t, []string{cached, ""}, got, "round %d: clear", round)
		if !res.killed {
			require.Empty(t, got)
		}
		clears.add(t, res, before, e.marks(t, commit))
		cached = got

		// pull of yet another version.
		want = push()
		before = e.marks(t, commit)
		res = runBinKilledAfter(e.ctx, bin, killAt(pullRange), e.pullArgs()...)
		fsck(t, e.repo)
		now, nowCommit := e.deployedDigest(t)
		require.Contains(t, []string{deployed, want}, now, "round %d: pull left the image ref on neither the old nor the new image", round)
		// The merge commit the ref left keeps its cache; a new one has none.
		if nowCommit == commit {
			require.Equal(t, cached, cachedDigest(t, e.repo, commit))
		} else {
			require.Empty(t, cachedDigest(t, e.repo, nowCommit))
		}
		pulls.add(t, res, before, e.marks(t, commit))
		if now != want {
			res := runBin(e.ctx, bin, e.pullArgs()...)
			require.Equal(t, 0, res.code, "round %d: pull after a killed pull: %s", round, res.stderr)
			fsck(t, e.repo)
		}
		deployed, commit = e.deployedDigest(t)
		require.Equal(t, want, deployed)
		cached = cachedDigest(t, e.repo, commit)
	}
	t.Logf("check: %v", checks)
	t.Logf("clear: %v", clears)
	t.Logf("pull:  %v", pulls)
	// A SIGKILL leaves whatever temporary files the process had made. They
	// belong in tmp/, where libostree expires them, never among the
	// objects or refs, where nothing would ever remove them.
	litter := map[string]int{}
	for _, f := range e.marks(t, commit).litter {
		rel, err := filepath.Rel(e.repo, f)
		require.NoError(t, err)
		litter[strings.SplitN(rel, "/", 2)[0]+"/"]++
	}
	t.Logf("left behind after %d kills: %v (temporary files, staging directories and their lock files)", checks.kills+clears.kills+pulls.kills, litter)
	assert.Zero(t, litter["objects/"]+litter["refs/"], "temporary files left among the objects or refs")
}

// blobRefs counts the layer refs, read by the real ostree tool.
func blobRefs(t *testing.T, repo string) int {
	t.Helper()
	out := strings.TrimSpace(testtool.RunOstree(t, "refs", "--repo="+repo, "ostree/container/blob"))
	if out == "" {
		return 0
	}
	return len(strings.Split(out, "\n"))
}

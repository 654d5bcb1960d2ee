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
	unchanged int // killed before it wrote anything
	partial   int // pull only: killed after importing layers, before moving the ref
	written   int // killed after its write was in place
}

func (o crashOutcome) String() string {
	return fmt.Sprintf("%d kills: %d exited first, %d killed before writing, %d killed after importing layers only, %d killed after the write",
		o.kills, o.exited, o.unchanged, o.partial, o.written)
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
	tally := func(o *crashOutcome, res procExit, written, partial bool) {
		o.kills++
		switch {
		case !res.killed:
			require.Equal(t, 0, res.code, "not killed, and failed: %s", res.stderr)
			o.exited++
		case written:
			o.written++
		case partial:
			o.partial++
		default:
			o.unchanged++
		}
	}
	for round := range rounds {
		// check, with a new version in the registry.
		want := push()
		before := readCommitmeta(t, e.repo, commit)
		res := runBinKilledAfter(e.ctx, bin, killAt(checkRange), e.checkArgs()...)
		fsck(t, e.repo)
		got := cachedDigest(t, e.repo, commit)
		require.Contains(t, []string{cached, want}, got, "round %d: check left a cached update that is neither the old nor the new one", round)
		if !res.killed {
			require.Equal(t, want, got)
		}
		tally(&checks, res, !bytes.Equal(before, readCommitmeta(t, e.repo, commit)), false)
		cached = got

		// clear.
		before = readCommitmeta(t, e.repo, commit)
		res = runBinKilledAfter(e.ctx, bin, killAt(clearRange), e.clearArgs()...)
		fsck(t, e.repo)
		got = cachedDigest(t, e.repo, commit)
		require.Contains(t, []string{cached, ""}, got, "round %d: clear", round)
		if !res.killed {
			require.Empty(t, got)
		}
		tally(&clears, res, !bytes.Equal(before, readCommitmeta(t, e.repo, commit)), false)
		cached = got

		// pull of yet another version.
		want = push()
		blobsBefore := blobRefs(t, e.repo)
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
		tally(&pulls, res, nowCommit != commit, blobRefs(t, e.repo) > blobsBefore)
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
	// A SIGKILL leaves whatever temporary files the process had open; they
	// are not objects or refs to ostree (fsck passed), only litter.
	leftTmp, err := os.ReadDir(filepath.Join(e.repo, "tmp"))
	require.NoError(t, err)
	var litter []string
	for _, dir := range []string{"objects", "refs"} {
		for _, f := range tempFilesIn(t, filepath.Join(e.repo, dir)) {
			rel, err := filepath.Rel(e.repo, f)
			require.NoError(t, err)
			litter = append(litter, rel)
		}
	}
	t.Logf("left behind: %d temporary files in objects/ and refs/ %q; %d entries in tmp/", len(litter), litter, len(leftTmp))
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

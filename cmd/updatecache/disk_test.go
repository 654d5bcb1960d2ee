package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

const (
	// fullDiskChildEnv carries the built command's path to the run of
	// TestFullDisk inside its own mount namespace.
	fullDiskChildEnv = "UPDATECACHE_FULLDISK_CHILD"
	// fullDiskSize is the tmpfs the repository lives on.
	fullDiskSize = "16m"
	// fullDiskReserve is what is left free once the disk is filled: room
	// for lock files, none for a cached update.
	fullDiskReserve = 16 << 10
	// mergeCommitReserve is room for a small layer but not for a merge
	// commit holding a config of about 1 MiB.
	mergeCommitReserve = 512 << 10
	// bigConfigLabels × bigConfigLabelSize make a config of about 1 MiB.
	bigConfigLabels, bigConfigLabelSize = 1024, 1 << 10
)

// TestFullDisk puts a repository with a pulled image and a cached update on
// a small tmpfs, fills the filesystem to within a few KiB, and pushes an
// update whose config is about 1 MiB. check then fails with exit 1 and a
// one-line "no space left on device" error, the cached update stays byte
// for byte, no temporary file is left in the repository, and fsck is
// clean. pull
// fails likewise leaving the image ref where it was, and succeeds once
// space is freed. The tmpfs is mounted in a private mount namespace: the
// test runs itself again under unshare -m.
func TestFullDisk(t *testing.T) {
	if bin := os.Getenv(fullDiskChildEnv); bin != "" {
		fullDisk(t, bin)
		return
	}
	unshare := needUnshare(t, "-m")
	testtool.Ostree(t)
	bin := buildCLI(t)
	cmd := exec.Command(unshare, "-m", "--propagation", "private", os.Args[0], "-test.run=^TestFullDisk$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), fullDiskChildEnv+"="+bin)
	out, err := cmd.CombinedOutput()
	t.Logf("in a private mount namespace:\n%s", out)
	require.NoError(t, err)
}

// fullDisk is TestFullDisk inside the private mount namespace.
func fullDisk(t *testing.T, bin string) {
	self, err := os.Readlink("/proc/self/ns/mnt")
	require.NoError(t, err)
	parent, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	require.NoError(t, err)
	require.NotEqual(t, parent, self, "not in a mount namespace of its own: refusing to mount")

	e := newCLIEnv(t)
	mnt := t.TempDir()
	require.NoError(t, unix.Mount("tmpfs", mnt, "tmpfs", 0, "size="+fullDiskSize))
	t.Cleanup(func() { _ = unix.Unmount(mnt, 0) })
	repo := filepath.Join(mnt, "repo")
	out, err := exec.Command("cp", "-a", e.repo, repo).CombinedOutput()
	require.NoError(t, err, "%s", out)
	e.repo = repo

	// A pulled image, and an update cached on it.
	e.push(e.image("2"))
	res := runBin(e.ctx, bin, e.pullArgs()...)
	require.Equal(t, 0, res.code, res.stderr)
	v3 := e.image("3")
	e.push(v3)
	res = runBin(e.ctx, bin, e.checkArgs()...)
	require.Equal(t, 0, res.code, res.stderr)
	_, commit := e.deployedDigest(t)
	require.Equal(t, v3.ManifestDigest.String(), cachedDigest(t, repo, commit))
	cache := readCommitmeta(t, repo, commit)

	free := fillDisk(t, mnt, fullDiskReserve)
	t.Logf("%s tmpfs filled: %d bytes free", fullDiskSize, free)
	big := bigConfigImage(t, "4")
	e.push(big)
	t.Logf("update with a %d-byte config", len(big.Config.Data))

	// check cannot write the new cache.
	res = runBin(e.ctx, bin, e.checkArgs()...)
	t.Logf("check on the full disk: exit %d: %s", res.code, res.stderr)
	requireENOSPC(t, res)
	assert.Equal(t, cache, readCommitmeta(t, repo, commit), "the cached update changed")
	assert.Empty(t, tempFilesIn(t, repo))
	fsck(t, repo)
	res = runBin(e.ctx, bin, "status", "--repo", repo, e.ref)
	require.Equal(t, 0, res.code, res.stderr)
	assert.Contains(t, res.stdout, "Digest: "+v3.ManifestDigest.String())

	// pull cannot import its layer.
	res = runBin(e.ctx, bin, e.pullArgs()...)
	t.Logf("pull on the full disk: exit %d: %s", res.code, res.stderr)
	requireENOSPC(t, res)
	requirePullFailedCleanly(t, e, commit, cache)

	// With room for the layer but not for the merge commit, whose metadata
	// holds the config, pull fails after importing the layer.
	require.NoError(t, os.Remove(filepath.Join(mnt, "filler")))
	free = fillDisk(t, mnt, mergeCommitReserve)
	res = runBin(e.ctx, bin, e.pullArgs()...)
	t.Logf("pull with %d bytes free: exit %d: %s", free, res.code, res.stderr)
	requireENOSPC(t, res)
	assert.Contains(t, res.stderr, "writing the merge commit")
	requirePullFailedCleanly(t, e, commit, cache)

	// With space again, pull succeeds and reuses the layer imported before.
	require.NoError(t, os.Remove(filepath.Join(mnt, "filler")))
	res = runBin(e.ctx, bin, append([]string{"pull", "--json"}, e.pullArgs()[1:]...)...)
	require.Equal(t, 0, res.code, res.stderr)
	var pulled pullResultJSON
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &pulled))
	assert.Equal(t, big.ManifestDigest.String(), pulled.ImageDigest)
	assert.Equal(t, 0, pulled.LayersFetched)
	assert.Equal(t, 1, pulled.LayersReused)
	deployed, _ := e.deployedDigest(t)
	assert.Equal(t, big.ManifestDigest.String(), deployed)
	fsck(t, repo)
}

// requirePullFailedCleanly checks the repository after a pull that failed:
// the image ref still on commit, whose cached update is still cache, no
// temporary file or staging directory left anywhere, fsck clean.
func requirePullFailedCleanly(t *testing.T, e *cliEnv, commit string, cache []byte) {
	t.Helper()
	_, now := e.deployedDigest(t)
	assert.Equal(t, commit, now, "the image ref moved")
	assert.Equal(t, cache, readCommitmeta(t, e.repo, commit), "the cached update changed")
	assert.Empty(t, tempFilesIn(t, e.repo))
	staging, err := filepath.Glob(filepath.Join(e.repo, "tmp", "staging-*"))
	require.NoError(t, err)
	assert.Empty(t, staging, "staging directories left in tmp/")
	fsck(t, e.repo)
}

// fillDisk fills the filesystem at dir with a file named filler until
// ENOSPC, then gives reserve bytes back; it returns the bytes free after.
func fillDisk(t *testing.T, dir string, reserve int64) uint64 {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 1<<20)
	var size int64
	for {
		n, err := f.Write(chunk)
		size += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		require.NoError(t, err)
	}
	require.NoError(t, f.Truncate(size-reserve))
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(dir, &st))
	return st.Bavail * uint64(st.Bsize)
}

// requireENOSPC checks a run that failed for want of space: exit 1 and
// one line saying so.
func requireENOSPC(t *testing.T, res procExit) {
	t.Helper()
	require.Equal(t, exitError, res.code, "stdout %s; stderr %s", res.stdout, res.stderr)
	assert.Equal(t, 1, strings.Count(res.stderr, "\n"), "one line: %q", res.stderr)
	assert.Contains(t, res.stderr, "no space left on device")
}

// bigConfigImage is version v with about 1 MiB of config labels.
func bigConfigImage(t *testing.T, v string) *updatecachetest.Image {
	t.Helper()
	labels := map[string]string{}
	for i := range bigConfigLabels {
		labels[fmt.Sprintf("org.example.label-%04d", i)] = string(bytes.Repeat([]byte{'a' + byte(i%26)}, bigConfigLabelSize))
	}
	img, err := updatecachetest.NewImage(updatecachetest.ImageSpec{
		Version: v, Architecture: "amd64", Labels: labels,
		Created: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		Layers: []updatecachetest.Layer{{Files: []updatecachetest.File{
			{Path: "usr/share/v", Content: []byte(v), Mode: 0o644},
		}}},
	})
	require.NoError(t, err)
	return img
}

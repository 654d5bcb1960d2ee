package updatecache_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// TestPruneAfterPull: v1 pulled, v2 prepared and pulled; prune removes the
// old merge commit with its .commitmeta and v1's own layer, keeps the shared
// one, and leaves nothing for libostree's prune to find.
func TestPruneAfterPull(t *testing.T) {
	testtool.Ostree(t)
	e := newEnv(t)
	v1, v2 := image(t, "1"), image(t, "2")
	e.push(v1)
	first, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	e.push(v2)
	require.True(t, e.mustPrepare().Persisted())
	second, err := updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	oldMeta := e.commitmetaPath(first.MergeCommit)
	require.FileExists(t, oldMeta)

	blobRef := func(d digest.Digest) string {
		r, err := ostree.BlobRefName(d.String())
		require.NoError(t, err)
		return r
	}
	v1Only, shared := blobRef(v1.Layers[1].Digest), blobRef(v1.Layers[0].Digest)

	dry, err := updatecache.Prune(e.ctx, e.repo, updatecache.PruneOptions{DryRun: true})
	require.NoError(t, err)
	assert.Equal(t, []string{v1Only}, dry.RefsDeleted)
	before := snapshotTree(t, e.repoPath)

	res, err := updatecache.Prune(e.ctx, e.repo, updatecache.PruneOptions{})
	require.NoError(t, err)
	assert.Equal(t, dry, res, "the dry run said what the real run did")
	assert.NotEqual(t, before, snapshotTree(t, e.repoPath))
	assert.Positive(t, res.ObjectsDeleted)
	assert.Positive(t, res.BytesFreed)

	assert.NoFileExists(t, oldMeta, "the old merge commit's cache went with it")
	_, err = os.Stat(e.repoPath + "/objects/" + first.MergeCommit[:2] + "/" + first.MergeCommit[2:] + ".commit")
	assert.True(t, os.IsNotExist(err))
	refs := testtool.RunOstree(t, "refs", "--repo="+e.repoPath)
	assert.Contains(t, refs, shared)
	assert.NotContains(t, refs, v1Only)
	testtool.RunOstree(t, "fsck", "--repo="+e.repoPath)
	out := testtool.RunOstree(t, "prune", "--repo="+e.repoPath, "--refs-only")
	assert.Contains(t, out, "Total objects:")
	assert.True(t, strings.Contains(out, "No unreachable objects") || strings.Contains(out, "Deleted 0 objects"), out)
	assert.Equal(t, filesOf(versionSpec("2")), checkout(t, e.repoPath, second.MergeCommit))
}

// TestPruneKeepsPreparedLayers: layers of the cached update that a pull
// already fetched survive a prune, so the interrupted pull resumes.
func TestPruneKeepsPreparedLayers(t *testing.T) {
	e := newEnv(t)
	v1, v2 := image(t, "1"), image(t, "2")
	e.push(v1)
	_, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	e.push(v2)
	require.True(t, e.mustPrepare().Persisted())
	// An interrupted pull that imported v2's layers but wrote no merge
	// commit for this image.
	repo, err := ostree.Open(e.repoPath)
	require.NoError(t, err)
	importLayerOf(t, e, repo, v2, 1)

	res, err := updatecache.Prune(e.ctx, e.repo, updatecache.PruneOptions{})
	require.NoError(t, err)
	assert.Empty(t, res.RefsDeleted, "v2's layer is kept for the prepared pull")
	e.reg.Reset()
	pulled, err := updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	assert.Equal(t, 0, pulled.LayersFetched)
	assert.Zero(t, e.reg.Counts().BlobGET-e.reg.Counts().BlobGETs(v2.ConfigDigest()), "no layer downloaded again")
}

// TestPruneDamagedPreparedLayer: a layer kept only for the cached update
// whose tree is damaged does not stop every prune: its ref goes (the
// prepared pull fetches it again); a damaged layer of the deployed image
// still stops the prune.
func TestPruneDamagedPreparedLayer(t *testing.T) {
	testtool.Ostree(t)
	e := newEnv(t)
	v1, v2 := image(t, "1"), image(t, "2")
	e.push(v1)
	_, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	e.push(v2)
	require.True(t, e.mustPrepare().Persisted())
	// v2's own layer, as an interrupted prepared pull leaves it.
	repo, err := ostree.Open(e.repoPath)
	require.NoError(t, err)
	layerCommit := importLayerOf(t, e, repo, v2, 1)
	damageRootTree(t, repo, layerCommit)

	res, err := updatecache.Prune(e.ctx, e.repo, updatecache.PruneOptions{})
	require.NoError(t, err)
	blobRef, err := ostree.BlobRefName(v2.Layers[1].Digest.String())
	require.NoError(t, err)
	assert.Equal(t, []string{blobRef}, res.RefsDeleted)
	testtool.RunOstree(t, "fsck", "--repo="+e.repoPath)
	pulled, err := updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	assert.Equal(t, 1, pulled.LayersFetched, "the damaged layer fetched again")

	// The deployed image's own layer damaged: nothing is guessed.
	deployedLayer, err := repo.ResolveRef(blobRef)
	require.NoError(t, err)
	damageRootTree(t, repo, deployedLayer)
	_, err = updatecache.Prune(e.ctx, e.repo, updatecache.PruneOptions{})
	assert.ErrorIs(t, err, updatecache.ErrCorruptRepo)
}

// importLayerOf pulls img under another name, which imports its layers,
// and drops that image's ref again: what an interrupted pull leaves. It
// returns the commit of layer i.
func importLayerOf(t *testing.T, e *env, repo *ostree.Repo, img *updatecachetest.Image, i int) string {
	other := e.reg.Ref("os/base", img.ManifestDigest.String())
	_, err := updatecache.Pull(e.ctx, e.repo, other, e.pullOptions())
	require.NoError(t, err)
	otherRef, err := ostree.ImageRefName(other)
	require.NoError(t, err)
	require.NoError(t, repo.DeleteRef(e.ctx, otherRef))
	blobRef, err := ostree.BlobRefName(img.Layers[i].Digest.String())
	require.NoError(t, err)
	commit, err := repo.ResolveRef(blobRef)
	require.NoError(t, err)
	return commit
}

// damageRootTree flips the last byte of a commit's root dirtree object.
func damageRootTree(t *testing.T, repo *ostree.Repo, commit string) {
	c, err := repo.ReadCommit(commit)
	require.NoError(t, err)
	p := repo.ObjectPath(c.RootTree, ostree.ObjectDirTree)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	data[len(data)-1] ^= 0xff
	require.NoError(t, os.Chmod(p, 0o644))
	require.NoError(t, os.WriteFile(p, data, 0o644))
}

// TestPruneExpiresTmp: a staging directory no process holds (a killed
// pull's) and an old temporary file are what prune removes from tmp/; a
// dry run reports them and removes nothing.
func TestPruneExpiresTmp(t *testing.T) {
	e := newEnv(t)
	tmp := filepath.Join(e.repoPath, "tmp")
	staged := filepath.Join(tmp, "staging-00000000-0000-0000-0000-000000000000-Abc123", "ab")
	require.NoError(t, os.MkdirAll(staged, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(staged, strings.Repeat("c", 62)+".filez"), make([]byte, 4000), 0o644))
	old := filepath.Join(tmp, ".tmp-1234")
	require.NoError(t, os.WriteFile(old, make([]byte, 96), 0o600))
	twoDaysAgo := time.Now().Add(-48 * time.Hour)
	require.NoError(t, os.Chtimes(old, twoDaysAgo, twoDaysAgo))
	want := []string{".tmp-1234", "staging-00000000-0000-0000-0000-000000000000-Abc123"}

	dry, err := updatecache.Prune(e.ctx, e.repo, updatecache.PruneOptions{DryRun: true})
	require.NoError(t, err)
	assert.ElementsMatch(t, want, dry.TmpRemoved)
	assert.Equal(t, int64(4096), dry.TmpBytesFreed)
	assert.FileExists(t, old)

	res, err := updatecache.Prune(e.ctx, e.repo, updatecache.PruneOptions{})
	require.NoError(t, err)
	assert.ElementsMatch(t, want, res.TmpRemoved)
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	for _, l := range left {
		assert.Equal(t, "cache", l.Name(), "left in tmp/")
	}
}

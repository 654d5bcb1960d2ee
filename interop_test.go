package updatecache_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/keys"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/testtool"
)

// ostreeDeploy makes the merge commit with the real ostree tool, as
// ostree-ext would have written it (commit metadata strings), plus an
// unrelated detached key that no update check may lose.
func ostreeDeploy(t *testing.T, e *env, manifestDigest, manifest, config string) string {
	t.Helper()
	ref, err := ostree.ImageRefName(e.ref)
	require.NoError(t, err)
	tree := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "usr", "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "usr", "bin", "true"), []byte("#!/bin/sh\n"), 0o755))
	out := testtool.RunOstree(t, "commit", "--repo="+e.repoPath, "-b", ref, "--tree=dir="+tree,
		"--no-bindings", "--timestamp=@1700000000", "-s", "merge commit",
		"--add-metadata-string=ostree.manifest-digest="+manifestDigest,
		"--add-metadata-string=ostree.manifest="+manifest,
		"--add-metadata-string=ostree.container.image-config="+config,
		"--add-metadata-string=ostree.importer.version=0.15.3",
		"--add-detached-metadata-string=org.example.unrelated=keep me")
	return strings.TrimSpace(out)
}

func showDetached(t *testing.T, repo, commit, key string) string {
	t.Helper()
	return strings.TrimSpace(testtool.RunOstree(t, "show", "--repo="+repo, commit, "--print-detached-metadata-key="+key))
}

// TestOstreeToolInterop: a merge commit written by the real ostree tool is
// read, the update is cached beside ostree's own detached key, libostree
// reads what we wrote, and pruning the commit deletes the cache with it.
func TestOstreeToolInterop(t *testing.T) {
	testtool.Ostree(t)
	e := newEnv(t)
	v1, v2 := image(t, "1"), image(t, "2")
	commit := ostreeDeploy(t, e, v1.ManifestDigest.String(), string(v1.Manifest), string(v1.Config.Data))
	e.push(v2)

	st, err := updatecache.QueryImage(e.repo, e.ref)
	require.NoError(t, err)
	require.NotNil(t, st.Deployed)
	assert.Equal(t, commit, st.Deployed.MergeCommit)
	assert.Equal(t, "1", st.Deployed.Version)

	res := e.mustPrepare()
	require.True(t, res.Persisted(), res.Reason)
	assert.Equal(t, "'"+v2.ManifestDigest.String()+"'", showDetached(t, e.repoPath, commit, keys.CachedManifestDigest))
	assert.Equal(t, "'keep me'", showDetached(t, e.repoPath, commit, "org.example.unrelated"))
	// The cached manifest is the exact bytes the registry served.
	manifest := showDetached(t, e.repoPath, commit, keys.CachedManifest)
	assert.Equal(t, "'"+string(v2.Manifest)+"'", manifest)

	require.NoError(t, updatecache.ClearCachedUpdate(e.ctx, e.repo, e.ref))
	assert.Equal(t, "'keep me'", showDetached(t, e.repoPath, commit, "org.example.unrelated"))
	cmd := testtool.OstreeCommand(t, "show", "--repo="+e.repoPath, commit, "--print-detached-metadata-key=ostree-ext.cached.manifest-digest")
	assert.Error(t, cmd.Run(), "the cached key is gone")

	require.True(t, e.mustPrepare().Persisted())
	testtool.RunOstree(t, "fsck", "--repo="+e.repoPath)

	// The cache lives and dies with the commit.
	ref, err := ostree.ImageRefName(e.ref)
	require.NoError(t, err)
	testtool.RunOstree(t, "refs", "--repo="+e.repoPath, "--delete", ref)
	testtool.RunOstree(t, "prune", "--repo="+e.repoPath, "--refs-only")
	_, err = os.Stat(e.commitmetaPath(commit))
	assert.True(t, os.IsNotExist(err), "commitmeta pruned with its commit: %v", err)
	st, err = updatecache.QueryImage(e.repo, e.ref)
	require.NoError(t, err)
	assert.Nil(t, st.Deployed)
}

// ostree-ext re-serialises the JSON it stores; such a merge commit must read
// the same, and be recognised as the registry's image though its bytes differ.
func TestReserialisedMetadata(t *testing.T) {
	testtool.Ostree(t)
	e := newEnv(t)
	v1 := image(t, "1")
	e.push(v1)
	reserialise := func(b []byte) string { return strings.ReplaceAll(string(b), ",", ", ") }
	commit := ostreeDeploy(t, e, v1.ManifestDigest.String(), reserialise(v1.Manifest), reserialise(v1.Config.Data))

	res := e.mustPrepare()
	assert.False(t, res.UpdateAvailable(), res.Reason)
	assert.Equal(t, "1", res.Deployed.Version)
	assert.Equal(t, commit, res.Deployed.MergeCommit)
}

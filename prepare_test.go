package updatecache_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/keys"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/updatecachetest"
)

func TestPrepareNoUpdateIsOneHEAD(t *testing.T) {
	e := newEnv(t)
	v1 := image(t, "1")
	e.push(v1)
	commit := e.deploy(v1, "")
	e.reg.Reset()

	res := e.mustPrepare()
	assert.False(t, res.UpdateAvailable())
	assert.False(t, res.Persisted())
	assert.Nil(t, res.CachedUpdate)
	require.NotNil(t, res.Deployed)
	assert.Equal(t, v1.ManifestDigest, res.Deployed.ManifestDigest)
	assert.Equal(t, "1", res.Deployed.Version)
	assert.Equal(t, commit, res.Deployed.MergeCommit)

	c := e.reg.Counts()
	assert.Equal(t, 1, c.ManifestHEAD, c.String())
	assert.Zero(t, c.ManifestGET, c.String())
	assert.Zero(t, c.BlobGET, c.String())
	assert.Nil(t, e.stat(e.commitmetaPath(commit)).data, "nothing written")
}

func TestPrepareNewUpdateThenRepeat(t *testing.T) {
	e := newEnv(t)
	v1, v2 := image(t, "1"), image(t, "2")
	commit := e.deploy(v1, "")
	e.push(v2)
	e.reg.Reset()

	res := e.mustPrepare()
	assert.True(t, res.UpdateAvailable())
	assert.True(t, res.Persisted(), res.Reason)
	require.NotNil(t, res.CachedUpdate)
	u := res.CachedUpdate
	assert.Equal(t, v2.ManifestDigest, u.ManifestDigest)
	assert.Equal(t, v2.ManifestDigest, u.TopDigest)
	assert.Equal(t, "2", u.Version)
	assert.Equal(t, "amd64", u.Architecture)
	assert.WithinDuration(t, time.Now(), u.CheckedAt, time.Minute)
	assert.Equal(t, updatecache.ManifestDiff{
		Total: 2, TotalSize: v2.Layers[0].Size + v2.Layers[1].Size,
		NRemoved: 1, RemovedSize: v1.Layers[1].Size,
		NAdded: 1, AddedSize: v2.Layers[1].Size,
	}, u.Diff)
	assert.True(t, u.ConfigChanged)

	c := e.reg.Counts()
	assert.Equal(t, 1, c.ManifestHEAD, c.String())
	assert.LessOrEqual(t, c.ManifestGET, 2, c.String())
	assert.Equal(t, 1, c.BlobGET, c.String())
	assert.Equal(t, 1, c.BlobGETs(v2.ConfigDigest()), "the config, and no layer: %s", c)

	// The cache is readable without the registry.
	before := e.stat(e.commitmetaPath(commit))
	require.NotNil(t, before.data)
	got, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
	require.NoError(t, err)
	assert.Equal(t, u, got)

	// Checking again finds the same digest: no GET, nothing written.
	e.reg.Reset()
	again := e.mustPrepare()
	assert.True(t, again.UpdateAvailable())
	assert.True(t, again.Persisted())
	assert.Equal(t, u, again.CachedUpdate)
	c = e.reg.Counts()
	assert.Equal(t, 1, c.ManifestHEAD, c.String())
	assert.Zero(t, c.ManifestGET, c.String())
	assert.Zero(t, c.BlobGET, c.String())
	after := e.stat(e.commitmetaPath(commit))
	assert.Equal(t, before, after, "commitmeta bytes and mtime unchanged")
}

func TestPrepareMultiArch(t *testing.T) {
	e := newEnv(t)
	arch := func(a, v string) *updatecachetest.Image {
		return image(t, v, func(s *updatecachetest.ImageSpec) { s.Architecture = a })
	}
	idx1, err := updatecachetest.NewIndex(arch("amd64", "1"), arch("arm64", "1"))
	require.NoError(t, err)
	idx2, err := updatecachetest.NewIndex(arch("amd64", "2"), arch("arm64", "2"))
	require.NoError(t, err)
	e.deploy(idx1.Images[1], idx1.ManifestDigest)
	e.push(idx2)
	e.reg.Reset()

	opts := e.options()
	opts.Platform = &imgspecv1.Platform{OS: "linux", Architecture: "arm64"}
	res, err := updatecache.Prepare(e.ctx, e.repo, e.ref, opts)
	require.NoError(t, err)
	require.True(t, res.UpdateAvailable())
	assert.Equal(t, idx2.Images[1].ManifestDigest, res.CachedUpdate.ManifestDigest)
	assert.Equal(t, idx2.ManifestDigest, res.CachedUpdate.TopDigest)
	assert.Equal(t, "arm64", res.CachedUpdate.Architecture)
	c := e.reg.Counts()
	assert.Equal(t, 1, c.ManifestHEAD, c.String())
	assert.Equal(t, 2, c.ManifestGET, "index and instance: %s", c)
	assert.Equal(t, 1, c.BlobGETs(idx2.Images[1].ConfigDigest()), c.String())
	assert.Equal(t, 1, c.BlobGET, c.String())

	// The index digest is what the next HEAD returns: no GET.
	e.reg.Reset()
	_, err = updatecache.Prepare(e.ctx, e.repo, e.ref, opts)
	require.NoError(t, err)
	c = e.reg.Counts()
	assert.Equal(t, 1, c.ManifestHEAD, c.String())
	assert.Zero(t, c.ManifestGET, c.String())
}

// A merge commit written by ostree-ext records no index digest. The first
// check resolves the index, finds the deployed image, and remembers the
// index digest, so later checks are a HEAD alone.
func TestPrepareLearnsDeployedIndexDigest(t *testing.T) {
	e := newEnv(t)
	native := image(t, "1", func(s *updatecachetest.ImageSpec) { s.Architecture = runtime.GOARCH })
	other := image(t, "1", func(s *updatecachetest.ImageSpec) { s.Architecture = "s390x" })
	idx, err := updatecachetest.NewIndex(other, native)
	require.NoError(t, err)
	commit := e.deploy(native, "")
	e.push(idx)

	res := e.mustPrepare()
	assert.False(t, res.UpdateAvailable(), res.Reason)
	assert.NotNil(t, e.stat(e.commitmetaPath(commit)).data, "index digest remembered")

	e.reg.Reset()
	res = e.mustPrepare()
	assert.False(t, res.UpdateAvailable())
	assert.Equal(t, idx.ManifestDigest, res.Deployed.TopDigest)
	c := e.reg.Counts()
	assert.Equal(t, 1, c.ManifestHEAD, c.String())
	assert.Zero(t, c.ManifestGET, c.String())
}

func TestPrepareStaleCacheIsRemoved(t *testing.T) {
	e := newEnv(t)
	v1, v2 := image(t, "1"), image(t, "2")
	commit := e.deploy(v1, "")
	e.push(v2)
	require.True(t, e.mustPrepare().Persisted())

	// The tag goes back to the deployed image.
	e.push(v1)
	res := e.mustPrepare()
	assert.False(t, res.UpdateAvailable())
	assert.Nil(t, res.CachedUpdate)
	u, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
	require.NoError(t, err)
	assert.Nil(t, u)
	// Only the cache lived there, so what is left is an empty dictionary.
	assert.Empty(t, e.stat(e.commitmetaPath(commit)).data)
}

func TestPrepareConfigOnlyChangeIsAnUpdate(t *testing.T) {
	e := newEnv(t)
	v1 := image(t, "1")
	v1b := image(t, "1", func(s *updatecachetest.ImageSpec) { s.Labels = map[string]string{"rebuilt": "yes"} })
	require.Equal(t, v1.Layers, v1b.Layers)
	e.deploy(v1, "")
	e.push(v1b)

	res := e.mustPrepare()
	require.True(t, res.UpdateAvailable())
	assert.True(t, res.CachedUpdate.ConfigChanged)
	assert.Equal(t, 0, res.CachedUpdate.Diff.NAdded)
	assert.Equal(t, 0, res.CachedUpdate.Diff.NRemoved)
}

func TestPrepareNothingDeployed(t *testing.T) {
	e := newEnv(t)
	v1 := image(t, "1")
	e.push(v1)

	res := e.mustPrepare()
	assert.True(t, res.UpdateAvailable())
	assert.False(t, res.Persisted())
	assert.Contains(t, res.Reason, "nothing is deployed")
	assert.Nil(t, res.Deployed)
	require.NotNil(t, res.CachedUpdate)
	assert.Equal(t, v1.ManifestDigest, res.CachedUpdate.ManifestDigest)
	assert.Equal(t, res.CachedUpdate.Diff.TotalSize, res.CachedUpdate.Diff.AddedSize)
}

func TestPrepareOffline(t *testing.T) {
	e := newEnv(t)
	v1 := image(t, "1")
	e.deploy(v1, "")
	e.reg.Reset()

	opts := e.options()
	opts.Offline = true
	_, err := updatecache.Prepare(e.ctx, e.repo, e.ref, opts)
	assert.ErrorIs(t, err, updatecache.ErrOffline)

	// A reference pinned to the deployed digest needs no network at all.
	pinnedRef := e.reg.Ref("os/base", v1.ManifestDigest.String())
	_, err = updatecachetest.Deploy(e.ctx, e.repoPath, pinnedRef, v1, "")
	require.NoError(t, err)
	res, err := updatecache.Prepare(e.ctx, e.repo, pinnedRef, opts)
	require.NoError(t, err)
	assert.False(t, res.UpdateAvailable())
	assert.Zero(t, e.reg.Counts().Total, e.reg.Counts().String())
}

func TestClearCachedUpdate(t *testing.T) {
	e := newEnv(t)
	v1, v2 := image(t, "1"), image(t, "2")
	commit := e.deploy(v1, "")
	e.push(v2)

	// Clearing with nothing cached writes nothing.
	require.NoError(t, updatecache.ClearCachedUpdate(e.ctx, e.repo, e.ref))
	assert.Nil(t, e.stat(e.commitmetaPath(commit)).data)

	require.True(t, e.mustPrepare().Persisted())
	require.NoError(t, updatecache.ClearCachedUpdate(e.ctx, e.repo, e.ref))
	u, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
	require.NoError(t, err)
	assert.Nil(t, u)

	assert.ErrorIs(t, updatecache.ClearCachedUpdate(e.ctx, e.repo, e.reg.Ref("os/other", "stable")), updatecache.ErrNotDeployed)
}

func TestQueryNotDeployed(t *testing.T) {
	e := newEnv(t)
	st, err := updatecache.QueryImage(e.repo, e.ref)
	require.NoError(t, err)
	assert.Nil(t, st.Deployed)
	assert.Nil(t, st.CachedUpdate)
	states, err := updatecache.ListImages(e.repo)
	require.NoError(t, err)
	assert.Empty(t, states)
}

func TestListImages(t *testing.T) {
	e := newEnv(t)
	v1, v2 := image(t, "1"), image(t, "2")
	commit := e.deploy(v1, "")
	otherRef := e.reg.Ref("os/other", "latest")
	_, err := updatecachetest.Deploy(e.ctx, e.repoPath, otherRef, v2, "")
	require.NoError(t, err)
	e.push(v2)
	require.True(t, e.mustPrepare().Persisted())

	states, err := updatecache.ListImages(e.repo)
	require.NoError(t, err)
	require.Len(t, states, 2)
	assert.Equal(t, e.ref, states[0].Image)
	assert.Equal(t, commit, states[0].Deployed.MergeCommit)
	require.NotNil(t, states[0].CachedUpdate)
	assert.Equal(t, v2.ManifestDigest, states[0].CachedUpdate.ManifestDigest)
	assert.Equal(t, otherRef, states[1].Image)
	assert.Nil(t, states[1].CachedUpdate)

	byCommit, err := updatecache.QueryCommit(e.repo, commit)
	require.NoError(t, err)
	assert.Equal(t, states[0].CachedUpdate, byCommit.CachedUpdate)
}

func TestInvalidReferences(t *testing.T) {
	e := newEnv(t)
	for _, ref := range []string{"", "quay.io/x:y", "nosuch://x", "docker://UPPER/Case:tag", "containers-storage:x"} {
		_, err := updatecache.Prepare(e.ctx, e.repo, ref, e.options())
		assert.ErrorIs(t, err, updatecache.ErrInvalidReference, ref)
		_, err = updatecache.QueryImage(e.repo, ref)
		assert.ErrorIs(t, err, updatecache.ErrInvalidReference, ref)
	}
	_, err := updatecache.QueryCommit(e.repo, "abc")
	assert.ErrorIs(t, err, updatecache.ErrInvalidReference)
}

// A cache that another tool wrote for an image with the deployed config (a
// rebuilt manifest, same image ID) is the deployed image: the check says so
// and removes it, though the tag's digest matches the cache.
func TestPrepareCachedSameConfigIsNoUpdate(t *testing.T) {
	e := newEnv(t)
	v1 := image(t, "1")
	rebuilt := image(t, "1", func(s *updatecachetest.ImageSpec) { s.Annotations = map[string]string{"rebuilt": "yes"} })
	require.Equal(t, v1.ConfigDigest(), rebuilt.ConfigDigest())
	require.NotEqual(t, v1.ManifestDigest, rebuilt.ManifestDigest)
	commit := e.deploy(v1, "")
	repo, err := ostree.Open(e.repoPath)
	require.NoError(t, err)
	_, err = repo.UpdateDetachedMetadata(e.ctx, commit, func(md gvariant.VarDict) (gvariant.VarDict, error) {
		md.Set(keys.CachedManifestDigest, gvariant.NewString(rebuilt.ManifestDigest.String()))
		md.Set(keys.CachedManifest, gvariant.NewString(string(rebuilt.Manifest)))
		md.Set(keys.CachedConfig, gvariant.NewString(string(rebuilt.Config.Data)))
		return md, nil
	})
	require.NoError(t, err)
	e.push(rebuilt)

	res := e.mustPrepare()
	assert.False(t, res.UpdateAvailable())
	assert.Nil(t, res.CachedUpdate)
	assert.Zero(t, e.reg.Counts().ManifestGET, "decided from the HEAD and the cache")
	md, _, err := repo.ReadDetachedMetadata(commit)
	require.NoError(t, err)
	_, cached := md.Lookup(keys.CachedManifestDigest)
	assert.False(t, cached, "the stale cache is removed")
}

// TestReferenceForms: every form ostree-ext and rpm-ostree write names the
// same image (the same ref in the repository) with ostree-ext's meaning.
func TestReferenceForms(t *testing.T) {
	e := newEnv(t)
	v1, v2 := image(t, "1"), image(t, "2")
	e.push(v1)
	e.deploy(v1, "")
	e.push(v2)
	name := strings.TrimPrefix(e.ref, "docker://")
	for _, form := range []string{
		"registry:" + name,
		"ostree-unverified-registry:" + name,
		"ostree-unverified-image:registry:" + name,
		"ostree-unverified-image:docker://" + name,
		"ostree-remote-registry:fedora:" + name,
		"ostree-remote-image:fedora:registry:" + name,
		"ostree-remote-image:fedora:docker://" + name,
	} {
		res, err := updatecache.Prepare(e.ctx, e.repo, form, e.options())
		require.NoError(t, err, form)
		assert.Equal(t, e.ref, res.Image, form)
		assert.Equal(t, updatecache.UpdateCached, res.Outcome, form)
		assert.Equal(t, v2.ManifestDigest, res.CachedUpdate.ManifestDigest, form)
	}
	for _, bad := range []string{"ostree-remote-registry:fedora", "ostree-remote-image::docker://" + name} {
		_, err := updatecache.QueryImage(e.repo, bad)
		assert.ErrorIs(t, err, updatecache.ErrInvalidReference, bad)
	}
	_, err := updatecache.QueryImage(e.repo, "quay.io/fedora/fedora-bootc:42")
	require.ErrorIs(t, err, updatecache.ErrInvalidReference)
	assert.Contains(t, err.Error(), "write docker://quay.io/fedora/fedora-bootc:42")
}

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
	forEachRegistry(t, func(t *testing.T, e *env) {
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
	})
}

// TestPrepareToFetch: the cached update says what a pull would really
// download: its layers the repository lacks, which shrink as an
// interrupted pull leaves some imported.
func TestPrepareToFetch(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, e *env) {
		v1 := image(t, "1")
		e.push(v1)
		e.deploy(v1, "") // no layers imported
		v2 := image(t, "2", func(s *updatecachetest.ImageSpec) {
			s.Layers = append(s.Layers, updatecachetest.Layer{Files: []updatecachetest.File{{Path: "usr/share/extra", Content: []byte("extra")}}})
		})
		e.push(v2)
		res := e.mustPrepare()
		require.Equal(t, updatecache.UpdateCached, res.Outcome)
		all := updatecache.FetchSize{Layers: 3, Size: v2.Layers[0].Size + v2.Layers[1].Size + v2.Layers[2].Size}
		assert.Equal(t, all, res.CachedUpdate.ToFetch)
		assert.Equal(t, 2, res.CachedUpdate.Diff.NAdded, "against the deployed manifest, only two layers are new")

		// A pull that fails on the last layer after the others were imported.
		e.reg.AddFault(updatecachetest.Fault{Method: "GET", Path: v2.Layers[2].Digest.String(), Delay: time.Second, Status: 500})
		_, err := updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
		require.ErrorIs(t, err, updatecache.ErrUnavailable)
		u, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
		require.NoError(t, err)
		assert.Equal(t, updatecache.FetchSize{Layers: 1, Size: v2.Layers[2].Size}, u.ToFetch)
	})
}

// TestPrepareDowngrade: an update older than the deployed image is marked
// as a downgrade, by version or by creation time.
func TestPrepareDowngrade(t *testing.T) {
	for _, tt := range []struct {
		name               string
		deployed, update   string
		deployedT, updateT time.Time
		want               bool
	}{
		{"newer version", "41.1", "41.2", time.Time{}, time.Time{}, false},
		{"older version", "41.10", "41.9", time.Time{}, time.Time{}, true},
		{"older build, no versions", "", "", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"newer build", "", "", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		forEachRegistry(t, func(t *testing.T, e *env) {
			t.Log(tt.name)
			at := func(v string, when time.Time) *updatecachetest.Image {
				return image(t, v+when.String(), func(s *updatecachetest.ImageSpec) { s.Version, s.Created = v, when })
			}
			deployed := at(tt.deployed, tt.deployedT)
			e.deploy(deployed, "")
			e.push(at(tt.update, tt.updateT))
			res := e.mustPrepare()
			require.Equal(t, updatecache.UpdateCached, res.Outcome)
			assert.Equal(t, tt.want, res.CachedUpdate.Downgrade)
		})
	}
}

// TestPreparePlatformChange: with the tag unchanged, a check for another
// platform than the deployed one resolves the index and offers that
// platform's image; a check for the deployed platform stays a HEAD.
func TestPreparePlatformChange(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, e *env) {
		arch := func(a string) *updatecachetest.Image {
			return image(t, "1", func(s *updatecachetest.ImageSpec) { s.Architecture = a })
		}
		idx, err := updatecachetest.NewIndex(arch("amd64"), arch("arm64"))
		require.NoError(t, err)
		e.deploy(idx.Images[0], idx.ManifestDigest)
		e.push(idx)

		for _, tt := range []struct {
			arch    string
			outcome updatecache.Outcome
			gets    int
		}{
			{"amd64", updatecache.NoUpdate, 0},
			{"arm64", updatecache.UpdateCached, 2},
			{"arm64", updatecache.UpdateCached, 0}, // cached for arm64 already: a HEAD
			{"amd64", updatecache.NoUpdate, 0},
		} {
			e.reg.Reset()
			opts := e.options()
			opts.Platform = &imgspecv1.Platform{OS: "linux", Architecture: tt.arch}
			res, err := updatecache.Prepare(e.ctx, e.repo, e.ref, opts)
			require.NoError(t, err)
			assert.Equal(t, tt.outcome, res.Outcome, tt.arch)
			if tt.outcome == updatecache.UpdateCached {
				assert.Equal(t, "linux/arm64", res.CachedUpdate.Platform())
				assert.Equal(t, "linux/amd64", res.Deployed.Platform())
				assert.True(t, res.CachedUpdate.PlatformChanged)
			}
			assert.Equal(t, tt.gets, e.reg.Counts().ManifestGET, "%s: %s", tt.arch, e.reg.Counts())
		}
	})
}

// TestPrepareLocalLayoutOffline: an oci: layout is read from disk, so a
// check of one works with Offline set.
func TestPrepareLocalLayoutOffline(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	ref := "oci:" + dir + ":stable"
	v1, v2 := image(t, "1"), image(t, "2")
	_, err := updatecachetest.Deploy(e.ctx, e.repoPath, ref, v1, "")
	require.NoError(t, err)
	require.NoError(t, updatecachetest.WriteLayout(dir, "stable", v2))
	opts := e.options()
	opts.Offline = true
	res, err := updatecache.Prepare(e.ctx, e.repo, ref, opts)
	require.NoError(t, err)
	assert.Equal(t, updatecache.UpdateCached, res.Outcome)
	assert.Equal(t, v2.ManifestDigest, res.CachedUpdate.ManifestDigest)
}

// TestPrepareTimestampPrecedence: the update's time is bootc's (the config
// label org.opencontainers.image.created, else the config's created), while
// the merge commit a pull writes is dated as ostree-ext dates it (the
// manifest annotation first).
func TestPrepareTimestampPrecedence(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, e *env) {
		label := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		annotation := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
		v1 := image(t, "1")
		e.push(v1)
		e.deploy(v1, "")
		v2 := image(t, "2", func(s *updatecachetest.ImageSpec) {
			s.Labels = map[string]string{"org.opencontainers.image.created": label.Format(time.RFC3339)}
			s.Annotations = map[string]string{"org.opencontainers.image.created": annotation.Format(time.RFC3339)}
		})
		e.push(v2)
		res := e.mustPrepare()
		assert.Equal(t, label, res.CachedUpdate.Timestamp, "the config label, as bootc shows it")
		pulled, err := updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
		require.NoError(t, err)
		st, err := updatecache.QueryImage(e.repo, e.ref)
		require.NoError(t, err)
		assert.Equal(t, label, st.Deployed.Timestamp)
		r, err := ostree.Open(e.repoPath)
		require.NoError(t, err)
		c, err := r.ReadCommit(pulled.MergeCommit)
		require.NoError(t, err)
		assert.Equal(t, annotation, c.Timestamp.UTC(), "the merge commit dated by the annotation, as ostree-ext does")
	})
}

package updatecache_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

func (e *env) pullOptions() updatecache.PullOptions {
	return updatecache.PullOptions{RegistryOptions: e.options().RegistryOptions}
}

// checkout checks commit out with the real ostree tool and returns the files
// below it, path -> content (symlinks as "-> target").
func checkout(t *testing.T, repo, commit string) map[string]string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "co")
	testtool.RunOstree(t, "checkout", "--repo="+repo, "-U", commit, dir)
	files := map[string]string{}
	require.NoError(t, filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if info.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(path)
			files[rel] = "-> " + target
			return err
		}
		data, err := os.ReadFile(path)
		files[rel] = string(data)
		return err
	}))
	return files
}

// filesOf is what checking out img must give.
func filesOf(img *updatecachetest.ImageSpec) map[string]string {
	files := map[string]string{}
	for _, l := range img.Layers {
		for _, f := range l.Files {
			files[strings.TrimPrefix(f.Path, "/")] = string(f.Content)
		}
	}
	return files
}

func versionSpec(v string) *updatecachetest.ImageSpec {
	return &updatecachetest.ImageSpec{Layers: []updatecachetest.Layer{baseLayer, {Files: []updatecachetest.File{
		{Path: "usr/share/version", Content: []byte("version " + v + "\n"), Mode: 0o644},
	}}}}
}

// TestPullPreparedFetchesExactlyThePreparedDigest is the mission's loop: v1
// deployed, v2 prepared, v3 pushed to the same tag; PullPrepared deploys v2,
// fetching only the layer v1 lacks.
func TestPullPreparedFetchesExactlyThePreparedDigest(t *testing.T) {
	testtool.Ostree(t)
	for _, real := range []bool{false, true} {
		name := map[bool]string{false: "in-process registry", true: "real registry"}[real]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			if real {
				e, _ = newRealEnv(t)
			}
			v1, v2, v3 := image(t, "1"), image(t, "2"), image(t, "3")
			e.push(v1)
			first, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
			require.NoError(t, err)
			assert.Equal(t, 2, first.LayersFetched)
			assert.Equal(t, v1.ManifestDigest, first.Pulled.ManifestDigest)

			e.push(v2)
			require.True(t, e.mustPrepare().Persisted())
			e.push(v3)
			e.reg.Reset()

			res, err := updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
			require.NoError(t, err)
			assert.Equal(t, v2.ManifestDigest, res.Pulled.ManifestDigest, "v2, not v3")
			assert.Equal(t, "2", res.Pulled.Version)
			assert.Equal(t, 1, res.LayersFetched)
			assert.Equal(t, 1, res.LayersReused)
			c := e.reg.Counts()
			assert.Zero(t, c.BlobGETs(v2.Layers[0].Digest), "the shared base layer is not downloaded again: %s", c)
			assert.Equal(t, 1, c.BlobGETs(v2.Layers[1].Digest), c.String())
			assert.Equal(t, 1, c.ManifestGET, c.String())

			testtool.RunOstree(t, "fsck", "--repo="+e.repoPath)
			assert.Equal(t, filesOf(versionSpec("2")), checkout(t, e.repoPath, res.MergeCommit))

			st, err := updatecache.QueryImage(e.repo, e.ref)
			require.NoError(t, err)
			assert.Equal(t, res.MergeCommit, st.Deployed.MergeCommit)
			assert.Equal(t, v2.ManifestDigest, st.Deployed.ManifestDigest)
			assert.Nil(t, st.CachedUpdate, "a new deployment starts with no cached update")

			_, err = updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
			assert.ErrorIs(t, err, updatecache.ErrNoCachedUpdate)
		})
	}
}

// TestPullPreparedGone: the registry deleted the prepared manifest; the pull
// fails with ErrPreparedUpdateGone and the repository is as before.
func TestPullPreparedGone(t *testing.T) {
	for _, what := range []string{"manifest", "layer"} {
		t.Run(what, func(t *testing.T) {
			e, _ := newRealEnv(t)
			v1, v2, v3 := image(t, "1"), image(t, "2"), image(t, "3")
			e.push(v1)
			_, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
			require.NoError(t, err)
			d2 := e.push(v2)
			require.True(t, e.mustPrepare().Persisted())
			e.push(v3)
			if what == "manifest" {
				require.NoError(t, e.reg.DeleteManifest(e.ctx, "os/base", d2))
			} else {
				e.reg.AddFault(updatecachetest.Fault{Kind: updatecachetest.KindBlob, Path: v2.Layers[1].Digest.Encoded(),
					Status: 404, Body: updatecachetest.ErrorBody("BLOB_UNKNOWN", "blob unknown to registry")})
			}
			before := snapshotTree(t, e.repoPath)

			_, err = updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
			assert.ErrorIs(t, err, updatecache.ErrPreparedUpdateGone)
			assert.Contains(t, err.Error(), v2.ManifestDigest.String())
			assert.Equal(t, before, snapshotTree(t, e.repoPath), "repository unchanged")
			u, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
			require.NoError(t, err)
			assert.Equal(t, v2.ManifestDigest, u.ManifestDigest, "the old commit keeps its cached update")
			testtool.RunOstree(t, "fsck", "--repo="+e.repoPath)
		})
	}
}

func TestPullAgainIsANoOp(t *testing.T) {
	e := newEnv(t)
	v1 := image(t, "1")
	e.push(v1)
	first, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	e.reg.Reset()
	again, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	assert.True(t, again.AlreadyDeployed)
	assert.Equal(t, first.MergeCommit, again.MergeCommit)
	assert.Zero(t, e.reg.Counts().BlobGETs(v1.Layers[0].Digest))
}

func TestPullProgressAndOffline(t *testing.T) {
	e := newEnv(t)
	v1 := image(t, "1")
	e.push(v1)
	opts := e.pullOptions()
	opts.Offline = true
	_, err := updatecache.Pull(e.ctx, e.repo, e.ref, opts)
	assert.ErrorIs(t, err, updatecache.ErrOffline)

	opts.Offline = false
	var events []updatecache.Progress
	opts.Progress = func(p updatecache.Progress) { events = append(events, p) }
	_, err = updatecache.Pull(e.ctx, e.repo, e.ref, opts)
	require.NoError(t, err)
	done := map[int]updatecache.Progress{}
	for _, p := range events {
		assert.Equal(t, 2, p.Layers)
		if p.Finished {
			done[p.Index] = p
		}
	}
	require.Len(t, done, 2)
	for i, l := range v1.Layers {
		assert.Equal(t, l.Size, done[i].Done)
		assert.Equal(t, l.Size, done[i].Total)
	}
	// The plan comes first, the merge last.
	size := v1.Layers[0].Size + v1.Layers[1].Size
	require.NotNil(t, events[0].Plan)
	assert.Equal(t, updatecache.PullPlan{ManifestDigest: v1.ManifestDigest, Layers: 2, Bytes: size, FetchLayers: 2, FetchBytes: size}, *events[0].Plan)
	assert.True(t, events[len(events)-1].Merging)
	for _, p := range events[1 : len(events)-1] {
		assert.True(t, p.Plan == nil && !p.Merging && p.Layer != "", "%+v", p)
	}

	// An update sharing the base layer plans to fetch the other alone.
	v2 := image(t, "2")
	e.push(v2)
	events = nil
	_, err = updatecache.Pull(e.ctx, e.repo, e.ref, opts)
	require.NoError(t, err)
	require.NotNil(t, events[0].Plan)
	assert.Equal(t, updatecache.PullPlan{ManifestDigest: v2.ManifestDigest, Layers: 2, Bytes: v2.Layers[0].Size + v2.Layers[1].Size,
		FetchLayers: 1, FetchBytes: v2.Layers[1].Size}, *events[0].Plan)
	assert.True(t, events[1].Reused)
}

// TestPullPreparedFromLayout: a prepared pull from an oci: layout fetches
// exactly the prepared image though the layout's tag names another now,
// pinned by its index entry, and is ErrPreparedUpdateGone once the layout
// no longer holds it.
func TestPullPreparedFromLayout(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	ref := "oci:" + dir + ":stable"
	v1, v2, v3, v4 := image(t, "1"), image(t, "2"), image(t, "3"), image(t, "4")
	require.NoError(t, updatecachetest.WriteLayout(dir, "stable", v1))
	_, err := updatecache.Pull(e.ctx, e.repo, ref, e.pullOptions())
	require.NoError(t, err)
	require.NoError(t, updatecachetest.WriteLayout(dir, "stable", v2))
	res, err := updatecache.Prepare(e.ctx, e.repo, ref, e.options())
	require.NoError(t, err)
	require.Equal(t, updatecache.UpdateCached, res.Outcome)

	// v3 takes the tag; v2 stays in the layout, untagged.
	require.NoError(t, updatecachetest.WriteLayout(dir, "stable", v3))
	addLayoutEntry(t, dir, v2)
	pulled, err := updatecache.PullPrepared(e.ctx, e.repo, ref, e.pullOptions())
	require.NoError(t, err)
	assert.Equal(t, v2.ManifestDigest, pulled.Pulled.ManifestDigest, "the prepared image, not the tag's")
	assert.Equal(t, filesOf(versionSpec("2")), checkout(t, e.repoPath, pulled.MergeCommit))

	// v3 prepared, then the layout holds only v4.
	res, err = updatecache.Prepare(e.ctx, e.repo, ref, e.options())
	require.NoError(t, err)
	require.Equal(t, v3.ManifestDigest, res.CachedUpdate.ManifestDigest)
	require.NoError(t, updatecachetest.WriteLayout(dir, "stable", v4))
	_, err = updatecache.PullPrepared(e.ctx, e.repo, ref, e.pullOptions())
	assert.ErrorIs(t, err, updatecache.ErrPreparedUpdateGone)
}

// addLayoutEntry lists img (already written to the layout's blobs) in its
// index.json, untagged.
func addLayoutEntry(t *testing.T, dir string, img *updatecachetest.Image) {
	p := filepath.Join(dir, "index.json")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	var index imgspecv1.Index
	require.NoError(t, json.Unmarshal(data, &index))
	index.Manifests = append(index.Manifests, imgspecv1.Descriptor{MediaType: img.MediaType, Digest: img.ManifestDigest, Size: int64(len(img.Manifest))})
	data, err = json.Marshal(index)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, data, 0o644))
}

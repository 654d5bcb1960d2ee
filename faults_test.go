package updatecache_test

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/updatecachetest"
)

// snapshotTree records every file under root, bytes and modification time,
// but the empty lock files that taking a lock may create.
func snapshotTree(t *testing.T, root string) map[string]fileState {
	t.Helper()
	files := map[string]fileState{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == ".lock" || d.Name() == ".updatecache-lock" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files[path] = fileState{data: data, mtime: info.ModTime()}
		return nil
	})
	require.NoError(t, err)
	return files
}

func TestPrepareRetriesAfter429(t *testing.T) {
	e := newEnv(t)
	v1, v2 := image(t, "1"), image(t, "2")
	e.deploy(v1, "")
	e.push(v2)
	e.reg.AddFault(updatecachetest.Fault{Method: http.MethodHead, Kind: updatecachetest.KindManifest, Status: 429,
		Header: http.Header{"Retry-After": {"1"}}, Times: 1})
	e.reg.Reset()
	res := e.mustPrepare()
	assert.True(t, res.Persisted())
	assert.Equal(t, 2, e.reg.Counts().ManifestHEAD, "retried once after Retry-After")
}

func TestPrepareIndexWithoutPlatform(t *testing.T) {
	e := newEnv(t)
	e.deploy(image(t, "1"), "")
	idx, err := updatecachetest.NewIndex(image(t, "2"))
	require.NoError(t, err)
	e.push(idx)
	opts := e.options()
	opts.Platform = &imgspecv1.Platform{OS: "linux", Architecture: "riscv64"}
	_, err = updatecache.Prepare(e.ctx, e.repo, e.ref, opts)
	assert.ErrorIs(t, err, updatecache.ErrNoMatchingPlatform)
}

// A .commitmeta that does not parse is a corrupt cache: Prepare refuses to
// write over it, the queries still show the deployed image, and the file is
// left for the operator.
func TestCorruptCommitmeta(t *testing.T) {
	for _, garbage := range [][]byte{{0x01}, []byte("not a gvariant at all"), {'k', 0, 0, 0, 0, 0, 0, 0, 'v', 0, 0, 's', 0x02, 0xff}} {
		e := newEnv(t)
		v1 := image(t, "1")
		commit := e.deploy(v1, "")
		e.push(image(t, "2"))
		path := e.commitmetaPath(commit)
		require.NoError(t, os.WriteFile(path, garbage, 0o644))
		before := snapshotTree(t, e.repoPath)

		res, err := e.prepare()
		assert.ErrorIs(t, err, updatecache.ErrCorruptCache)
		require.NotNil(t, res)
		assert.Equal(t, v1.ManifestDigest, res.Deployed.ManifestDigest)

		st, err := updatecache.QueryImage(e.repo, e.ref)
		assert.ErrorIs(t, err, updatecache.ErrCorruptCache)
		require.NotNil(t, st)
		assert.Equal(t, commit, st.Deployed.MergeCommit)
		assert.Nil(t, st.CachedUpdate)

		states, err := updatecache.ListImages(e.repo)
		assert.ErrorIs(t, err, updatecache.ErrCorruptCache)
		assert.Len(t, states, 1)

		assert.ErrorIs(t, updatecache.ClearCachedUpdate(e.ctx, e.repo, e.ref), updatecache.ErrCorruptCache)
		assert.Equal(t, before, snapshotTree(t, e.repoPath))
	}
}

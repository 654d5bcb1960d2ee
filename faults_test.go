package updatecache_test

import (
	"context"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
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

// TestPrepareFailuresKeepTheCache: with v2 cached and v3 pushed, every way
// the next check can fail gives its typed error within the deadline and
// leaves the repository byte for byte as it was, v2 still cached.
func TestPrepareFailuresKeepTheCache(t *testing.T) {
	on := func(method string, kind updatecachetest.Kind) func(updatecachetest.Fault) *updatecachetest.Fault {
		return func(f updatecachetest.Fault) *updatecachetest.Fault {
			f.Method, f.Kind = method, kind
			return &f
		}
	}
	manifestGET := on(http.MethodGet, updatecachetest.KindManifest)
	manifestHEAD := on(http.MethodHead, updatecachetest.KindManifest)
	blobGET := on(http.MethodGet, updatecachetest.KindBlob)
	tests := []struct {
		name  string
		fault *updatecachetest.Fault // nil: none
		// stored replaces v3 with a manifest of this media type and body,
		// which the registry serves with a matching digest.
		stored  [2]string
		opts    func(*updatecache.PrepareOptions)
		timeout time.Duration
		want    error
	}{
		{name: "HEAD 500", fault: manifestHEAD(updatecachetest.Fault{Status: 500}), want: updatecache.ErrUnavailable},
		{name: "GET 503", fault: manifestGET(updatecachetest.Fault{Status: 503}), want: updatecache.ErrUnavailable},
		{name: "config 502", fault: blobGET(updatecachetest.Fault{Status: 502}), want: updatecache.ErrUnavailable},
		{name: "401", fault: manifestHEAD(updatecachetest.Fault{Status: 401}), want: updatecache.ErrUnauthorized},
		{name: "404", fault: manifestGET(updatecachetest.Fault{Status: 404, Body: updatecachetest.ErrorBody("MANIFEST_UNKNOWN", "gone")}), want: updatecache.ErrManifestUnknown},
		{name: "429 persistent", fault: manifestHEAD(updatecachetest.Fault{Status: 429, Header: http.Header{"Retry-After": {"1"}}}), want: updatecache.ErrRateLimited},
		{name: "timeout", fault: manifestGET(updatecachetest.Fault{Delay: time.Minute}), timeout: time.Second, want: context.DeadlineExceeded},
		{name: "manifest not matching its digest", fault: manifestGET(updatecachetest.Fault{Corrupt: true}), want: updatecache.ErrDigestMismatch},
		{name: "config not matching its digest", fault: blobGET(updatecachetest.Fault{Corrupt: true}), want: updatecache.ErrDigestMismatch},
		{name: "lying Docker-Content-Digest", fault: manifestHEAD(updatecachetest.Fault{Digest: digest.FromString("no such manifest").String()}), want: updatecache.ErrManifestUnknown},
		{name: "oversized manifest", fault: manifestGET(updatecachetest.Fault{Pad: 1 << 10}), opts: func(o *updatecache.PrepareOptions) { o.MaxManifestSize = 512 }, want: updatecache.ErrTooLarge},
		{name: "oversized config", opts: func(o *updatecache.PrepareOptions) { o.MaxConfigSize = 16 }, want: updatecache.ErrTooLarge},
		{name: "truncated body", fault: manifestGET(updatecachetest.Fault{Truncate: true}), want: updatecache.ErrMalformed},
		{name: "malformed JSON", stored: [2]string{imgspecv1.MediaTypeImageManifest, `{"schemaVersion":2,"config":`}, want: updatecache.ErrMalformed},
		{name: "schema 1", stored: [2]string{"application/vnd.docker.distribution.manifest.v1+prettyjws", `{"schemaVersion":1,"fsLayers":[]}`}, want: updatecache.ErrUnsupportedManifest},
		{name: "unknown media type", stored: [2]string{"application/vnd.example+json", `{"schemaVersion":2,"mediaType":"application/vnd.example+json"}`}, want: updatecache.ErrUnsupportedManifest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			v1, v2, v3 := image(t, "1"), image(t, "2"), image(t, "3")
			e.deploy(v1, "")
			e.push(v2)
			require.True(t, e.mustPrepare().Persisted)
			e.push(v3)
			before := snapshotTree(t, e.repoPath)

			if tt.stored[0] != "" {
				require.NoError(t, updatecachetest.PushManifest(e.ctx, e.reg.Host(), "os/base", "stable", tt.stored[0], []byte(tt.stored[1]), updatecachetest.HTTPOptions{}))
			}
			if tt.fault != nil {
				e.reg.AddFault(*tt.fault)
			}
			opts := e.options()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 20 * time.Second
			}
			ctx, cancel := context.WithTimeout(e.ctx, timeout)
			defer cancel()
			start := time.Now()
			_, err := updatecache.Prepare(ctx, e.repo, e.ref, opts)
			assert.ErrorIs(t, err, tt.want)
			assert.Less(t, time.Since(start), timeout+time.Second, "within the deadline")

			assert.Equal(t, before, snapshotTree(t, e.repoPath), "repository unchanged")
			u, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
			require.NoError(t, err)
			require.NotNil(t, u)
			assert.Equal(t, v2.ManifestDigest, u.ManifestDigest)
		})
	}
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
	assert.True(t, res.Persisted)
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

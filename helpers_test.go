package updatecache_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/updatecachetest"
)

// env is one test's world: a fake registry, a repository, and the image
// reference under test.
type env struct {
	t        *testing.T
	ctx      context.Context
	reg      *updatecachetest.Registry
	repoPath string
	repo     *updatecache.Repo
	sys      *types.SystemContext
	ref      string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	sys, err := updatecachetest.SystemContext(t.TempDir())
	require.NoError(t, err)
	e := &env{t: t, ctx: ctx, reg: updatecachetest.NewRegistry(t), repoPath: updatecachetest.NewRepo(t), sys: sys}
	e.ref = e.reg.Ref("os/base", "stable")
	e.repo, err = updatecache.OpenRepo(e.repoPath)
	require.NoError(t, err)
	return e
}

// forEachRegistry runs fn against the in-process registry and against the
// real registry server (behind the counting proxy), so that what a test
// asserts holds for both.
func forEachRegistry(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("in-process registry", func(t *testing.T) { fn(t, newEnv(t)) })
	t.Run("real registry", func(t *testing.T) {
		e, _ := newRealEnv(t)
		fn(t, e)
	})
}

// baseLayer is shared by every version, as an OS base would be.
var baseLayer = updatecachetest.Layer{Files: []updatecachetest.File{
	{Path: "usr/bin/sh", Content: []byte("#!shell\n"), Mode: 0o755},
	{Path: "usr/lib/os-release", Content: []byte("ID=test\n"), Mode: 0o644},
}}

// image builds version v of the test OS: the base layer plus one layer of its own.
func image(t *testing.T, v string, mutate ...func(*updatecachetest.ImageSpec)) *updatecachetest.Image {
	t.Helper()
	spec := updatecachetest.ImageSpec{
		Version:      v,
		Created:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Architecture: "amd64",
		Layers: []updatecachetest.Layer{baseLayer, {Files: []updatecachetest.File{
			{Path: "usr/share/version", Content: []byte("version " + v + "\n"), Mode: 0o644},
		}}},
	}
	for _, m := range mutate {
		m(&spec)
	}
	img, err := updatecachetest.NewImage(spec)
	require.NoError(t, err)
	return img
}

func (e *env) push(a updatecachetest.Artifact) digest.Digest {
	e.t.Helper()
	d, err := e.reg.Push(e.ctx, "os/base", "stable", a)
	require.NoError(e.t, err)
	return d
}

func (e *env) deploy(img *updatecachetest.Image, top digest.Digest) string {
	e.t.Helper()
	commit, err := updatecachetest.Deploy(e.ctx, e.repoPath, e.ref, img, top)
	require.NoError(e.t, err)
	return commit
}

func (e *env) options() updatecache.PrepareOptions {
	return updatecache.PrepareOptions{RegistryOptions: updatecache.RegistryOptions{SystemContext: e.sys}}
}

func (e *env) prepare() (*updatecache.PrepareResult, error) {
	return updatecache.Prepare(e.ctx, e.repo, e.ref, e.options())
}

func (e *env) mustPrepare() *updatecache.PrepareResult {
	e.t.Helper()
	res, err := e.prepare()
	require.NoError(e.t, err)
	return res
}

// commitmetaPath is where the detached metadata of commit lives.
func (e *env) commitmetaPath(commit string) string {
	return filepath.Join(e.repoPath, "objects", commit[:2], commit[2:]+".commitmeta")
}

// fileState is a file's bytes and modification time, or nil bytes when absent.
type fileState struct {
	data  []byte
	mtime time.Time
}

func (e *env) stat(path string) fileState {
	e.t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return fileState{}
	}
	require.NoError(e.t, err)
	fi, err := os.Stat(path)
	require.NoError(e.t, err)
	return fileState{data: data, mtime: fi.ModTime()}
}

package updatecache_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/importer"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// sampleChunks splits the sample OS commit into chunk layers, as
// rpm-ostree's chunking does by package.
var sampleChunks = []updatecachetest.Chunk{
	{Name: "kernel", Components: []string{"kernel-core"}, Paths: []string{"usr/lib/modules"}},
	{Name: "bash", Components: []string{"bash"}, Paths: []string{"usr/bin/bash", "usr/bin/sh"}},
}

// osSource is an OSTree repository holding the OS commits that
// encapsulated images are built from.
type osSource struct {
	t    *testing.T
	repo string
}

func newOSSource(t *testing.T) *osSource {
	dir := filepath.Join(t.TempDir(), "source")
	require.NoError(t, updatecachetest.CreateRepo(dir, updatecachetest.ModeArchive))
	return &osSource{t: t, repo: dir}
}

// commit writes the sample OS at version, changed by edit, and returns it.
func (s *osSource) commit(version string, edit ...func(*updatecachetest.CommitSpec)) string {
	spec := updatecachetest.SampleCommit(version)
	for _, e := range edit {
		e(&spec)
	}
	c, err := updatecachetest.WriteCommit(s.t.Context(), s.repo, spec)
	require.NoError(s.t, err)
	return c
}

// image encapsulates commit, with derived layers on top.
func (s *osSource) image(commit string, derived ...updatecachetest.Layer) *updatecachetest.Image {
	img, err := updatecachetest.Encapsulate(s.t.Context(), updatecachetest.EncapsulateSpec{
		Repo: s.repo, Commit: commit, Chunks: sampleChunks, Derived: derived,
		XattrEncoding: updatecachetest.XattrsLinkedPAX,
	})
	require.NoError(s.t, err)
	return img
}

// ls is `ostree ls -R -X` of rev: every path with its type, mode, owner,
// size and xattrs.
func ls(t *testing.T, repo, rev string) string {
	return testtool.RunOstree(t, "ls", "--repo="+repo, "-R", "-X", rev)
}

// envInMode is newEnv with a repository of the given mode.
func envInMode(t *testing.T, mode string) *env {
	e := newEnv(t)
	e.repoPath = filepath.Join(t.TempDir(), "repo")
	require.NoError(t, updatecachetest.CreateRepo(e.repoPath, mode))
	var err error
	e.repo, err = updatecache.OpenRepo(e.repoPath)
	require.NoError(t, err)
	return e
}

func repoModes(t *testing.T) []string {
	modes := []string{updatecachetest.ModeArchive, updatecachetest.ModeBareUser}
	if os.Geteuid() == 0 {
		return append(modes, updatecachetest.ModeBare)
	}
	t.Log("not root: bare repositories are not tested")
	return modes
}

// TestPullEncapsulated: an image ostree-ext encapsulated is pulled as it
// imports one: the embedded commit is in the repository under its own
// checksum, the merge commit's parent, with the same root tree, checksum
// for checksum, so `ostree ls` shows the source tree exactly; the blob refs
// hold the commit and ostree-ext's object-set commits; fsck is clean.
func TestPullEncapsulated(t *testing.T) {
	testtool.Ostree(t)
	src := newOSSource(t)
	commit := src.commit("42.1")
	img := src.image(commit)
	for _, mode := range repoModes(t) {
		t.Run(mode, func(t *testing.T) {
			e := envInMode(t, mode)
			e.push(img)
			res, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
			require.NoError(t, err)
			assert.Equal(t, len(img.Layers), res.LayersFetched)

			r, err := ostree.Open(e.repoPath)
			require.NoError(t, err)
			merge, err := r.ReadCommit(res.MergeCommit)
			require.NoError(t, err)
			base, err := r.ReadCommit(commit)
			require.NoError(t, err, "the encapsulated commit is in the repository")
			assert.Equal(t, commit, merge.Parent)
			assert.Equal(t, base.RootTree, merge.RootTree, "the merge commit's tree is the commit's")
			assert.Equal(t, base.RootMeta, merge.RootMeta)
			assert.Equal(t, ls(t, src.repo, commit), ls(t, e.repoPath, res.MergeCommit))
			testtool.RunOstree(t, "fsck", "--repo="+e.repoPath)

			for i, l := range img.Layers {
				blobRef, err := ostree.BlobRefName(l.Digest.String())
				require.NoError(t, err)
				layerCommit, err := r.ResolveRef(blobRef)
				require.NoError(t, err)
				if i == 0 {
					assert.Equal(t, commit, layerCommit, "the commit layer's ref names the commit")
					continue
				}
				isSet, err := importer.IsObjectSetCommit(r, layerCommit)
				require.NoError(t, err)
				assert.True(t, isSet, "chunk layer %d is an object set", i)
			}
			st, err := updatecache.QueryImage(e.repo, e.ref)
			require.NoError(t, err)
			assert.Equal(t, "42.1", st.Deployed.Version)
		})
	}
}

// TestPullEncapsulatedWithDerived: derived layers (a Containerfile's RUN)
// go on top of the encapsulated commit, whiteouts applied, and the merged
// tree is the commit's with their changes; the result deploys with the
// real `ostree admin deploy`.
func TestPullEncapsulatedWithDerived(t *testing.T) {
	testtool.Ostree(t)
	src := newOSSource(t)
	commit := src.commit("42.1")
	img := src.image(commit, updatecachetest.Layer{Files: []updatecachetest.File{
		{Path: "usr/bin/added", Content: []byte("#!/bin/sh\n"), Mode: 0o755},
		{Path: "etc/added.conf", Content: []byte("key=value\n"), Mode: 0o644},
		{Path: "usr/bin/.wh.gzip", Mode: 0o644},
	}})
	e := envInMode(t, updatecachetest.ModeBareUser)
	e.push(img)
	res, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	testtool.RunOstree(t, "fsck", "--repo="+e.repoPath)

	want := lsLines(ls(t, src.repo, commit))
	got := lsLines(ls(t, e.repoPath, res.MergeCommit))
	_, hadGzip := want["/usr/bin/gzip"]
	require.True(t, hadGzip, "the sample has /usr/bin/gzip")
	delete(want, "/usr/bin/gzip")
	for _, p := range []string{"/usr/bin/added", "/usr/etc/added.conf"} {
		assert.Contains(t, got, p)
		delete(got, p)
	}
	assert.Equal(t, want, got, "the commit's tree, with the derived layer's changes only")

	sysroot := t.TempDir()
	testtool.RunOstree(t, "admin", "init-fs", sysroot)
	testtool.RunOstree(t, "pull-local", "--repo="+filepath.Join(sysroot, "ostree/repo"), e.repoPath, res.MergeCommit)
	deployed := []string{testtool.AdminDeploy(t, sysroot, "os", res.MergeCommit)}
	data, err := os.ReadFile(filepath.Join(deployed[0], "usr/bin/added"))
	require.NoError(t, err)
	assert.Equal(t, "#!/bin/sh\n", string(data))
	data, err = os.ReadFile(filepath.Join(deployed[0], "etc/added.conf"))
	require.NoError(t, err)
	assert.Equal(t, "key=value\n", string(data))
	assert.NoFileExists(t, filepath.Join(deployed[0], "usr/bin/gzip"))
}

// lsLines maps each path of an `ostree ls -R -X` listing to its line.
func lsLines(listing string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(listing), "\n") {
		// MODE UID GID SIZE { XATTRS } PATH [-> TARGET]
		if i := strings.LastIndex(line, "} "); i >= 0 {
			m[strings.Fields(line[i+2:])[0]] = line
		}
	}
	return m
}

// TestPullPreparedEncapsulated: the mission's loop with encapsulated
// images: v1 pulled, v2 (one chunk changed) prepared, pulled exactly,
// fetching only the layers v1 lacks; the new merge commit is v2's tree.
func TestPullPreparedEncapsulated(t *testing.T) {
	testtool.Ostree(t)
	src := newOSSource(t)
	v1 := src.image(src.commit("42.1"))
	c2 := src.commit("42.2", func(s *updatecachetest.CommitSpec) {
		s.Entries = append(s.Entries, updatecachetest.CommitEntry{Path: "usr/bin/bash2", Mode: 0o755, Content: []byte("new shell")})
	})
	v2 := src.image(c2)
	e := envInMode(t, updatecachetest.ModeBareUser)
	e.push(v1)
	_, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	e.push(v2)
	res := e.mustPrepare()
	require.Equal(t, updatecache.UpdateCached, res.Outcome)
	e.reg.Reset()
	pulled, err := updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	var changed int
	for i := range v2.Layers {
		if v2.Layers[i].Digest != v1.Layers[i].Digest {
			changed++
			assert.Equal(t, 1, e.reg.Counts().BlobGETs(v2.Layers[i].Digest))
		} else {
			assert.Zero(t, e.reg.Counts().BlobGETs(v2.Layers[i].Digest), "layer %d is reused", i)
		}
	}
	assert.Equal(t, changed, pulled.LayersFetched)
	assert.Equal(t, ls(t, src.repo, c2), ls(t, e.repoPath, pulled.MergeCommit))
	testtool.RunOstree(t, "fsck", "--repo="+e.repoPath)
}

// TestConfigOnlyUpdateOfEncapsulated: the same layers with a new config
// (a label changed) in a repository whose layers are all imported: the
// update reuses every layer and the image ref moves to the commit's tree,
// not to a tree of the object sets' checksum-named files.
func TestConfigOnlyUpdateOfEncapsulated(t *testing.T) {
	testtool.Ostree(t)
	src := newOSSource(t)
	commit := src.commit("42.1")
	v1 := src.image(commit)
	e := envInMode(t, updatecachetest.ModeBareUser)
	e.push(v1)
	_, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	v1b := withConfig(t, v1, func(c map[string]any) {
		c["config"].(map[string]any)["Labels"].(map[string]any)["rebuilt"] = "yes"
	})
	e.push(v1b)
	require.Equal(t, updatecache.UpdateCached, e.mustPrepare().Outcome)
	e.reg.Reset()
	pulled, err := updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	assert.Zero(t, pulled.LayersFetched)
	assert.Equal(t, len(v1.Layers), pulled.LayersReused)
	assert.Equal(t, ls(t, src.repo, commit), ls(t, e.repoPath, pulled.MergeCommit))
}

// TestEncapsulatedBlobRefsOfTheWrongKind: blob refs that do not hold what
// their layer's kind makes are not trusted: a chunk's ref naming a plain
// layer commit, and the commit layer's ref naming an incomplete commit, are
// imported again, and the pull writes the image's tree.
func TestEncapsulatedBlobRefsOfTheWrongKind(t *testing.T) {
	testtool.Ostree(t)
	src := newOSSource(t)
	commit := src.commit("42.1")
	img := src.image(commit)
	e := envInMode(t, updatecachetest.ModeBareUser)
	e.push(img)
	_, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	r, err := ostree.Open(e.repoPath)
	require.NoError(t, err)
	imageRef, err := ostree.ImageRefName(e.ref)
	require.NoError(t, err)
	require.NoError(t, r.DeleteRef(e.ctx, imageRef))

	// The first chunk's ref now names a plain layer's commit.
	plain := image(t, "plain")
	e.reg.Reset()
	_, err = e.reg.Push(e.ctx, "os/plain", "stable", plain)
	require.NoError(t, err)
	_, err = updatecache.Pull(e.ctx, e.repo, e.reg.Ref("os/plain", "stable"), e.pullOptions())
	require.NoError(t, err)
	plainCommit, err := r.ResolveRef(mustBlobRef(t, plain.Layers[0].Digest))
	require.NoError(t, err)
	require.NoError(t, r.SetRef(e.ctx, mustBlobRef(t, img.Layers[1].Digest), plainCommit))
	// The commit layer's ref names the commit, but one of its objects is gone.
	base, err := r.ReadCommit(commit)
	require.NoError(t, err)
	require.NoError(t, os.Remove(r.ObjectPath(base.RootMeta, ostree.ObjectDirMeta)))

	e.reg.Reset()
	res, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	assert.Equal(t, 1, e.reg.Counts().BlobGETs(img.Layers[0].Digest), "the commit layer imported again")
	assert.Equal(t, 1, e.reg.Counts().BlobGETs(img.Layers[1].Digest), "the chunk imported again")
	assert.Equal(t, ls(t, src.repo, commit), ls(t, e.repoPath, res.MergeCommit))
	testtool.RunOstree(t, "fsck", "--repo="+e.repoPath)
}

func mustBlobRef(t *testing.T, d digest.Digest) string {
	ref, err := ostree.BlobRefName(d.String())
	require.NoError(t, err)
	return ref
}

// TestPullEncapsulatedRefused: an image whose commit is not the one its
// label names, or whose layout cannot be imported exactly, is refused with
// a typed error; the image ref is not written and no blob ref names the
// commit layer.
func TestPullEncapsulatedRefused(t *testing.T) {
	testtool.Ostree(t)
	src := newOSSource(t)
	commit := src.commit("42.1")
	other := src.commit("42.2")
	img := src.image(commit)
	label := func(key, value string) func(map[string]any) {
		return func(c map[string]any) { c["config"].(map[string]any)["Labels"].(map[string]any)[key] = value }
	}
	for _, tt := range []struct {
		name      string
		edit      func(map[string]any)
		want      error
		downloads bool
	}{
		{"another commit's label", label(updatecachetest.CommitLabel, other), updatecache.ErrInvalidLayer, true},
		{"no commit label", label(updatecachetest.CommitLabel, ""), updatecache.ErrUnsupportedImage, false},
		{"final diff_id of no layer", label(updatecachetest.FinalDiffIDLabel, digest.FromString("none").String()), updatecache.ErrUnsupportedImage, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := envInMode(t, updatecachetest.ModeBareUser)
			bad := withConfig(t, img, tt.edit)
			e.push(bad)
			e.reg.Reset()
			_, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
			require.ErrorIs(t, err, tt.want)
			r, err := ostree.Open(e.repoPath)
			require.NoError(t, err)
			refs, err := r.ListRefs("")
			require.NoError(t, err)
			imageRef, _ := ostree.ImageRefName(e.ref)
			assert.NotContains(t, refs, imageRef)
			assert.NotContains(t, refs, mustBlobRef(t, img.Layers[0].Digest))
			if !tt.downloads {
				assert.Empty(t, refs, "nothing imported")
				c := e.reg.Counts()
				assert.Equal(t, 1, c.BlobGET, "the config alone: %s", c)
			}
			testtool.RunOstree(t, "fsck", "--repo="+e.repoPath)
		})
	}
}

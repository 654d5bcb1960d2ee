package updatecache_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// debianPolicy is Debian's reference policy (selinux-policy-default).
const debianPolicy = "/etc/selinux/default"

// policyLayer ships Debian's reference policy under etc/selinux, as a
// Fedora-family image ships its own (the text file contexts, not the
// compiled .bin files).
func policyLayer(t *testing.T) updatecachetest.Layer {
	testtool.NeedFile(t, filepath.Join(debianPolicy, "contexts/files/file_contexts"), "selinux-policy-default")
	files := []updatecachetest.File{{Path: "etc/selinux/config", Content: []byte("SELINUX=enforcing\nSELINUXTYPE=default\n")}}
	err := filepath.WalkDir(debianPolicy, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasSuffix(p, ".bin") {
			return err
		}
		data, err := os.ReadFile(p)
		files = append(files, updatecachetest.File{Path: "etc/selinux/default" + strings.TrimPrefix(p, debianPolicy), Content: data})
		return err
	})
	require.NoError(t, err)
	return updatecachetest.Layer{Files: files}
}

// TestPullLabelsFromTheImagesPolicy: a plain image that ships a policy is
// pulled labelled with it, as ostree-ext labels it: the merge commit's
// tree is what libostree makes of the unlabelled tree with that policy
// (`ostree commit --tree=ref= --selinux-policy=`); NoSELinux pulls it
// unlabelled; an image without a policy gets no labels.
func TestPullLabelsFromTheImagesPolicy(t *testing.T) {
	testtool.Ostree(t)
	e := newEnv(t)
	img := image(t, "1", func(s *updatecachetest.ImageSpec) {
		s.Layers = append([]updatecachetest.Layer{policyLayer(t)}, s.Layers...)
	})
	e.push(img)

	o := e.pullOptions()
	o.NoSELinux = true
	unlabelled, err := updatecache.Pull(e.ctx, e.repo, e.reg.Ref("os/base", img.ManifestDigest.String()), o)
	require.NoError(t, err)
	assert.NotContains(t, ls(t, e.repoPath, unlabelled.MergeCommit), "security.selinux")

	labelled, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
	require.NoError(t, err)
	listing := ls(t, e.repoPath, labelled.MergeCommit)
	assert.Contains(t, lsLines(listing)["/usr/bin/sh"], "system_u:object_r:shell_exec_t:s0", "a shell is labelled as one")
	testtool.RunOstree(t, "fsck", "--repo="+e.repoPath)

	// libostree labels the unlabelled merge commit's tree with the policy
	// it ships: the same root tree.
	checkout := filepath.Join(t.TempDir(), "co")
	require.NoError(t, os.MkdirAll(filepath.Join(checkout, "usr/etc"), 0o755))
	testtool.RunOstree(t, "checkout", "-U", "--repo="+e.repoPath, "--subpath=/usr/etc/selinux", unlabelled.MergeCommit, filepath.Join(checkout, "usr/etc/selinux"))
	theirs := strings.TrimSpace(testtool.RunOstree(t, "commit", "--repo="+e.repoPath, "--orphan", "--no-bindings",
		"--tree=ref="+unlabelled.MergeCommit, "--selinux-policy="+checkout))
	assert.Equal(t, lsTreeChecksum(t, e.repoPath, theirs), lsTreeChecksum(t, e.repoPath, labelled.MergeCommit))

	plain := newEnv(t)
	plain.push(image(t, "2"))
	res, err := updatecache.Pull(plain.ctx, plain.repo, plain.ref, plain.pullOptions())
	require.NoError(t, err)
	assert.NotContains(t, ls(t, plain.repoPath, res.MergeCommit), "security.selinux", "no policy, no labels")
}

// lsTreeChecksum is the root dirtree checksum of rev, as `ostree ls -C -d` prints it.
func lsTreeChecksum(t *testing.T, repo, rev string) string {
	return strings.Fields(testtool.RunOstree(t, "ls", "--repo="+repo, "-C", "-d", rev, "/"))[4]
}

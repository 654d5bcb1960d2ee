package updatecache_test

import (
	"context"
	"net/url"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// newRealEnv is newEnv against the real registry server (distribution's
// docker-registry), behind the counting proxy so requests can be asserted.
func newRealEnv(t *testing.T) (e *env, stop func()) {
	t.Helper()
	host, stop := testtool.StartRegistry(t)
	e = newEnv(t)
	e.reg = updatecachetest.NewProxy(t, &url.URL{Scheme: "http", Host: host})
	e.ref = e.reg.Ref("os/base", "stable")
	return e, stop
}

// checkCounts are the requests one update check made, by kind.
type checkCounts struct{ manifestHEAD, manifestGET, blobGET int }

func countsOf(c updatecachetest.Counts) checkCounts {
	return checkCounts{c.ManifestHEAD, c.ManifestGET, c.BlobGET}
}

// TestRealRegistryCheckFlow runs the mission against the real registry:
// no update, a new update, the same update again, the update read with the
// registry stopped, and the deleted manifest. The request counts asserted
// here are the ones reported for the project; skopeo inspect's on the same
// registry are logged beside them when skopeo is installed.
func TestRealRegistryCheckFlow(t *testing.T) {
	e, stopRegistry := newRealEnv(t)
	v1, v2 := image(t, "1"), image(t, "2")
	e.push(v1)
	commit := e.deploy(v1, "")

	check := func(name string) (*updatecache.PrepareResult, checkCounts) {
		e.reg.Reset()
		res := e.mustPrepare()
		c := countsOf(e.reg.Counts())
		t.Logf("%s: updatecache check: %d manifest HEAD, %d manifest GET, %d blob GET (total with pings %d)",
			name, c.manifestHEAD, c.manifestGET, c.blobGET, e.reg.Counts().Total)
		logSkopeo(t, e, name)
		return res, c
	}

	res, c := check("no update")
	assert.False(t, res.UpdateAvailable())
	assert.Equal(t, checkCounts{1, 0, 0}, c)

	e.push(v2)
	res, c = check("new update")
	assert.True(t, res.Persisted(), res.Reason)
	assert.Equal(t, v2.ManifestDigest, res.CachedUpdate.ManifestDigest)
	assert.Equal(t, checkCounts{1, 1, 1}, c)
	assert.Equal(t, 1, e.reg.Counts().BlobGETs(v2.ConfigDigest()))

	before := e.stat(e.commitmetaPath(commit))
	res, c = check("repeated check")
	assert.True(t, res.UpdateAvailable())
	assert.Equal(t, checkCounts{1, 0, 0}, c)
	assert.Equal(t, before, e.stat(e.commitmetaPath(commit)))

	stopRegistry()
	u, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
	require.NoError(t, err)
	assert.Equal(t, v2.ManifestDigest, u.ManifestDigest)
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	_, err = updatecache.Prepare(ctx, e.repo, e.ref, e.options())
	assert.ErrorIs(t, err, updatecache.ErrUnavailable)
	after, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
	require.NoError(t, err)
	assert.Equal(t, u, after, "a failed check keeps the cache")
}

// TestRealRegistryDeletedManifest: the registry deletes the tag's manifest;
// the check fails with ErrManifestUnknown, and the update cached for the tag
// earlier, no longer what the tag names, is removed rather than shown as
// current.
func TestRealRegistryDeletedManifest(t *testing.T) {
	e, _ := newRealEnv(t)
	v1, v2, v3 := image(t, "1"), image(t, "2"), image(t, "3")
	e.deploy(v1, "")
	e.push(v2)
	require.True(t, e.mustPrepare().Persisted())
	d3 := e.push(v3)
	require.NoError(t, e.reg.DeleteManifest(e.ctx, "os/base", d3))

	_, err := e.prepare()
	assert.ErrorIs(t, err, updatecache.ErrManifestUnknown)
	u, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
	require.NoError(t, err)
	assert.Nil(t, u, "the stale cached update is gone")
}

// logSkopeo runs skopeo inspect on the same image through the same counting
// proxy and logs what it cost, for the side-by-side numbers.
func logSkopeo(t *testing.T, e *env, name string) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		return
	}
	e.reg.Reset()
	out, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "--authfile", e.sys.AuthFilePath,
		"--registries-conf", e.sys.SystemRegistriesConfPath, "docker://"+e.reg.Host()+"/os/base:stable").CombinedOutput()
	if err != nil {
		t.Logf("skopeo inspect failed: %v\n%s", err, out)
		return
	}
	c := countsOf(e.reg.Counts())
	t.Logf("%s: skopeo inspect:    %d manifest HEAD, %d manifest GET, %d blob GET (total with pings %d)",
		name, c.manifestHEAD, c.manifestGET, c.blobGET, e.reg.Counts().Total)
}

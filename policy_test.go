//go:build containers_image_openpgp

package updatecache_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache"
)

func writePolicy(t *testing.T, defaultRequirement string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"default":[{"type":"`+defaultRequirement+`"}]}`), 0o644))
	return path
}

// TestSignatureVerdictIsCached: with VerifySignatures the check records the
// policy's verdict with the cached update, and it reads back offline.
func TestSignatureVerdictIsCached(t *testing.T) {
	for _, tt := range []struct {
		requirement string
		allowed     bool
	}{{"insecureAcceptAnything", true}, {"reject", false}} {
		t.Run(tt.requirement, func(t *testing.T) {
			e := newEnv(t)
			e.deploy(image(t, "1"), "")
			e.push(image(t, "2"))
			opts := e.options()
			opts.VerifySignatures = true
			opts.SignaturePolicyPath = writePolicy(t, tt.requirement)
			res, err := updatecache.Prepare(e.ctx, e.repo, e.ref, opts)
			require.NoError(t, err)
			require.True(t, res.Persisted())
			require.NotNil(t, res.CachedUpdate.Signature)
			assert.Equal(t, tt.allowed, res.CachedUpdate.Signature.Allowed)
			if !tt.allowed {
				assert.NotEmpty(t, res.CachedUpdate.Signature.Reason)
			}
			u, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
			require.NoError(t, err)
			assert.Equal(t, res.CachedUpdate.Signature, u.Signature)
		})
	}
}

// TestPullEnforcesThePolicy: a rejected image is not imported at all.
func TestPullEnforcesThePolicy(t *testing.T) {
	e := newEnv(t)
	e.push(image(t, "1"))
	before := snapshotTree(t, e.repoPath)
	opts := e.pullOptions()
	opts.VerifySignatures = true
	opts.SignaturePolicyPath = writePolicy(t, "reject")
	_, err := updatecache.Pull(e.ctx, e.repo, e.ref, opts)
	assert.ErrorIs(t, err, updatecache.ErrPolicyRejected)
	assert.Equal(t, before, snapshotTree(t, e.repoPath))
	assert.Zero(t, e.reg.Counts().BlobGET-1, "only the config was read: %s", e.reg.Counts())

	// ostree-image-signed: turns verification on by itself.
	opts.VerifySignatures = false
	_, err = updatecache.Pull(e.ctx, e.repo, "ostree-image-signed:"+e.ref, opts)
	assert.ErrorIs(t, err, updatecache.ErrPolicyRejected)

	opts.SignaturePolicyPath = writePolicy(t, "insecureAcceptAnything")
	_, err = updatecache.Pull(e.ctx, e.repo, "ostree-image-signed:"+e.ref, opts)
	require.NoError(t, err)
}

// TestSignatureVerdictFollowsThePolicy: a check with verification decides
// with the policy as it is now, even when the tag did not move: a policy
// changed to reject the cached update is shown and stored as rejecting it.
func TestSignatureVerdictFollowsThePolicy(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, e *env) {
		e.deploy(image(t, "1"), "")
		e.push(image(t, "2"))
		opts := e.options()
		opts.VerifySignatures = true
		policy := writePolicy(t, "insecureAcceptAnything")
		opts.SignaturePolicyPath = policy
		res, err := updatecache.Prepare(e.ctx, e.repo, e.ref, opts)
		require.NoError(t, err)
		require.True(t, res.CachedUpdate.Signature.Allowed)

		require.NoError(t, os.WriteFile(policy, []byte(`{"default":[{"type":"reject"}]}`), 0o644))
		e.reg.Reset()
		res, err = updatecache.Prepare(e.ctx, e.repo, e.ref, opts)
		require.NoError(t, err)
		assert.Equal(t, updatecache.UpdateCached, res.Outcome)
		require.NotNil(t, res.CachedUpdate.Signature)
		assert.False(t, res.CachedUpdate.Signature.Allowed, "the current policy rejects it")
		assert.Equal(t, 1, e.reg.Counts().ManifestHEAD, e.reg.Counts().String())
		assert.Zero(t, e.reg.Counts().BlobGET, "no config or layer fetched: %s", e.reg.Counts())
		u, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
		require.NoError(t, err)
		assert.False(t, u.Signature.Allowed, "the new verdict is stored")

		// Without verification asked for, nothing is evaluated: a HEAD alone.
		e.reg.Reset()
		_, err = updatecache.Prepare(e.ctx, e.repo, e.ref, e.options())
		require.NoError(t, err)
		assert.Equal(t, 2, e.reg.Counts().Total, "ping and HEAD: %s", e.reg.Counts())
	})
}

//go:build !containers_image_openpgp

package updatecache_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/osimage/updatecache"
)

// Without the containers_image_openpgp tag, asking for signature
// verification fails clearly instead of passing unchecked.
func TestSignaturesNeedTheBuildTag(t *testing.T) {
	e := newEnv(t)
	e.deploy(image(t, "1"), "")
	e.push(image(t, "2"))
	opts := e.options()
	opts.VerifySignatures = true
	_, err := updatecache.Prepare(e.ctx, e.repo, e.ref, opts)
	assert.ErrorIs(t, err, updatecache.ErrPolicyUnsupported)
	u, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
	assert.NoError(t, err)
	assert.Nil(t, u, "nothing cached unverified")
}

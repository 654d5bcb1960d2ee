//go:build !containers_image_openpgp

package registry

import "context"

// policySupported reports whether CheckPolicy can evaluate policies.
const policySupported = false

// CheckPolicy would evaluate the signature policy for img, but this build
// lacks the containers_image_openpgp tag that containers/image needs to
// verify signatures without cgo: it always fails with ErrPolicyUnsupported.
// Build with -tags containers_image_openpgp for the real evaluation.
func (s *Source) CheckPolicy(ctx context.Context, img *Image, policyPath string) (Verdict, error) {
	return Verdict{}, ErrPolicyUnsupported
}

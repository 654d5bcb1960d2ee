//go:build containers_image_openpgp

package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// policySupported reports whether CheckPolicy can evaluate policies.
const policySupported = true

// CheckPolicy evaluates the signature policy for img, which must come from
// this Source's Image, as podman or skopeo would before running it: the
// policy's scopes and signedIdentity are matched against the reference as
// given to Open (a tag stays a tag), and signatures are those of the
// per-platform manifest, from wherever the registries.d configuration says
// (lookaside storage, the registry's signature extension, sigstore
// attachments). The manifest is not fetched again: the policy sees
// img.Manifest, checked against img.ManifestDigest.
//
// policyPath names a policy.json; "" means the SystemContext's
// SignaturePolicyPath, else the system default (/etc/containers/policy.json
// or its per-user and environment overrides). A missing or invalid policy is
// ErrPolicyInvalid. A rejection is not an error: the Verdict says why (no
// signature, a signature by another key or for another identity, a key file
// that cannot be read), and Verdict.Err turns it into one. An error means
// nothing was decided: the signatures could not be fetched (classified like
// every registry failure) or ctx ended.
func (s *Source) CheckPolicy(ctx context.Context, img *Image, policyPath string) (Verdict, error) {
	if img == nil || img.TopDigest != s.top {
		return Verdict{}, fmt.Errorf("registry: CheckPolicy needs an Image read from the source pinned to %s", s.top)
	}
	if err := img.ManifestDigest.Validate(); err != nil {
		return Verdict{}, wrapf(ErrMalformed, err, "manifest digest %q", img.ManifestDigest)
	}
	if err := verifyBlob(img.Manifest, img.ManifestDigest, -1, "manifest"); err != nil {
		return Verdict{}, err
	}
	policy, err := s.c.loadPolicy(policyPath)
	if err != nil {
		return Verdict{}, err
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return Verdict{}, wrapf(ErrPolicyInvalid, err, "policy")
	}
	defer pc.Destroy()

	var instance *digest.Digest
	if d := img.ManifestDigest; d != img.TopDigest {
		instance = &d
	}
	unparsed := &fetchedImage{
		UnparsedImage: image.UnparsedInstance(s.src, instance),
		ref:           s.ref,
		manifest:      img.Manifest,
		mediaType:     img.ManifestMediaType,
	}
	allowed, err := pc.IsRunningImageAllowed(ctx, unparsed)
	switch {
	case err == nil && allowed:
		return Verdict{Allowed: true}, nil
	case err == nil:
		// containers/image promises a reason with every rejection; be
		// strict if it ever breaks that promise.
		return Verdict{Reason: "rejected by the signature policy"}, nil
	case isRejection(err):
		return Verdict{Reason: err.Error()}, nil
	}
	return Verdict{}, classify(err, "evaluating the signature policy")
}

// isRejection tells a rejection from a failure to evaluate. containers/image
// reports both as errors of IsRunningImageAllowed, and a lone bad signature
// comes back as whatever its check returned (a wrong key is an
// InvalidSignatureError, an unreadable key file an *fs.PathError). So
// everything is a rejection except what kept the signatures from being read:
// the network or registry failing (our sentinels) and the caller giving up.
func isRejection(err error) bool {
	if _, ok := errors.AsType[signature.PolicyRequirementError](err); ok {
		return true
	}
	if _, ok := errors.AsType[signature.InvalidSignatureError](err); ok {
		return true
	}
	return !hasSentinel(err) && sentinelFor(err) == nil && !errors.Is(err, context.Canceled)
}

// loadPolicy reads the policy at path, or the default one for "".
func (c *Client) loadPolicy(path string) (*signature.Policy, error) {
	var (
		policy *signature.Policy
		err    error
	)
	if path != "" {
		policy, err = signature.NewPolicyFromFile(path)
	} else {
		policy, err = signature.DefaultPolicy(c.sys)
	}
	if err != nil {
		return nil, wrapf(ErrPolicyInvalid, err, "loading the signature policy")
	}
	return policy, nil
}

// fetchedImage is the image the policy is evaluated for. Its manifest is the
// one already fetched and verified; everything else, signatures of every
// format included, comes from containers/image's own UnparsedImage over the
// open source. Embedding that type (rather than implementing the public
// types.UnparsedImage alone) matters: containers/image only hands sigstore
// signatures to images that also have its internal UntrustedSignatures
// method, which the embedding provides.
type fetchedImage struct {
	*image.UnparsedImage
	ref       types.ImageReference
	manifest  []byte
	mediaType string
}

// Reference is the reference as the user gave it, so that policy scopes
// and signed identities match a tag as podman would match it.
func (f *fetchedImage) Reference() types.ImageReference { return f.ref }

// Manifest returns the manifest already fetched, without a request.
func (f *fetchedImage) Manifest(context.Context) ([]byte, string, error) {
	return f.manifest, f.mediaType, nil
}

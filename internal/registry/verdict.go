package registry

import "fmt"

// Verdict is the outcome of evaluating the signature policy for an image.
type Verdict struct {
	// Allowed reports whether the policy accepts the image.
	Allowed bool
	// Reason says why the policy rejects the image, in containers/image's
	// words (e.g. "A signature was required, but no signature exists");
	// empty when Allowed.
	Reason string
}

// Err returns nil when v allows the image, else an error wrapping
// ErrPolicyRejected that carries the reason, for callers that enforce the
// policy.
func (v Verdict) Err() error {
	if v.Allowed {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrPolicyRejected, v.Reason)
}

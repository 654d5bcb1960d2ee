package updatecache

import (
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
	// The transports an image reference may name. Each registers itself;
	// containers-storage is left out, as it needs c/storage's graph drivers.
	_ "go.podman.io/image/v5/directory"
	_ "go.podman.io/image/v5/docker"
	_ "go.podman.io/image/v5/docker/archive"
	_ "go.podman.io/image/v5/oci/archive"
	_ "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/registry"
)

// imageRef is a parsed image reference: the string ostree-ext escapes into
// the image's ref, and the containers/image reference used to reach it.
type imageRef struct {
	name   string // transport:reference, e.g. docker://quay.io/fedora/fedora-coreos:stable
	ref    types.ImageReference
	signed bool // given as ostree-image-signed:REF: signatures must be verified
}

// ostree-ext's prefixes for references that also carry a signature policy;
// the image ref it writes is escaped from what follows them.
var ostreeRefPrefixes = []struct {
	prefix, replacement string
	signed              bool
}{
	{"ostree-unverified-registry:", "docker://", false},
	{"ostree-unverified-image:", "", false},
	{"ostree-image-signed:", "", true},
}

// parseImageRef parses a containers-transports reference such as
// docker://quay.io/fedora/fedora-coreos:stable or oci:/path:tag. The
// ostree-ext forms ostree-unverified-registry:NAME, ostree-unverified-image:REF
// and ostree-image-signed:REF are accepted and reduced to the plain reference,
// which is what names the image in the repository; ostree-image-signed also
// turns signature verification on.
func parseImageRef(s string) (*imageRef, error) {
	name, signed := s, false
	for _, p := range ostreeRefPrefixes {
		if rest, ok := strings.CutPrefix(s, p.prefix); ok {
			name, signed = p.replacement+rest, p.signed
			break
		}
	}
	transportName, within, ok := strings.Cut(name, ":")
	if !ok {
		return nil, fmt.Errorf("%w: %q: want TRANSPORT:NAME, e.g. docker://quay.io/fedora/fedora-coreos:stable", ErrInvalidReference, s)
	}
	transport := transports.Get(transportName)
	if transport == nil {
		return nil, fmt.Errorf("%w: %q: unsupported transport %q (supported: %s)", ErrInvalidReference, s, transportName, strings.Join(transports.ListNames(), ", "))
	}
	ref, err := transport.ParseReference(within)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrInvalidReference, s, err)
	}
	return &imageRef{name: name, ref: ref, signed: signed}, nil
}

// refName is the OSTree ref of the image's merge commit.
func (ir *imageRef) refName() (string, error) {
	n, err := ostree.ImageRefName(ir.name)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidReference, ir.name, err)
	}
	return n, nil
}

// pinnedDigest is the digest the reference is pinned to (docker://…@sha256:…), or "".
func (ir *imageRef) pinnedDigest() digest.Digest { return registry.PinnedDigest(ir.ref) }

// pinnedTo returns the reference pinned to d; only registry references can be.
func (ir *imageRef) pinnedTo(d digest.Digest) (*imageRef, error) {
	ref, err := registry.Pin(ir.ref, d)
	if err != nil {
		return nil, fmt.Errorf("%w: %s@%s: %v", ErrInvalidReference, ir.name, d, err)
	}
	return &imageRef{name: transports.ImageName(ref), ref: ref, signed: ir.signed}, nil
}

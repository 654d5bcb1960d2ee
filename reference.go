package updatecache

import (
	"errors"
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
	// remote is the OSTree remote whose GPG keys must verify the image's
	// commit (ostree-remote-image:REMOTE:REF, ostree-remote-registry:REMOTE:NAME).
	remote string
}

// parseImageRef parses a containers-transports reference such as
// docker://quay.io/fedora/fedora-coreos:stable or oci:/path:tag, and the
// forms ostree-ext and rpm-ostree write, with their meaning there:
//
//	registry:NAME                           docker://NAME
//	ostree-unverified-registry:NAME         docker://NAME
//	ostree-unverified-image:REF             REF
//	ostree-image-signed:REF                 REF, signatures verified by policy.json
//	ostree-remote-registry:REMOTE:NAME      docker://NAME, commit verified by REMOTE's keys
//	ostree-remote-image:REMOTE:REF          REF, commit verified by REMOTE's keys
//
// The plain reference is what names the image in the repository.
func parseImageRef(s string) (*imageRef, error) {
	ir := &imageRef{}
	name := s
	switch scheme, rest, _ := strings.Cut(s, ":"); scheme {
	case "ostree-unverified-registry":
		name = "registry:" + rest
	case "ostree-unverified-image":
		name = rest
	case "ostree-image-signed":
		name, ir.signed = rest, true
	case "ostree-remote-registry", "ostree-remote-image":
		remote, ref, ok := strings.Cut(rest, ":")
		if !ok || remote == "" {
			return nil, fmt.Errorf("%w: %q: want %s:REMOTE:IMAGE", ErrInvalidReference, s, scheme)
		}
		ir.remote, name = remote, ref
		if scheme == "ostree-remote-registry" {
			name = "registry:" + ref
		}
	}
	// registry:NAME is ostree-ext's spelling of docker://NAME.
	if rest, ok := strings.CutPrefix(name, "registry:"); ok {
		name = "docker://" + rest
	}
	transportName, within, ok := strings.Cut(name, ":")
	if !ok {
		return nil, fmt.Errorf("%w: %q: want TRANSPORT:NAME, e.g. docker://%s", ErrInvalidReference, s, s)
	}
	transport := transports.Get(transportName)
	if transport == nil {
		if strings.ContainsAny(transportName, "./") {
			return nil, fmt.Errorf("%w: %q has no transport; for a registry, write docker://%s", ErrInvalidReference, s, name)
		}
		return nil, fmt.Errorf("%w: %q: unsupported transport %q (supported: %s)", ErrInvalidReference, s, transportName, strings.Join(transports.ListNames(), ", "))
	}
	ref, err := transport.ParseReference(within)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrInvalidReference, s, err)
	}
	ir.name, ir.ref = name, ref
	return ir, nil
}

// overNetwork reports whether the image is reached over the network
// (docker://); the other transports read local files.
func (ir *imageRef) overNetwork() bool { return ir.ref.Transport().Name() == "docker" }

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

// errCannotPin: the transport has no way to name a digest (archives, dir:).
var errCannotPin = errors.New("the transport cannot be pinned to a digest")

// pinnedTo returns the reference pinned to d: registry references by
// digest, oci: layouts by their index entry; errCannotPin for the others.
func (ir *imageRef) pinnedTo(d digest.Digest) (*imageRef, error) {
	if ir.overNetwork() || ir.ref.Transport().Name() == "oci" {
		ref, err := registry.Pin(ir.ref, d)
		if errors.Is(err, registry.ErrInvalidReference) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidReference, err)
		}
		if err != nil {
			return nil, fmt.Errorf("pinning %s to %s: %w", ir.name, d, err)
		}
		return &imageRef{name: transports.ImageName(ref), ref: ref, signed: ir.signed}, nil
	}
	return nil, fmt.Errorf("%w: %s", errCannotPin, ir.name)
}

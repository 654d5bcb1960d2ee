// Package registry is the network side of update checks and pulls: it asks
// a container registry (or a local image layout) which digest a reference
// points to, fetches and verifies an image's manifest and config, streams
// its layer blobs verifying them as they go, and evaluates the signature
// policy (policy.json) for it. It knows nothing of OSTree.
//
// The update check is a Check: Client.Check asks what the reference points
// to (one manifest HEAD for a tag); if that digest is new, Check.Image
// fetches the manifest by exactly that digest (so a tag that moves between
// the two requests cannot mix images), resolving an index to one
// platform's manifest, and the config, over the same registry session and
// from the same pull source. The session is a small distribution-API
// client of this package that takes all its configuration from
// containers/image (registries.conf, auth files, certificates, TLS), so it
// reaches registries the way a pull does. A pull opens a Source pinned to
// one digest and reads the image and then its layers through one
// containers/image source. Every byte is checked against the digest and
// size that named it, every manifest and config is capped before it is
// read, and every failure is reported with one of the sentinel errors of
// this package.
package registry

import (
	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"
)

// DefaultMaxManifestSize is the default cap on a manifest or index; it is
// also the limit containers/image applies to registry manifests, so a larger
// Options.MaxManifestSize takes effect for docker:// references in a Check
// but not through Open.
const DefaultMaxManifestSize = 4 << 20

// DefaultMaxConfigSize is the default cap on an image config.
const DefaultMaxConfigSize = 4 << 20

// Options configure a Client.
type Options struct {
	// SystemContext carries auth files, TLS settings
	// (DockerInsecureSkipTLSVerify), registries.conf and the
	// OS/Architecture/VariantChoice used to pick an index instance. nil
	// means the defaults of containers/image.
	SystemContext *types.SystemContext
	// Platform, if set, overrides the platform choices of SystemContext;
	// with neither, the running platform is wanted.
	Platform *imgspecv1.Platform
	// MaxManifestSize caps each manifest or index; 0 means DefaultMaxManifestSize.
	MaxManifestSize int64
	// MaxConfigSize caps the config blob; 0 means DefaultMaxConfigSize.
	MaxConfigSize int64
}

// Client checks and fetches images. It holds no connections between
// calls and is safe for concurrent use.
type Client struct {
	sys         *types.SystemContext
	maxManifest int64
	maxConfig   int64
}

// New returns a Client for opts.
func New(opts Options) *Client {
	sys := &types.SystemContext{}
	if opts.SystemContext != nil {
		copied := *opts.SystemContext
		sys = &copied
	}
	if p := opts.Platform; p != nil {
		sys.OSChoice, sys.ArchitectureChoice, sys.VariantChoice = p.OS, p.Architecture, p.Variant
	}
	c := &Client{sys: sys, maxManifest: opts.MaxManifestSize, maxConfig: opts.MaxConfigSize}
	if c.maxManifest <= 0 {
		c.maxManifest = DefaultMaxManifestSize
	}
	if c.maxConfig <= 0 {
		c.maxConfig = DefaultMaxConfigSize
	}
	return c
}

// Image is a fetched and verified image: its manifest and config as served;
// its layers are read with Source.Layer.
type Image struct {
	// Reference is the reference as given, transport:reference.
	Reference string
	// TopDigest and TopMediaType describe what the reference points to:
	// an index or a manifest.
	TopDigest    digest.Digest
	TopMediaType string
	// ManifestDigest, ManifestMediaType and Manifest describe the
	// per-platform manifest (equal to the top for a single-platform image).
	ManifestDigest    digest.Digest
	ManifestMediaType string
	Manifest          []byte // exact bytes served
	// ConfigDigest and Config are the image config blob.
	ConfigDigest digest.Digest
	Config       []byte // exact bytes served
	// Layers are the manifest's layer descriptors (digests validated).
	Layers []imgspecv1.Descriptor
	// Platform is the chosen instance's, from its index entry or else
	// from the config.
	Platform imgspecv1.Platform
}

// isDocker reports whether ref is a registry reference (docker://).
func isDocker(ref types.ImageReference) bool {
	return ref.Transport().Name() == docker.Transport.Name()
}

// PinnedDigest returns the digest a docker:// reference is pinned to
// (name@digest), or "".
func PinnedDigest(ref types.ImageReference) digest.Digest {
	if c, ok := ref.DockerReference().(reference.Canonical); ok && isDocker(ref) {
		return c.Digest()
	}
	return ""
}

// Pin returns ref pinned to d: for docker:// the same repository at
// exactly d, whatever tag or digest ref named; for an oci: layout the entry
// of its index.json whose digest is d, by position (ErrManifestUnknown when
// the layout no longer holds it). Other transports cannot be pinned
// (ErrInvalidReference).
func Pin(ref types.ImageReference, d digest.Digest) (types.ImageReference, error) {
	name := transports.ImageName(ref)
	if err := d.Validate(); err != nil {
		return nil, wrapf(ErrInvalidReference, err, "pinning %s to %q", name, d)
	}
	if ref.Transport().Name() == layout.Transport.Name() {
		return pinLayout(ref, d)
	}
	if !isDocker(ref) {
		return nil, wrapf(ErrInvalidReference, nil, "%s: only docker:// and oci: references can be pinned to a digest", name)
	}
	pinned, err := reference.WithDigest(reference.TrimNamed(ref.DockerReference()), d)
	if err == nil {
		var pinnedRef types.ImageReference
		if pinnedRef, err = docker.NewReference(pinned); err == nil {
			return pinnedRef, nil
		}
	}
	return nil, wrapf(ErrInvalidReference, err, "pinning %s to %s", name, d)
}

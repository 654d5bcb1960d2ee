// Package registry is the network side of update checks and pulls: it asks
// a container registry (or a local image layout) which digest a reference
// points to, fetches and verifies an image's manifest and config, streams
// its layer blobs verifying them as they go, and evaluates the signature
// policy (policy.json) for it. It is built on containers/image and knows
// nothing of OSTree.
//
// The update check this serves is: Digest (one manifest HEAD for a tag);
// if that digest is new, Fetch by exactly that digest (so a tag that moves
// between the two requests cannot mix images), resolving an index to one
// platform's manifest and fetching the config blob. A pull opens a Source
// pinned to one digest and reads the image and then its layers through it,
// over one registry session. Every byte is checked against the digest and
// size that named it, and every failure is reported with one of the
// sentinel errors of this package.
package registry

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"
)

// DefaultMaxManifestSize is the default cap on a manifest or index; it is
// also the limit containers/image applies to registry manifests, so a larger
// Options.MaxManifestSize cannot take effect for docker:// references.
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
// (name@sha256:…), or "".
func PinnedDigest(ref types.ImageReference) digest.Digest {
	if c, ok := ref.DockerReference().(reference.Canonical); ok && isDocker(ref) {
		return c.Digest()
	}
	return ""
}

// Pin returns the docker:// reference ref names, pinned to d instead of its
// tag or digest. Other transports cannot be pinned.
func Pin(ref types.ImageReference, d digest.Digest) (types.ImageReference, error) {
	if !isDocker(ref) {
		return nil, fmt.Errorf("%w: only docker:// references can be pinned to a digest, not %s", ErrMalformed, transports.ImageName(ref))
	}
	canonical, err := reference.WithDigest(reference.TrimNamed(ref.DockerReference()), d)
	if err != nil {
		return nil, wrapf(ErrMalformed, err, "pinning %s to %s", transports.ImageName(ref), d)
	}
	return docker.NewReference(canonical)
}

// Digest returns the digest of what ref currently points to: for a
// docker:// tag one manifest HEAD; for a digest-pinned docker:// reference
// the pinned digest, without any request; for local transports (oci:,
// dir:, oci-archive:, …) the digest of the manifest read from disk.
func (c *Client) Digest(ctx context.Context, ref types.ImageReference) (digest.Digest, error) {
	if isDocker(ref) {
		if d := PinnedDigest(ref); d != "" {
			return d, nil
		}
		if err := c.checkConfig(ref); err != nil {
			return "", err
		}
		d, err := docker.GetDigest(ctx, c.sys, ref)
		if err != nil {
			return "", classify(err, "HEAD manifest")
		}
		return d, nil
	}
	src, err := ref.NewImageSource(ctx, c.sys)
	if err != nil {
		return "", classify(err, "opening the image")
	}
	defer src.Close()
	data, _, err := c.getManifest(ctx, src, nil)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(data), nil
}

// open returns an image source for ref, re-pinned to top for docker://.
func (c *Client) open(ctx context.Context, ref types.ImageReference, top digest.Digest) (types.ImageSource, error) {
	if top != "" && isDocker(ref) {
		pinned, err := Pin(ref, top)
		if err != nil {
			return nil, err
		}
		ref = pinned
	}
	if err := c.checkConfig(ref); err != nil {
		return nil, err
	}
	return ref.NewImageSource(ctx, c.sys)
}

// getManifest reads one manifest (instance == nil: the source's own) and
// enforces the size cap.
func (c *Client) getManifest(ctx context.Context, src types.ImageSource, instance *digest.Digest) ([]byte, string, error) {
	what := "GET manifest"
	if instance != nil {
		what += " " + instance.String()
	}
	data, mt, err := src.GetManifest(ctx, instance)
	if err != nil {
		return nil, "", classify(err, what)
	}
	if int64(len(data)) > c.maxManifest {
		return nil, "", wrapf(ErrTooLarge, nil, "%s: %d bytes, cap %d", what, len(data), c.maxManifest)
	}
	return data, mt, nil
}

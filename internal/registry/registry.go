// Package registry is the network side of update checks: it asks a container
// registry (or a local image layout) which digest a reference points to, and
// fetches and verifies an image's manifest and config, never its layers. It
// is built on containers/image and knows nothing of OSTree.
//
// The update check this serves is: Digest (one manifest HEAD for a tag);
// if that digest is new, Fetch by exactly that digest (so a tag that moves
// between the two requests cannot mix images), resolving an index to one
// platform's manifest and fetching the config blob. Every byte is checked
// against the digest and size that named it, and every failure is reported
// with one of the sentinel errors of this package.
package registry

import (
	"context"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
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

// Image is a fetched and verified image: its manifest and config as served,
// never its layers.
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

// pinnedDigest returns the digest a docker reference is pinned to, or "".
func pinnedDigest(ref types.ImageReference) digest.Digest {
	if c, ok := ref.DockerReference().(reference.Canonical); ok && isDocker(ref) {
		return c.Digest()
	}
	return ""
}

// Digest returns the digest of what ref currently points to: for a
// docker:// tag one manifest HEAD; for a digest-pinned docker:// reference
// the pinned digest, without any request; for local transports (oci:,
// dir:, oci-archive:, …) the digest of the manifest read from disk.
func (c *Client) Digest(ctx context.Context, ref types.ImageReference) (digest.Digest, error) {
	name := transports.ImageName(ref)
	if isDocker(ref) {
		if d := pinnedDigest(ref); d != "" {
			return d, nil
		}
		d, err := docker.GetDigest(ctx, c.sys, ref)
		if err != nil {
			return "", classify(err, "HEAD manifest "+name)
		}
		return d, nil
	}
	src, err := ref.NewImageSource(ctx, c.sys)
	if err != nil {
		return "", classify(err, "opening "+name)
	}
	defer src.Close()
	data, _, err := c.getManifest(ctx, src, nil, name)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(data), nil
}

// Fetch fetches and verifies the manifest and config of ref, not its
// layers. With top == "" it fetches whatever ref points to (one manifest
// GET, plus one for an index's instance); otherwise it fetches exactly top
// (a docker:// reference is re-pinned to top, so the tag is not consulted)
// and fails with ErrDigestMismatch if the bytes do not hash to it. For local
// transports, top must be what ref points to.
func (c *Client) Fetch(ctx context.Context, ref types.ImageReference, top digest.Digest) (*Image, error) {
	name := transports.ImageName(ref)
	if top != "" {
		if err := top.Validate(); err != nil {
			return nil, wrapf(ErrMalformed, err, "requested digest %q", top)
		}
	} else {
		top = pinnedDigest(ref)
	}
	src, err := c.open(ctx, ref, top)
	if err != nil {
		return nil, classify(err, "opening "+name)
	}
	defer src.Close()

	topData, topType, err := c.getManifest(ctx, src, nil, name)
	if err != nil {
		return nil, err
	}
	img := &Image{Reference: name, TopDigest: top}
	if top == "" {
		img.TopDigest = digest.FromBytes(topData)
	} else if err := verifyBlob(topData, top, -1, "manifest of "+name); err != nil {
		return nil, err
	}
	parsed, err := parseManifest(topData, topType)
	if err != nil {
		return nil, fmt.Errorf("%s@%s: %w", name, img.TopDigest, err)
	}
	img.TopMediaType = parsed.mediaType
	img.ManifestDigest, img.ManifestMediaType, img.Manifest = img.TopDigest, parsed.mediaType, topData

	var entry *imgspecv1.Descriptor
	if parsed.isIndex() {
		if entry, err = c.chooseInstance(topData, parsed); err != nil {
			return nil, fmt.Errorf("%s@%s: %w", name, img.TopDigest, err)
		}
		if img.Manifest, parsed, err = c.fetchInstance(ctx, src, *entry, name); err != nil {
			return nil, err
		}
		img.ManifestDigest, img.ManifestMediaType = entry.Digest, parsed.mediaType
	}
	img.Layers = parsed.layers
	img.ConfigDigest = parsed.config.Digest
	if img.Config, err = c.fetchConfig(ctx, src, parsed.config, name); err != nil {
		return nil, err
	}
	if img.Platform, err = parseConfig(img.Config); err != nil {
		return nil, fmt.Errorf("%s config %s: %w", name, img.ConfigDigest, err)
	}
	if entry != nil && entry.Platform != nil {
		img.Platform = *entry.Platform
	}
	return img, nil
}

// open returns an image source for ref, re-pinned to top for docker://.
func (c *Client) open(ctx context.Context, ref types.ImageReference, top digest.Digest) (types.ImageSource, error) {
	if top != "" && isDocker(ref) {
		pinned, err := reference.WithDigest(reference.TrimNamed(ref.DockerReference()), top)
		if err != nil {
			return nil, err
		}
		if ref, err = docker.NewReference(pinned); err != nil {
			return nil, err
		}
	}
	return ref.NewImageSource(ctx, c.sys)
}

// getManifest reads one manifest (instance == nil: the source's own) and
// enforces the size cap.
func (c *Client) getManifest(ctx context.Context, src types.ImageSource, instance *digest.Digest, name string) ([]byte, string, error) {
	what := "GET manifest " + name
	if instance != nil {
		what += "@" + instance.String()
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

// chooseInstance picks the index entry for the wanted platform.
func (c *Client) chooseInstance(data []byte, index *parsedManifest) (*imgspecv1.Descriptor, error) {
	list, err := manifest.ListFromBlob(data, index.mediaType)
	if err != nil {
		return nil, wrapf(ErrMalformed, err, "index")
	}
	chosen, err := list.ChooseInstance(c.sys)
	if err != nil {
		return nil, wrapf(ErrNoMatchingPlatform, err, "index")
	}
	for i := range index.instances {
		if index.instances[i].Digest == chosen {
			return &index.instances[i], nil
		}
	}
	return nil, wrapf(ErrMalformed, nil, "chosen instance %s is not in the index", chosen)
}

// fetchInstance fetches the index entry's manifest and checks it against
// the entry's digest, size and media type.
func (c *Client) fetchInstance(ctx context.Context, src types.ImageSource, entry imgspecv1.Descriptor, name string) ([]byte, *parsedManifest, error) {
	what := name + "@" + entry.Digest.String()
	if entry.Size > c.maxManifest {
		return nil, nil, wrapf(ErrTooLarge, nil, "index entry %s: %d bytes, cap %d", what, entry.Size, c.maxManifest)
	}
	data, mt, err := c.getManifest(ctx, src, &entry.Digest, name)
	if err != nil {
		return nil, nil, err
	}
	if err := verifyBlob(data, entry.Digest, entry.Size, "manifest "+what); err != nil {
		return nil, nil, err
	}
	parsed, err := parseManifest(data, mt)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if parsed.isIndex() {
		return nil, nil, wrapf(ErrUnsupportedManifest, nil, "%s: nested index", what)
	}
	if entry.MediaType != "" && entry.MediaType != parsed.mediaType {
		return nil, nil, wrapf(ErrMalformed, nil, "%s: index says %q, manifest is %q", what, entry.MediaType, parsed.mediaType)
	}
	return data, parsed, nil
}

// fetchConfig fetches the config blob, reading at most its declared size
// plus one byte, and verifies it against the descriptor.
func (c *Client) fetchConfig(ctx context.Context, src types.ImageSource, desc imgspecv1.Descriptor, name string) ([]byte, error) {
	what := "GET config " + name + " " + desc.Digest.String()
	if desc.Size > c.maxConfig {
		return nil, wrapf(ErrTooLarge, nil, "%s: descriptor says %d bytes, cap %d", what, desc.Size, c.maxConfig)
	}
	// NoCache: an update check must not write containers/image's blob
	// info cache under the user's home.
	rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: desc.Digest, Size: desc.Size, MediaType: desc.MediaType}, none.NoCache)
	if err != nil {
		return nil, classify(err, what)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, classify(err, what)
	}
	if err := verifyBlob(data, desc.Digest, desc.Size, "config of "+name); err != nil {
		return nil, err
	}
	return data, nil
}

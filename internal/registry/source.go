package registry

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"
)

// Source is one image opened for reading: a reference pinned to one
// top-level digest, read through a single containers/image ImageSource, so
// that the image, its layers and its signatures cost one registry ping and
// one token. Its methods are safe for concurrent use; Close it when done.
type Source struct {
	c    *Client
	ref  types.ImageReference // as given (a tag stays a tag): what policy is evaluated for
	name string               // transports.ImageName(ref)
	src  types.ImageSource    // for docker://, pinned to top

	// The top-level manifest as read and verified by Open.
	top     digest.Digest
	topData []byte
	topType string

	closeOnce sync.Once
	closeErr  error
}

// Open opens ref for reading, pinned to top: a docker:// reference is
// re-pinned to top, so a tag is not consulted again, and the manifest must
// hash to top (else ErrDigestMismatch). With top == "" the source is pinned
// to whatever ref points to now (for a docker:// tag, one manifest GET by
// tag). Open reads the top-level manifest; it costs the registry ping (and
// token) that the Source then reuses.
func (c *Client) Open(ctx context.Context, ref types.ImageReference, top digest.Digest) (*Source, error) {
	name := transports.ImageName(ref)
	if top != "" {
		if err := top.Validate(); err != nil {
			return nil, wrapf(ErrMalformed, err, "requested digest %q", top)
		}
	} else {
		top = PinnedDigest(ref)
	}
	src, err := c.open(ctx, ref, top)
	if err != nil {
		return nil, classify(err, "opening the image")
	}
	// containers/image read the top-level manifest while opening a
	// docker:// source and serves it from memory here.
	data, mt, err := c.getManifest(ctx, src, nil)
	if err == nil && top != "" {
		err = verifyBlob(data, top, -1, "manifest")
	}
	if err != nil {
		src.Close()
		return nil, err
	}
	if top == "" {
		top = digest.FromBytes(data)
	}
	return &Source{c: c, ref: ref, name: name, src: src, top: top, topData: data, topType: mt}, nil
}

// TopDigest returns the digest the Source is pinned to.
func (s *Source) TopDigest() digest.Digest { return s.top }

// Close releases the source's connections. Readers returned by Layer must be
// closed first. Calling Close more than once is harmless.
func (s *Source) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.src.Close() })
	return s.closeErr
}

// Image verifies the top-level manifest, resolves an index to the wanted
// platform's manifest (one manifest GET by digest) and fetches the config
// (one blob GET). Each call fetches those again.
func (s *Source) Image(ctx context.Context) (*Image, error) {
	c := s.c
	parsed, err := parseManifest(s.topData, s.topType)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", s.top, err)
	}
	img := &Image{
		Reference: s.name,
		TopDigest: s.top, TopMediaType: parsed.mediaType,
		ManifestDigest: s.top, ManifestMediaType: parsed.mediaType, Manifest: s.topData,
	}

	var entry *imgspecv1.Descriptor
	if parsed.isIndex() {
		if entry, err = c.chooseInstance(s.topData, parsed); err != nil {
			return nil, fmt.Errorf("index %s: %w", s.top, err)
		}
		if img.Manifest, parsed, err = s.fetchInstance(ctx, *entry); err != nil {
			return nil, err
		}
		img.ManifestDigest, img.ManifestMediaType = entry.Digest, parsed.mediaType
	}
	img.Layers = parsed.layers
	img.ConfigDigest = parsed.config.Digest
	if img.Config, err = s.fetchConfig(ctx, parsed.config); err != nil {
		return nil, err
	}
	if img.Platform, err = parseConfig(img.Config); err != nil {
		return nil, fmt.Errorf("config %s: %w", img.ConfigDigest, err)
	}
	if entry != nil && entry.Platform != nil {
		img.Platform = *entry.Platform
	}
	return img, nil
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
func (s *Source) fetchInstance(ctx context.Context, entry imgspecv1.Descriptor) ([]byte, *parsedManifest, error) {
	what := "manifest " + entry.Digest.String()
	if entry.Size > s.c.maxManifest {
		return nil, nil, wrapf(ErrTooLarge, nil, "index entry %s: %d bytes, cap %d", entry.Digest, entry.Size, s.c.maxManifest)
	}
	data, mt, err := s.c.getManifest(ctx, s.src, &entry.Digest)
	if err != nil {
		return nil, nil, err
	}
	if err := verifyBlob(data, entry.Digest, entry.Size, what); err != nil {
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

// fetchConfig reads the config blob whole, after checking its declared size
// against the cap; the verifying reader bounds what is read to that size.
func (s *Source) fetchConfig(ctx context.Context, desc imgspecv1.Descriptor) ([]byte, error) {
	if desc.Size > s.c.maxConfig {
		return nil, wrapf(ErrTooLarge, nil, "config %s: descriptor says %d bytes, cap %d", desc.Digest, desc.Size, s.c.maxConfig)
	}
	rc, err := s.blob(ctx, desc, "config")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Layer streams the blob desc names (a layer descriptor of Image().Layers)
// without buffering it. The reader checks the blob against desc as it goes:
// a blob longer than desc.Size fails at once (from its Content-Length) or
// at its first extra byte; the read that would complete desc.Size bytes
// fails with ErrDigestMismatch instead if the digest is wrong, as does a
// stream that ends early. Read errors are classified like every other error
// (a missing blob is ErrManifestUnknown). A consumer that stops before
// desc.Size bytes has not had them verified. ctx must stay live while
// reading: a broken connection may be resumed with a Range request made
// under it.
func (s *Source) Layer(ctx context.Context, desc imgspecv1.Descriptor) (io.ReadCloser, error) {
	return s.blob(ctx, desc, "layer")
}

// blob opens a verifying reader of the blob desc names.
func (s *Source) blob(ctx context.Context, desc imgspecv1.Descriptor, kind string) (io.ReadCloser, error) {
	what := "GET " + kind
	if err := checkDescriptor(desc, kind); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// NoCache: reading an image must not write containers/image's blob
	// info cache under the user's home.
	rc, size, err := s.src.GetBlob(ctx, types.BlobInfo{Digest: desc.Digest, Size: desc.Size, MediaType: desc.MediaType}, none.NoCache)
	if err != nil {
		return nil, classify(err, what)
	}
	if size >= 0 && size != desc.Size {
		rc.Close()
		return nil, wrapf(ErrDigestMismatch, nil, "%s: %d bytes served, descriptor says %d", what, size, desc.Size)
	}
	return newVerifyingReader(rc, desc, what), nil
}

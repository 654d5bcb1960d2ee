package registry

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
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
	// layoutTop is its descriptor in an image layout's index.json.
	layoutTop *imgspecv1.Descriptor

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
	layoutTop, err := c.layoutTop(ref)
	if err != nil {
		return nil, err
	}
	src, err := c.open(ctx, ref, top)
	if err != nil {
		return nil, classify(err, "opening the image")
	}
	// containers/image read the top-level manifest while opening a
	// docker:// source and serves it from memory here.
	data, mt, err := c.readManifest(ctx, src, layoutTop, nil)
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
	return &Source{c: c, ref: ref, name: name, src: src, top: top, topData: data, topType: mt, layoutTop: layoutTop}, nil
}

// open returns a containers/image source for ref, re-pinned to top for
// docker://, whose connections refuse plain-HTTP redirects while TLS is
// verified.
func (c *Client) open(ctx context.Context, ref types.ImageReference, top digest.Digest) (types.ImageSource, error) {
	if top != "" && isDocker(ref) {
		var err error
		if ref, err = Pin(ref, top); err != nil {
			return nil, err
		}
	}
	if err := c.checkConfig(ref); err != nil {
		return nil, err
	}
	plain, err := newPlainHTTPPolicy(c.sys)
	if err != nil {
		return nil, err
	}
	sys, err := guardContainersImage(c.sys, ref, plain)
	if err != nil {
		return nil, err
	}
	return ref.NewImageSource(ctx, sys)
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
	return readImage(ctx, s.c, s, s.name, s.top, s.topData, s.topType)
}

// manifest reads the manifest d through the source, within the cap.
func (s *Source) manifest(ctx context.Context, d digest.Digest) ([]byte, string, error) {
	return s.c.readManifest(ctx, s.src, s.layoutTop, &d)
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
	return verifiedBlob(rc, size, desc, what)
}

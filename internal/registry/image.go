package registry

import (
	"context"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
)

// fetcher reads the parts of one image from one place: a containers/image
// source (Source) or the check's session (sessionFetcher). Errors are
// classified.
type fetcher interface {
	// manifest fetches the manifest d, within the manifest cap; it need
	// not verify it.
	manifest(ctx context.Context, d digest.Digest) ([]byte, string, error)
	// blob opens the blob desc names, verifying it as it is read.
	blob(ctx context.Context, desc imgspecv1.Descriptor, kind string) (io.ReadCloser, error)
}

// readImage verifies the top-level manifest (topData, already checked
// against top), resolves an index to the wanted platform's manifest and
// fetches the config, through f.
func readImage(ctx context.Context, c *Client, f fetcher, name string, top digest.Digest, topData []byte, topType string) (*Image, error) {
	parsed, err := parseManifest(topData, topType)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", top, err)
	}
	img := &Image{
		Reference: name,
		TopDigest: top, TopMediaType: parsed.mediaType,
		ManifestDigest: top, ManifestMediaType: parsed.mediaType, Manifest: topData,
	}

	var entry *imgspecv1.Descriptor
	if parsed.isIndex() {
		if entry, err = c.chooseInstance(topData, parsed); err != nil {
			return nil, fmt.Errorf("index %s: %w", top, err)
		}
		if img.Manifest, parsed, err = c.fetchInstance(ctx, f, *entry); err != nil {
			return nil, err
		}
		img.ManifestDigest, img.ManifestMediaType = entry.Digest, parsed.mediaType
	}
	img.Layers = parsed.layers
	img.ConfigDigest = parsed.config.Digest
	if img.Config, err = c.fetchConfig(ctx, f, parsed.config); err != nil {
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
func (c *Client) fetchInstance(ctx context.Context, f fetcher, entry imgspecv1.Descriptor) ([]byte, *parsedManifest, error) {
	what := "manifest " + entry.Digest.String()
	if entry.Size > c.maxManifest {
		return nil, nil, wrapf(ErrTooLarge, nil, "index entry %s: %d bytes, cap %d", what, entry.Size, c.maxManifest)
	}
	data, mt, err := f.manifest(ctx, entry.Digest)
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

// fetchConfig reads the config blob whole, after checking its declared size
// against the cap; the verifying reader bounds what is read to that size.
func (c *Client) fetchConfig(ctx context.Context, f fetcher, desc imgspecv1.Descriptor) ([]byte, error) {
	if desc.Size > c.maxConfig {
		return nil, wrapf(ErrTooLarge, nil, "config %s: descriptor says %d bytes, cap %d", desc.Digest, desc.Size, c.maxConfig)
	}
	rc, err := f.blob(ctx, desc, "config")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// verifiedBlob checks a blob's served size (-1: unknown) against desc,
// which must have passed checkDescriptor, and wraps it in a verifying
// reader.
func verifiedBlob(rc io.ReadCloser, size int64, desc imgspecv1.Descriptor, what string) (io.ReadCloser, error) {
	if size >= 0 && size != desc.Size {
		rc.Close()
		return nil, wrapf(ErrDigestMismatch, nil, "%s: %d bytes served, descriptor says %d", what, size, desc.Size)
	}
	return newVerifyingReader(rc, desc, what), nil
}

package registry

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/manifest"
	ociarchive "go.podman.io/image/v5/oci/archive"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/pkg/compression"
	"go.podman.io/image/v5/types"
)

// Local transports read manifests with os.ReadFile, whatever their size:
// a 2 GiB manifest in an image layout would be read whole before any cap
// could refuse it. So manifests are never read through them that way:
// layouts (oci:, oci-archive:) store manifests as blobs, which are opened
// and checked by size (from stat) before a capped read; a dir: manifest is
// stat'ed first. containers/image already caps registry manifests and
// generates docker-archive: ones from a capped read.

// readManifest reads the manifest instance (nil: the top-level one, which
// for a layout is top) through src, within the manifest cap.
func (c *Client) readManifest(ctx context.Context, src types.ImageSource, top *imgspecv1.Descriptor, instance *digest.Digest) ([]byte, string, error) {
	what := "reading the manifest"
	if instance != nil {
		what += " " + instance.String()
	}
	ref := src.Reference()
	switch ref.Transport().Name() {
	case layout.Transport.Name(), ociarchive.Transport.Name():
		desc := top
		if instance != nil {
			desc = &imgspecv1.Descriptor{Digest: *instance, Size: -1}
		}
		if desc == nil {
			return nil, "", wrapf(ErrMalformed, nil, "%s: index.json names no manifest for the reference", what)
		}
		if desc.Size > c.maxManifest {
			return nil, "", wrapf(ErrTooLarge, nil, "%s: index.json says %d bytes, cap %d", what, desc.Size, c.maxManifest)
		}
		rc, size, err := src.GetBlob(ctx, types.BlobInfo{Digest: desc.Digest, Size: -1}, none.NoCache)
		if err != nil {
			return nil, "", classify(err, what)
		}
		defer rc.Close()
		data, err := readCapped(rc, size, c.maxManifest, "manifest")
		return data, desc.MediaType, classify(err, what)
	case directory.Transport.Name():
		p := dirManifestPath(ref.StringWithinTransport(), instance)
		if fi, err := os.Stat(p); err == nil && fi.Size() > c.maxManifest {
			return nil, "", wrapf(ErrTooLarge, nil, "%s: %s is %d bytes, cap %d", what, p, fi.Size(), c.maxManifest)
		}
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

// dirManifestPath is where the dir: transport keeps a manifest.
func dirManifestPath(dir string, instance *digest.Digest) string {
	switch {
	case instance == nil:
		return filepath.Join(dir, "manifest.json")
	case instance.Algorithm() == digest.Canonical:
		return filepath.Join(dir, instance.Encoded()+".manifest.json")
	}
	return filepath.Join(dir, instance.Algorithm().String()+"-"+instance.Encoded()+".manifest.json")
}

// layoutTop reads the index.json of an oci: layout or oci-archive: file
// within the manifest cap, before containers/image reads it whole, and
// returns the descriptor of the manifest ref names, picked as
// containers/image picks it. It returns nil for other transports, and when
// index.json is missing, unparsable or names nothing for ref:
// containers/image then fails to open ref and says why.
func (c *Client) layoutTop(ref types.ImageReference) (*imgspecv1.Descriptor, error) {
	file, image, _ := strings.Cut(ref.StringWithinTransport(), ":")
	var data []byte
	var err error
	switch ref.Transport().Name() {
	case layout.Transport.Name():
		data, err = readFileCapped(filepath.Join(file, imgspecv1.ImageIndexFile), c.maxManifest)
	case ociarchive.Transport.Name():
		data, err = readTarEntryCapped(file, imgspecv1.ImageIndexFile, c.maxManifest)
	default:
		return nil, nil
	}
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("%s of %s: %w", imgspecv1.ImageIndexFile, ref.StringWithinTransport(), err)
		}
		return nil, nil
	}
	var index imgspecv1.Index
	if json.Unmarshal(data, &index) != nil {
		return nil, nil
	}
	return pickManifest(index.Manifests, image), nil
}

// pinLayout returns the oci: reference to the entry of the layout's
// index.json that has digest d.
func pinLayout(ref types.ImageReference, d digest.Digest) (types.ImageReference, error) {
	dir, _, _ := strings.Cut(ref.StringWithinTransport(), ":")
	p := filepath.Join(dir, imgspecv1.ImageIndexFile)
	data, err := readFileCapped(p, DefaultMaxManifestSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, wrapf(ErrManifestUnknown, err, "pinning %s to %s", dir, d)
	case err != nil:
		return nil, fmt.Errorf("pinning %s to %s: %w", dir, d, err)
	}
	var index imgspecv1.Index
	if err := json.Unmarshal(data, &index); err != nil {
		return nil, wrapf(ErrMalformed, err, "%s", p)
	}
	for i, m := range index.Manifests {
		if m.Digest == d {
			return layout.NewIndexReference(dir, i)
		}
	}
	return nil, wrapf(ErrManifestUnknown, nil, "the layout %s no longer holds %s", dir, d)
}

// pickManifest finds the manifest an image layout reference names: "@N"
// the Nth, a name the one annotated with it, no name the only one.
func pickManifest(manifests []imgspecv1.Descriptor, image string) *imgspecv1.Descriptor {
	if n, ok := strings.CutPrefix(image, "@"); ok {
		if i, err := strconv.Atoi(n); err == nil && i >= 0 && i < len(manifests) {
			return &manifests[i]
		}
		return nil
	}
	if image == "" {
		if len(manifests) == 1 {
			return &manifests[0]
		}
		return nil
	}
	for i, m := range manifests {
		switch m.MediaType {
		case imgspecv1.MediaTypeImageManifest, imgspecv1.MediaTypeImageIndex, manifest.DockerV2Schema2MediaType, manifest.DockerV2ListMediaType:
			if m.Annotations[imgspecv1.AnnotationRefName] == image {
				return &manifests[i]
			}
		}
	}
	return nil
}

// readFileCapped reads a file of at most maxSize bytes.
func readFileCapped(name string, maxSize int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return readCapped(f, fi.Size(), maxSize, name)
}

// readTarEntryCapped reads the entry name, of at most maxSize bytes, of the
// tar file archive, which may be compressed. An uncompressed archive is
// scanned by seeking past the other entries' contents.
func readTarEntryCapped(archive, name string, maxSize int64) ([]byte, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := findTarEntry(tar.NewReader(f), name, maxSize)
	if !errors.Is(err, tar.ErrHeader) {
		return data, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	r, _, err := compression.AutoDecompress(f)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return findTarEntry(tar.NewReader(r), name, maxSize)
}

func findTarEntry(tr *tar.Reader, name string, maxSize int64) ([]byte, error) {
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil, fs.ErrNotExist
		}
		if err != nil {
			return nil, err
		}
		if path.Clean(hdr.Name) == name && hdr.Typeflag == tar.TypeReg {
			return readCapped(tr, hdr.Size, maxSize, name)
		}
	}
}

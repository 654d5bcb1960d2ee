package updatecachetest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	imgspec "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// WriteLayout writes a as a new OCI image layout in dir (created if
// needed), its top manifest named tag, for tests of the oci: transport
// ("oci:DIR:TAG"). An existing index.json in dir is replaced. Only
// OCI-format artifacts fit: readers of layouts skip Docker media types.
func WriteLayout(dir, tag string, a Artifact) error {
	mediaType, data, d := a.topManifest()
	if mediaType != imgspecv1.MediaTypeImageManifest && mediaType != imgspecv1.MediaTypeImageIndex {
		return fmt.Errorf("updatecachetest: an OCI layout cannot hold %s", mediaType)
	}
	var blobs []Blob
	switch a := a.(type) {
	case *Image:
		blobs = a.blobs()
	case *Index:
		for _, img := range a.Images {
			blobs = append(blobs, img.blobs()...)
			blobs = append(blobs, newBlob(img.MediaType, img.Manifest))
		}
	}
	blobs = append(blobs, newBlob(mediaType, data))
	for _, b := range blobs {
		p := filepath.Join(dir, "blobs", b.Digest.Algorithm().String(), b.Digest.Encoded())
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("updatecachetest: %w", err)
		}
		if err := os.WriteFile(p, b.Data, 0o644); err != nil {
			return fmt.Errorf("updatecachetest: %w", err)
		}
	}
	index := imgspecv1.Index{
		Versioned: imgspec.Versioned{SchemaVersion: 2},
		MediaType: imgspecv1.MediaTypeImageIndex,
		Manifests: []imgspecv1.Descriptor{{
			MediaType:   mediaType,
			Digest:      d,
			Size:        int64(len(data)),
			Annotations: map[string]string{imgspecv1.AnnotationRefName: tag},
		}},
	}
	indexData, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("updatecachetest: %w", err)
	}
	layout, err := json.Marshal(imgspecv1.ImageLayout{Version: imgspecv1.ImageLayoutVersion})
	if err != nil {
		return fmt.Errorf("updatecachetest: %w", err)
	}
	for name, content := range map[string][]byte{imgspecv1.ImageLayoutFile: layout, "index.json": indexData} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			return fmt.Errorf("updatecachetest: %w", err)
		}
	}
	return nil
}

// blobs returns the image's config and layers, in push order.
func (img *Image) blobs() []Blob { return append([]Blob{img.Config}, img.Layers...) }

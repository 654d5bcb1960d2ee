package registry

import (
	"bytes"
	"encoding/json"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
)

// parsedManifest is what we need from a manifest or an index, validated.
type parsedManifest struct {
	mediaType string
	// For an image manifest:
	config imgspecv1.Descriptor
	layers []imgspecv1.Descriptor
	// For an index (OCI image index or Docker manifest list):
	instances []imgspecv1.Descriptor
}

func (p *parsedManifest) isIndex() bool { return manifest.MIMETypeIsMultiImage(p.mediaType) }

// manifestDoc holds the union of the fields of every manifest format we may
// be served; absent fields stay nil so a document's shape can be told.
type manifestDoc struct {
	SchemaVersion *int                    `json:"schemaVersion"`
	MediaType     string                  `json:"mediaType"`
	Config        *imgspecv1.Descriptor   `json:"config"`
	Layers        []imgspecv1.Descriptor  `json:"layers"`
	Manifests     *[]imgspecv1.Descriptor `json:"manifests"`
}

// parseManifest validates data as an image manifest or index. contentType
// is what the server said (may be empty or generic); the document's own
// mediaType field wins when present, since an OCI manifest may omit it but
// never lies about it without also changing its digest.
func parseManifest(data []byte, contentType string) (*parsedManifest, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, wrapf(ErrMalformed, nil, "manifest is not a JSON object")
	}
	var doc manifestDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, wrapf(ErrMalformed, err, "manifest JSON")
	}
	if isSchema1(doc.MediaType) || (doc.SchemaVersion != nil && *doc.SchemaVersion == 1) {
		return nil, wrapf(ErrUnsupportedManifest, nil, "Docker schema 1 manifests are not supported")
	}
	if doc.SchemaVersion == nil {
		return nil, wrapf(ErrMalformed, nil, "manifest has no schemaVersion")
	}
	if *doc.SchemaVersion != 2 {
		return nil, wrapf(ErrUnsupportedManifest, nil, "manifest schemaVersion %d", *doc.SchemaVersion)
	}
	mt, err := manifestMediaType(&doc, contentType)
	if err != nil {
		return nil, err
	}
	p := &parsedManifest{mediaType: mt}
	switch mt {
	case imgspecv1.MediaTypeImageManifest, manifest.DockerV2Schema2MediaType:
		if doc.Config == nil {
			return nil, wrapf(ErrMalformed, nil, "%s has no config descriptor", mt)
		}
		if err := checkDescriptor(*doc.Config, "config"); err != nil {
			return nil, err
		}
		if doc.Config.Size == 0 {
			return nil, wrapf(ErrMalformed, nil, "config descriptor has size 0")
		}
		if !isImageConfig(doc.Config.MediaType) {
			return nil, wrapf(ErrUnsupportedManifest, nil, "not a container image: config media type %q", doc.Config.MediaType)
		}
		for i, l := range doc.Layers {
			if err := checkDescriptor(l, fmt.Sprintf("layer %d", i)); err != nil {
				return nil, err
			}
		}
		p.config, p.layers = *doc.Config, doc.Layers
	case imgspecv1.MediaTypeImageIndex, manifest.DockerV2ListMediaType:
		if doc.Manifests == nil {
			return nil, wrapf(ErrMalformed, nil, "%s has no manifests", mt)
		}
		for i, d := range *doc.Manifests {
			if err := checkDescriptor(d, fmt.Sprintf("index entry %d", i)); err != nil {
				return nil, err
			}
		}
		p.instances = *doc.Manifests
	default:
		return nil, wrapf(ErrUnsupportedManifest, nil, "media type %q", mt)
	}
	return p, nil
}

// manifestMediaType decides the document's media type: its own field, else a
// known Content-Type, else its shape (OCI documents may omit mediaType).
func manifestMediaType(doc *manifestDoc, contentType string) (string, error) {
	if doc.MediaType != "" {
		return doc.MediaType, nil
	}
	switch contentType {
	case imgspecv1.MediaTypeImageManifest, imgspecv1.MediaTypeImageIndex:
		return contentType, nil
	}
	switch {
	case doc.Config != nil && doc.Manifests != nil:
		return "", wrapf(ErrMalformed, nil, "document has both config and manifests")
	case doc.Config != nil:
		return imgspecv1.MediaTypeImageManifest, nil
	case doc.Manifests != nil:
		return imgspecv1.MediaTypeImageIndex, nil
	}
	return "", wrapf(ErrUnsupportedManifest, nil, "document has no mediaType, config or manifests")
}

func isSchema1(mt string) bool {
	return mt == manifest.DockerV2Schema1MediaType || mt == manifest.DockerV2Schema1SignedMediaType
}

func isImageConfig(mt string) bool {
	return mt == imgspecv1.MediaTypeImageConfig || mt == manifest.DockerV2Schema2ConfigMediaType
}

// checkDescriptor rejects descriptors whose digest or size cannot be used.
func checkDescriptor(d imgspecv1.Descriptor, what string) error {
	if err := d.Digest.Validate(); err != nil {
		return wrapf(ErrMalformed, err, "%s digest %q", what, d.Digest)
	}
	if d.Size < 0 {
		return wrapf(ErrMalformed, nil, "%s size %d", what, d.Size)
	}
	return nil
}

// verifyBlob checks data against an expected digest and, when size >= 0,
// an expected size. want must already be valid (Validate), else
// Algorithm().FromBytes would panic.
func verifyBlob(data []byte, want digest.Digest, size int64, what string) error {
	if size >= 0 && int64(len(data)) != size {
		return wrapf(ErrDigestMismatch, nil, "%s is %d bytes, descriptor says %d", what, len(data), size)
	}
	if got := want.Algorithm().FromBytes(data); got != want {
		return wrapf(ErrDigestMismatch, nil, "%s hashes to %s, want %s", what, got, want)
	}
	return nil
}

// imageConfig is the part of an image config we check and report.
type imageConfig struct {
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	Variant      string   `json:"variant"`
	OSVersion    string   `json:"os.version"`
	OSFeatures   []string `json:"os.features"`
}

// parseConfig validates an image config and returns its platform.
func parseConfig(data []byte) (imgspecv1.Platform, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return imgspecv1.Platform{}, wrapf(ErrMalformed, nil, "config is not a JSON object")
	}
	var c imageConfig
	if err := json.Unmarshal(data, &c); err != nil {
		return imgspecv1.Platform{}, wrapf(ErrMalformed, err, "config JSON")
	}
	if c.OS == "" || c.Architecture == "" {
		return imgspecv1.Platform{}, wrapf(ErrMalformed, nil, "config lacks os or architecture")
	}
	return imgspecv1.Platform{
		Architecture: c.Architecture,
		OS:           c.OS,
		Variant:      c.Variant,
		OSVersion:    c.OSVersion,
		OSFeatures:   c.OSFeatures,
	}, nil
}

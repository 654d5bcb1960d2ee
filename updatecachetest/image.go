package updatecachetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/osimage/updatecache/internal/keys"
)

// Media types of Docker's image manifest format (schema 2).
const (
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGz  = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// VersionLabel is the config label holding an image's version.
const VersionLabel = keys.VersionLabel

// Format selects the manifest format of an image.
type Format int

const (
	OCI    Format = iota // OCI image manifest and index (the default)
	Docker               // Docker schema 2 manifest and manifest list
)

// Compression selects how layers are compressed.
type Compression int

const (
	Gzip         Compression = iota // the default
	Uncompressed                    // plain tar
	Zstd                            // OCI format only
)

// File is one entry of a layer. Its type comes from Mode: fs.ModeDir for a
// directory, fs.ModeSymlink for a symbolic link to Target, else a regular
// file holding Content. Mode's permission bits default to 0644 for files
// 0755 for directories and 0777 for links.
type File struct {
	Path    string // e.g. "usr/lib/os-release"; a leading "/" is dropped
	Content []byte
	Mode    fs.FileMode
	Target  string
}

// Layer is one layer's files, written to the tar stream in this order.
type Layer struct {
	Files []File
}

// ImageSpec describes a synthetic OS image. Equal specs give byte-identical
// images, so digests are stable within a Go toolchain.
type ImageSpec struct {
	Version      string    // config label org.opencontainers.image.version, if set
	Created      time.Time // config "created" and file times; zero leaves "created" out
	OS           string    // default "linux"
	Architecture string    // default runtime.GOARCH
	Variant      string
	Labels       map[string]string // more config labels
	Annotations  map[string]string // manifest annotations (OCI only)
	Layers       []Layer
	Compression  Compression
	Format       Format
}

// Blob is content addressed by digest: a config or a layer.
type Blob struct {
	MediaType string
	Digest    digest.Digest
	Size      int64
	Data      []byte
	// DiffID is a layer's uncompressed digest (empty for a config).
	DiffID digest.Digest
}

func (b Blob) descriptor() imgspecv1.Descriptor {
	return imgspecv1.Descriptor{MediaType: b.MediaType, Digest: b.Digest, Size: b.Size}
}

func newBlob(mediaType string, data []byte) Blob {
	return Blob{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data)), Data: data}
}

// Image is a built image, ready to push.
type Image struct {
	MediaType      string
	Manifest       []byte
	ManifestDigest digest.Digest
	Config         Blob
	Layers         []Blob
	Platform       imgspecv1.Platform
}

// ConfigDigest is the digest of the image's config (its image ID).
func (img *Image) ConfigDigest() digest.Digest { return img.Config.Digest }

// Index is a multi-platform image: an OCI image index or a Docker manifest
// list of images.
type Index struct {
	MediaType      string
	Manifest       []byte
	ManifestDigest digest.Digest
	Images         []*Image
}

// Artifact is what Push can push: an *Image or an *Index.
type Artifact interface {
	topManifest() (mediaType string, data []byte, d digest.Digest)
}

func (img *Image) topManifest() (string, []byte, digest.Digest) {
	return img.MediaType, img.Manifest, img.ManifestDigest
}

func (idx *Index) topManifest() (string, []byte, digest.Digest) {
	return idx.MediaType, idx.Manifest, idx.ManifestDigest
}

// NewImage builds the image spec describes.
func NewImage(spec ImageSpec) (*Image, error) {
	if spec.Format == Docker && spec.Compression == Zstd {
		return nil, errors.New("updatecachetest: zstd layers need the OCI format")
	}
	if spec.Format == Docker && len(spec.Annotations) > 0 {
		return nil, errors.New("updatecachetest: Docker manifests have no annotations")
	}
	platform := imgspecv1.Platform{OS: spec.OS, Architecture: spec.Architecture, Variant: spec.Variant}
	if platform.OS == "" {
		platform.OS = "linux"
	}
	if platform.Architecture == "" {
		platform.Architecture = runtime.GOARCH
	}
	var layers []Blob
	diffIDs := []digest.Digest{}
	for i, l := range spec.Layers {
		b, err := buildLayer(l, spec)
		if err != nil {
			return nil, fmt.Errorf("updatecachetest: layer %d: %w", i, err)
		}
		layers = append(layers, b)
		diffIDs = append(diffIDs, b.DiffID)
	}

	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	if spec.Version != "" {
		labels[VersionLabel] = spec.Version
	}
	cfg := imgspecv1.Image{
		Platform: platform,
		Config:   imgspecv1.ImageConfig{Labels: labels},
		RootFS:   imgspecv1.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	if !spec.Created.IsZero() {
		created := spec.Created.UTC()
		cfg.Created = &created
	}
	return assemble(cfg, layers, nil, spec.Annotations, spec.Format)
}

// assemble makes the image of a config and its layers: the config blob,
// and the manifest with the layers' descriptors (annotated with
// layerAnnotations[i] where given) and the manifest annotations.
func assemble(cfg imgspecv1.Image, layers []Blob, layerAnnotations []map[string]string, annotations map[string]string, format Format) (*Image, error) {
	img := &Image{Platform: cfg.Platform, Layers: layers}
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("updatecachetest: config: %w", err)
	}
	m := imgspecv1.Manifest{Versioned: imgspec.Versioned{SchemaVersion: 2}, Annotations: annotations}
	if format == Docker {
		m.MediaType = MediaTypeDockerManifest
		img.Config = newBlob(MediaTypeDockerConfig, cfgData)
	} else {
		m.MediaType = imgspecv1.MediaTypeImageManifest
		img.Config = newBlob(imgspecv1.MediaTypeImageConfig, cfgData)
	}
	m.Config = img.Config.descriptor()
	m.Layers = []imgspecv1.Descriptor{}
	for i, l := range img.Layers {
		d := l.descriptor()
		if i < len(layerAnnotations) {
			d.Annotations = layerAnnotations[i]
		}
		m.Layers = append(m.Layers, d)
	}
	if img.Manifest, err = json.Marshal(m); err != nil {
		return nil, fmt.Errorf("updatecachetest: manifest: %w", err)
	}
	img.MediaType, img.ManifestDigest = m.MediaType, digest.FromBytes(img.Manifest)
	return img, nil
}

// NewIndex builds an index of images, which must all have the same format:
// an OCI image index, or a Docker manifest list.
func NewIndex(images ...*Image) (*Index, error) {
	if len(images) == 0 {
		return nil, errors.New("updatecachetest: an index needs at least one image")
	}
	idx := imgspecv1.Index{Versioned: imgspec.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex}
	if images[0].MediaType == MediaTypeDockerManifest {
		idx.MediaType = MediaTypeDockerList
	}
	for _, img := range images {
		if img.MediaType != images[0].MediaType {
			return nil, errors.New("updatecachetest: an index cannot mix OCI and Docker manifests")
		}
		platform := img.Platform
		idx.Manifests = append(idx.Manifests, imgspecv1.Descriptor{
			MediaType: img.MediaType,
			Digest:    img.ManifestDigest,
			Size:      int64(len(img.Manifest)),
			Platform:  &platform,
		})
	}
	data, err := json.Marshal(idx)
	if err != nil {
		return nil, fmt.Errorf("updatecachetest: index: %w", err)
	}
	return &Index{MediaType: idx.MediaType, Manifest: data, ManifestDigest: digest.FromBytes(data), Images: images}, nil
}

// buildLayer writes l as a deterministic tar stream (fixed owners and
// times, files in the given order) and compresses it as spec says.
func buildLayer(l Layer, spec ImageSpec) (Blob, error) {
	mtime := time.Unix(0, 0)
	if !spec.Created.IsZero() {
		mtime = spec.Created.Truncate(time.Second)
	}
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, f := range l.Files {
		name := strings.TrimLeft(f.Path, "/")
		if name == "" {
			return Blob{}, fmt.Errorf("file with empty path %q", f.Path)
		}
		hdr := &tar.Header{Name: name, ModTime: mtime, Mode: int64(f.Mode.Perm())}
		defaultMode := int64(0o644)
		switch {
		case f.Mode&fs.ModeDir != 0:
			hdr.Typeflag, hdr.Name, defaultMode = tar.TypeDir, name+"/", 0o755
		case f.Mode&fs.ModeSymlink != 0:
			hdr.Typeflag, hdr.Linkname, defaultMode = tar.TypeSymlink, f.Target, 0o777
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(f.Content))
		}
		if hdr.Mode == 0 {
			hdr.Mode = defaultMode
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return Blob{}, fmt.Errorf("%s: %w", name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Content); err != nil {
				return Blob{}, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return Blob{}, err
	}
	return compressLayer(tarBuf.Bytes(), spec.Compression, spec.Format)
}

// compressLayer makes the layer blob of a tar stream.
func compressLayer(tarData []byte, c Compression, format Format) (Blob, error) {
	diffID := digest.FromBytes(tarData)
	var data []byte
	var mediaType string
	switch c {
	case Uncompressed:
		data, mediaType = tarData, imgspecv1.MediaTypeImageLayer
		if format == Docker {
			mediaType = mediaTypeDockerLayer
		}
	case Gzip:
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz) // zero Header: no name, no time
		if _, err := zw.Write(tarData); err != nil {
			return Blob{}, err
		}
		if err := zw.Close(); err != nil {
			return Blob{}, err
		}
		data, mediaType = gz.Bytes(), imgspecv1.MediaTypeImageLayerGzip
		if format == Docker {
			mediaType = mediaTypeDockerLayerGz
		}
	case Zstd:
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return Blob{}, err
		}
		data, mediaType = enc.EncodeAll(tarData, nil), imgspecv1.MediaTypeImageLayerZstd
		enc.Close()
	default:
		return Blob{}, fmt.Errorf("unknown compression %d", c)
	}
	b := newBlob(mediaType, data)
	b.DiffID = diffID
	return b, nil
}

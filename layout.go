package updatecache

import (
	"fmt"

	digest "github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/importer"
	"github.com/osimage/updatecache/internal/ostree"
)

// layout is which layer of an image is what, as ostree-ext reads it
// (store.rs, parse_manifest_layout). An image without the
// ostree.final-diffid label is plain: every layer is derived. Otherwise
// the first layer is the commit layer (the OSTree commit ostree-ext
// encapsulated, ostree.commit), the layers up to the one whose diff_id the
// label names are chunks (object sets), and the ones after it derived.
type layout struct {
	base  string               // the encapsulated commit; "" for a plain image
	kinds []importer.LayerKind // per layer of the manifest
}

// layoutOf reads img's layout. A layout this library cannot import
// exactly is ErrUnsupportedImage: the final diff_id names no layer or more
// than one, the commit label is missing, or one blob is listed as two
// kinds of layer (its blob ref can hold only one).
func layoutOf(img *Image) (*layout, error) {
	l := &layout{kinds: make([]importer.LayerKind, len(img.Layers))} // all derived
	if img.finalDiffID == "" {
		return l, nil
	}
	unsupported := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrUnsupportedImage, img.ManifestDigest, fmt.Sprintf(format, args...))
	}
	if !ostree.ValidChecksum(img.ostreeCommit) {
		return nil, unsupported("encapsulated (it has %s) without an OSTree commit checksum in %s", "ostree.final-diffid", "ostree.commit")
	}
	target := -1
	for i, layer := range img.Layers {
		if layer.DiffID == img.finalDiffID {
			target = i
			break
		}
	}
	if target < 0 {
		return nil, unsupported("no layer has the diff_id %s its ostree.final-diffid names", img.finalDiffID)
	}
	l.base = img.ostreeCommit
	first, last := img.Layers[0], img.Layers[target]
	after := false
	for i, layer := range img.Layers {
		switch {
		case layer == last:
			if after {
				return nil, unsupported("the final layer %s is listed twice", layer.Digest)
			}
			after = true
			l.kinds[i] = importer.ObjectSetLayer
		case !after:
			l.kinds[i] = importer.ObjectSetLayer
		default:
			l.kinds[i] = importer.DerivedLayer
		}
		if layer == first && l.kinds[i] == importer.ObjectSetLayer {
			l.kinds[i] = importer.CommitLayer // the first layer, or a repeat of it among the chunks
		}
	}
	kindOf := map[digest.Digest]importer.LayerKind{}
	for i, layer := range img.Layers {
		if k, seen := kindOf[layer.Digest]; seen && k != l.kinds[i] {
			return nil, unsupported("layer %s is listed both as a %s and as a %s", layer.Digest, k, l.kinds[i])
		}
		kindOf[layer.Digest] = l.kinds[i]
	}
	return l, nil
}

// derived returns the blob refs of img's derived layers, in order: what
// the merge commit stacks on the base (and relabels, moving the refs).
func (l *layout) derived(img *Image) ([]string, error) {
	var refs []string
	for i, k := range l.kinds {
		if k == importer.DerivedLayer {
			ref, err := ostree.BlobRefName(img.Layers[i].Digest.String())
			if err != nil {
				return nil, fmt.Errorf("%w: layer %s: %v", ErrInvalidMetadata, img.Layers[i].Digest, err)
			}
			refs = append(refs, ref)
		}
	}
	return refs, nil
}

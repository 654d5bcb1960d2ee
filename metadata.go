package updatecache

import (
	"cmp"
	"encoding/json"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/keys"
)

// Image metadata: what the cache shows about an image, derived only from its
// manifest and config JSON. Nothing here touches the network or the repository.

// Layer is one layer of an image as its manifest describes it.
type Layer struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"` // compressed size: what a pull downloads
	MediaType string        `json:"mediaType,omitempty"`
	// DiffID is the digest of the uncompressed layer, from the config's
	// rootfs.diff_ids; empty when the config does not list it.
	DiffID digest.Digest `json:"diffID,omitempty"`
}

// Image describes one per-platform image.
type Image struct {
	// ManifestDigest is the digest of the per-platform manifest (never an index).
	ManifestDigest digest.Digest
	// TopDigest is the digest the tag pointed to: an index for a multi-arch
	// image, otherwise equal to ManifestDigest. Empty when not known, as for
	// images deployed by tools that do not record it.
	TopDigest digest.Digest
	// ConfigDigest is the digest of the image config: the image ID, which
	// stays the same when only the manifest is rewritten.
	ConfigDigest digest.Digest
	// Version is the config label org.opencontainers.image.version, else
	// the label version; empty when neither is set.
	Version string
	// Timestamp is when the image was made, as bootc shows it: the config
	// label org.opencontainers.image.created, else the config's created
	// time; zero when neither is set.
	Timestamp time.Time
	// commitTime is what ostree-ext dates a merge commit by: the manifest
	// annotation org.opencontainers.image.created, else the config's
	// created time; zero when neither is set.
	commitTime time.Time
	// ostreeCommit and finalDiffID are the config labels of an image
	// ostree-ext encapsulated (keys.CommitLabel, keys.FinalDiffIDLabel);
	// empty for a plain image.
	ostreeCommit string
	finalDiffID  digest.Digest
	OS           string
	Architecture string
	Variant      string
	Layers       []Layer
}

// ManifestDiff compares the layers of two images the way ostree-ext and
// rpm-ostree do: layers are keyed by digest (a layer listed twice counts
// once, but for TotalSize, which as in ostree-ext sums the manifest's list)
// and sizes are compressed blob sizes.
type ManifestDiff struct {
	Total       int   `json:"total"`     // distinct layers in the new image
	TotalSize   int64 `json:"totalSize"` // the size of every layer the manifest lists
	NRemoved    int   `json:"nRemoved"`  // layers only in the old image
	RemovedSize int64 `json:"removedSize"`
	NAdded      int   `json:"nAdded"` // layers only in the new image: what a pull downloads
	AddedSize   int64 `json:"addedSize"`
}

// manifestJSON holds the fields shared by OCI image manifests and Docker
// schema 2 manifests.
type manifestJSON struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        descriptorJSON    `json:"config"`
	Layers        []descriptorJSON  `json:"layers"`
	Annotations   map[string]string `json:"annotations"`
}

type descriptorJSON struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type configJSON struct {
	Created      *time.Time `json:"created"`
	OS           string     `json:"os"`
	Architecture string     `json:"architecture"`
	Variant      string     `json:"variant"`
	Config       struct {
		Labels map[string]string `json:"Labels"`
	} `json:"config"`
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// parseImage derives an Image from a per-platform manifest and its config.
// The JSON may have been re-serialised (ostree-ext does so), so it is parsed,
// never hash-checked here; callers verify digests of bytes they fetched.
// A config of "null" (written by very old ostree-ext) yields no version,
// platform or config time.
func parseImage(manifestDigest digest.Digest, manifest, config []byte) (*Image, error) {
	if err := manifestDigest.Validate(); err != nil {
		return nil, fmt.Errorf("%w: manifest digest %q: %v", ErrInvalidMetadata, manifestDigest, err)
	}
	var m manifestJSON
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrInvalidMetadata, manifestDigest, err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: manifest %s: schemaVersion %d, want 2", ErrInvalidMetadata, manifestDigest, m.SchemaVersion)
	}
	img := &Image{ManifestDigest: manifestDigest}
	var err error
	if img.ConfigDigest, err = parseDigest(m.Config.Digest); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: config: %v", ErrInvalidMetadata, manifestDigest, err)
	}
	img.Layers = make([]Layer, 0, len(m.Layers))
	for i, l := range m.Layers {
		d, err := parseDigest(l.Digest)
		if err != nil {
			return nil, fmt.Errorf("%w: manifest %s: layer %d: %v", ErrInvalidMetadata, manifestDigest, i, err)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("%w: manifest %s: layer %d: negative size", ErrInvalidMetadata, manifestDigest, i)
		}
		img.Layers = append(img.Layers, Layer{Digest: d, Size: l.Size, MediaType: l.MediaType})
	}
	img.commitTime = parseTime(m.Annotations[keys.CreatedLabel])

	var c *configJSON
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("%w: config of %s: %v", ErrInvalidMetadata, manifestDigest, err)
	}
	if c != nil {
		img.OS, img.Architecture, img.Variant = c.OS, c.Architecture, c.Variant
		img.Version = c.Config.Labels[keys.VersionLabel]
		if img.Version == "" {
			img.Version = c.Config.Labels[keys.LegacyVersionLabel]
		}
		img.Timestamp = parseTime(c.Config.Labels[keys.CreatedLabel])
		img.ostreeCommit = c.Config.Labels[keys.CommitLabel]
		img.finalDiffID = digest.Digest(c.Config.Labels[keys.FinalDiffIDLabel])
		if c.Created != nil {
			img.Timestamp = cmp.Or(img.Timestamp, c.Created.UTC())
			img.commitTime = cmp.Or(img.commitTime, c.Created.UTC())
		}
		if len(c.RootFS.DiffIDs) == len(img.Layers) {
			for i, s := range c.RootFS.DiffIDs {
				if img.Layers[i].DiffID, err = parseDigest(s); err != nil {
					return nil, fmt.Errorf("%w: config of %s: diff ID %d: %v", ErrInvalidMetadata, manifestDigest, i, err)
				}
			}
		}
	}
	return img, nil
}

// mergeCommitTime is the time of the image's merge commit, as ostree-ext
// chooses it: commitTime, else now; in whole seconds, not before 1970 (a
// commit cannot record an earlier time).
func (img *Image) mergeCommitTime() time.Time {
	ts := img.commitTime
	switch {
	case ts.IsZero():
		ts = time.Now()
	case ts.Before(time.Unix(0, 0)):
		ts = time.Unix(0, 0)
	}
	return ts.UTC().Truncate(time.Second)
}

// parseTime reads an RFC 3339 time; anything else is no time.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("digest %q: %v", s, err)
	}
	return d, nil
}

// Platform returns the image's platform as os/arch[/variant], or "" when the
// config does not say.
func (img *Image) Platform() string { return formatPlatform(img.OS, img.Architecture, img.Variant) }

// formatPlatform is os/arch[/variant], or "" without os or arch.
func formatPlatform(os, arch, variant string) string {
	if os == "" || arch == "" {
		return ""
	}
	p := os + "/" + arch
	if variant != "" {
		p += "/" + variant
	}
	return p
}

// isOlder reports whether img is older than than: an older version, or an
// older creation time (each when both images have one).
func isOlder(img, than *Image) bool {
	olderVersion := img.Version != "" && than.Version != "" && compareVersions(img.Version, than.Version) < 0
	olderTime := !img.Timestamp.IsZero() && !than.Timestamp.IsZero() && img.Timestamp.Before(than.Timestamp)
	return olderVersion || olderTime
}

// diffLayers compares the layers of from and to; from may be nil (nothing
// deployed), in which case every layer of to is added.
func diffLayers(from, to *Image) ManifestDiff {
	var d ManifestDiff
	old := map[digest.Digest]bool{}
	if from != nil {
		for _, l := range from.Layers {
			old[l.Digest] = true
		}
	}
	current := map[digest.Digest]bool{}
	for _, l := range to.Layers {
		d.TotalSize += l.Size
		if current[l.Digest] {
			continue // listed twice, downloaded once
		}
		current[l.Digest] = true
		d.Total++
		if !old[l.Digest] {
			d.NAdded++
			d.AddedSize += l.Size
		}
	}
	if from != nil {
		removed := map[digest.Digest]bool{}
		for _, l := range from.Layers {
			if !current[l.Digest] && !removed[l.Digest] {
				d.NRemoved++
				d.RemovedSize += l.Size
				removed[l.Digest] = true
			}
		}
	}
	return d
}

package updatecache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/keys"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/registry"
)

// The cached update: an update Prepare found, stored as detached metadata
// of the deployed merge commit under ostree-ext's keys (with the exact bytes
// the registry served) and this library's own (see internal/keys).

// CachedUpdate is an update that Prepare found and cached on the deployed
// merge commit: its manifest and config, never its layers.
type CachedUpdate struct {
	Image
	// CheckedAt is when Prepare fetched it; zero for a cache written by ostree-ext.
	CheckedAt time.Time
	// Diff compares the deployed image's layers with the update's.
	Diff ManifestDiff
	// ConfigChanged reports whether the image config differs from the
	// deployed one. An update whose layers are all deployed already still
	// changes the config: it is an update all the same.
	ConfigChanged bool
	// ToFetch is what pulling the update downloads: its layers the
	// repository does not hold yet (as blob refs), which can be fewer than
	// Diff's added layers after an interrupted pull or when another image
	// shares them.
	ToFetch FetchSize
	// PlatformChanged reports that the update is for another platform
	// (os/arch[/variant]) than the deployed image, as when a check asks for
	// another one.
	PlatformChanged bool
	// Downgrade reports that the update is older than the deployed image:
	// an older version (compared as rpm compares versions) or an older
	// creation time. rpm-ostree refuses such updates unless told to.
	Downgrade bool
	// Signature is the signature policy's verdict when the check verified
	// signatures (RegistryOptions.VerifySignatures), else nil.
	Signature *SignatureVerdict
}

// newCachedUpdate describes img as an update of deployed (which may be nil),
// or returns nil when img is what is deployed.
func newCachedUpdate(deployed *Deployed, img *Image, checkedAt time.Time, verdict *SignatureVerdict) *CachedUpdate {
	var from *Image
	if deployed != nil {
		if deployed.sameImage(img) {
			return nil
		}
		from = &deployed.Image
	}
	return &CachedUpdate{
		Image:           *img,
		CheckedAt:       checkedAt,
		Diff:            diffLayers(from, img),
		ConfigChanged:   from == nil || from.ConfigDigest != img.ConfigDigest,
		Downgrade:       from != nil && isOlder(img, from),
		PlatformChanged: from != nil && from.Platform() != "" && img.Platform() != "" && from.Platform() != img.Platform(),
		Signature:       verdict,
	}
}

// FetchSize counts layers and their compressed bytes.
type FetchSize struct {
	Layers int   `json:"layers"`
	Size   int64 `json:"size"`
}

// cachedRecord is a cached update as stored in detached metadata.
type cachedRecord struct {
	manifestDigest digest.Digest
	manifest       []byte
	config         []byte
	topDigest      digest.Digest // empty when written by ostree-ext
	checkedAt      time.Time     // zero when written by ostree-ext
	platform       string
	signature      *SignatureVerdict // nil when not evaluated
}

// newCachedRecord is the record of a fetched image, checked at checkedAt.
func newCachedRecord(f *fetchedImage, verdict *SignatureVerdict, checkedAt time.Time) *cachedRecord {
	return &cachedRecord{
		manifestDigest: f.raw.ManifestDigest,
		manifest:       f.raw.Manifest,
		config:         f.raw.Config,
		topDigest:      f.raw.TopDigest,
		checkedAt:      checkedAt,
		platform:       formatPlatform(f.raw.Platform.OS, f.raw.Platform.Architecture, f.raw.Platform.Variant),
		signature:      verdict,
	}
}

// Stored signature verdicts (keys.CachedSignature).
const (
	signatureAccepted       = "accepted"
	signatureRejectedPrefix = "rejected: "
)

// readCachedRecord extracts the cached update from detached metadata, or
// returns nil when there is none. As in ostree-ext, no digest key means no
// cached update, and a digest without its manifest or config is corrupt.
func readCachedRecord(md gvariant.VarDict) (*cachedRecord, error) {
	d, ok, err := md.LookupString(keys.CachedManifestDigest)
	if err != nil {
		return nil, corruptCache(err)
	}
	if !ok {
		return nil, nil
	}
	rec := &cachedRecord{}
	if rec.manifestDigest, err = parseDigest(d); err != nil {
		return nil, corruptCache(err)
	}
	var firstErr error
	get := func(key string, required bool) string {
		v, ok, err := md.LookupString(key)
		if err == nil && !ok && required {
			err = fmt.Errorf("%s present but %s missing", keys.CachedManifestDigest, key)
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return v
	}
	rec.manifest = []byte(get(keys.CachedManifest, true))
	rec.config = []byte(get(keys.CachedConfig, true))
	top, checkedAt := get(keys.CachedTopDigest, false), get(keys.CachedCheckedAt, false)
	rec.platform = get(keys.CachedPlatform, false)
	signature := get(keys.CachedSignature, false)
	if firstErr != nil {
		return nil, corruptCache(firstErr)
	}
	if top != "" {
		if rec.topDigest, err = parseDigest(top); err != nil {
			return nil, corruptCache(err)
		}
	}
	if checkedAt != "" {
		if rec.checkedAt, err = time.Parse(time.RFC3339, checkedAt); err != nil {
			return nil, corruptCache(fmt.Errorf("%s: %v", keys.CachedCheckedAt, err))
		}
	}
	switch {
	case signature == "":
	case signature == signatureAccepted:
		rec.signature = &SignatureVerdict{Allowed: true}
	case strings.HasPrefix(signature, signatureRejectedPrefix):
		rec.signature = &SignatureVerdict{Reason: strings.TrimPrefix(signature, signatureRejectedPrefix)}
	default:
		return nil, corruptCache(fmt.Errorf("%s: unknown verdict %q", keys.CachedSignature, signature))
	}
	return rec, nil
}

// updateOf describes the record as an update of deployed; nil when the
// record is the deployed image itself.
func (rec *cachedRecord) updateOf(deployed *Deployed) (*CachedUpdate, error) {
	img, err := parseImage(rec.manifestDigest, rec.manifest, rec.config)
	if err != nil {
		return nil, corruptCache(err)
	}
	img.TopDigest = rec.topDigest
	return newCachedUpdate(deployed, img, rec.checkedAt, rec.signature), nil
}

// registryImage describes the record as the registry side does, to
// evaluate the signature policy for it again without fetching it; top is
// the digest the tag names (the record's manifest, or its index).
func (rec *cachedRecord) registryImage(top digest.Digest) *registry.Image {
	return &registry.Image{
		TopDigest:         top,
		ManifestDigest:    rec.manifestDigest,
		ManifestMediaType: manifest.GuessMIMEType(rec.manifest),
		Manifest:          rec.manifest,
		Config:            rec.config,
	}
}

// store sets the record's keys in md, replacing any earlier cached update and
// keeping every other key as it was.
func (rec *cachedRecord) store(md *gvariant.VarDict) error {
	if !utf8.Valid(rec.manifest) || !utf8.Valid(rec.config) {
		return fmt.Errorf("%w: manifest or config of %s is not UTF-8", ErrInvalidMetadata, rec.manifestDigest)
	}
	deleteCachedUpdate(md)
	md.Set(keys.CachedManifestDigest, gvariant.NewString(rec.manifestDigest.String()))
	md.Set(keys.CachedManifest, gvariant.NewString(string(rec.manifest)))
	md.Set(keys.CachedConfig, gvariant.NewString(string(rec.config)))
	if rec.topDigest != "" {
		md.Set(keys.CachedTopDigest, gvariant.NewString(rec.topDigest.String()))
	}
	md.Set(keys.CachedCheckedAt, gvariant.NewString(rec.checkedAt.UTC().Format(time.RFC3339)))
	if rec.platform != "" {
		md.Set(keys.CachedPlatform, gvariant.NewString(rec.platform))
	}
	if v := rec.signature; v != nil {
		verdict := signatureAccepted
		if !v.Allowed {
			verdict = signatureRejectedPrefix + v.Reason
		}
		md.Set(keys.CachedSignature, gvariant.NewString(verdict))
	}
	return nil
}

// deleteCachedUpdate removes every cached-update key from md.
func deleteCachedUpdate(md *gvariant.VarDict) {
	for _, k := range keys.CachedUpdate {
		md.Delete(k)
	}
}

func corruptCache(err error) error {
	return fmt.Errorf("%w: %w", ErrCorruptCache, err)
}

// readDetached reads a commit's detached metadata; a corrupt file is reported
// as a corrupt cache, since the cache is what lives there.
func readDetached(repo *ostree.Repo, commit string) (gvariant.VarDict, error) {
	md, _, err := repo.ReadDetachedMetadata(commit)
	if errors.Is(err, ostree.ErrCorrupt) {
		return nil, corruptCache(err)
	}
	return md, err
}

// updateDetached changes a merge commit's detached metadata in place under
// the repository lock; keys that change does not touch are kept as they were.
func (r *Repo) updateDetached(ctx context.Context, commit string, change func(md *gvariant.VarDict) error) error {
	_, err := r.ostree.UpdateDetachedMetadata(ctx, commit, func(md gvariant.VarDict) (gvariant.VarDict, error) {
		if err := change(&md); err != nil {
			return nil, err
		}
		return md, nil
	})
	switch {
	case errors.Is(err, ErrCorruptRepo) && !errors.Is(err, ErrCorruptCache):
		err = corruptCache(err)
	case errors.Is(err, ostree.ErrTooLarge):
		// Nothing was written: the file would be over what readers accept.
		err = fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return err
}

// ClearCachedUpdate removes the cached update from the image's deployed merge
// commit: ostree-ext's cached keys and this library's, and nothing else.
// Clearing when nothing is cached writes nothing and is not an error. A
// detached metadata file that does not parse is left as it is, with an error
// wrapping ErrCorruptCache.
func ClearCachedUpdate(ctx context.Context, repo *Repo, image string) error {
	ir, err := parseImageRef(image)
	if err != nil {
		return err
	}
	commit, err := repo.mergeCommit(ir)
	if err != nil {
		return err
	}
	return repo.updateDetached(ctx, commit, func(md *gvariant.VarDict) error {
		deleteCachedUpdate(md)
		return nil
	})
}

package updatecache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	digest "github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/ostree"
)

// Metadata keys. The ostree.* keys on merge commits and the ostree-ext.cached.*
// detached keys are ostree-ext's, so that rpm-ostree, bootc and this library
// can share a repository; the updatecache.* keys are this project's additions.
const (
	// Commit metadata of a merge commit (ostree-ext).
	keyManifestDigest  = "ostree.manifest-digest"
	keyManifest        = "ostree.manifest"
	keyImageConfig     = "ostree.container.image-config"
	keyImporterVersion = "ostree.importer.version"
	// keyTopDigest, in the commit metadata of merge commits this library
	// writes, is the digest the tag pointed to (an index for multi-arch images).
	keyTopDigest = "updatecache.top-digest"

	// Detached metadata of the deployed merge commit: the cached update.
	keyCachedManifestDigest = "ostree-ext.cached.manifest-digest"
	keyCachedManifest       = "ostree-ext.cached.manifest"
	keyCachedConfig         = "ostree-ext.cached.config"
	keyCachedTopDigest      = "updatecache.cached.top-digest"
	keyCachedCheckedAt      = "updatecache.cached.checked-at"
	keyCachedPlatform       = "updatecache.cached.platform"
	// keyCachedSignature is the signature policy's verdict: "accepted", or
	// "rejected: " and the reason; absent when not evaluated.
	keyCachedSignature = "updatecache.cached.signature"

	// keyDeployedTopDigest, in the detached metadata of a merge commit written
	// by another tool, records the top-level digest learned for the deployed
	// image, so that the next check of a multi-arch tag needs only a HEAD.
	keyDeployedTopDigest = "updatecache.deployed.top-digest"
)

// cachedUpdateKeys are every key of a cached update, ostree-ext's and ours:
// what ClearCachedUpdate removes and nothing else.
var cachedUpdateKeys = []string{
	keyCachedManifestDigest, keyCachedManifest, keyCachedConfig,
	keyCachedTopDigest, keyCachedCheckedAt, keyCachedPlatform, keyCachedSignature,
}

const (
	signatureAccepted       = "accepted"
	signatureRejectedPrefix = "rejected: "
)

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

// readCachedRecord extracts the cached update from detached metadata, or
// returns nil when there is none. As in ostree-ext, no digest key means no
// cached update, and a digest without its manifest or config is corrupt.
func readCachedRecord(md gvariant.VarDict) (*cachedRecord, error) {
	d, ok, err := md.LookupString(keyCachedManifestDigest)
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
			err = fmt.Errorf("%s present but %s missing", keyCachedManifestDigest, key)
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return v
	}
	rec.manifest = []byte(get(keyCachedManifest, true))
	rec.config = []byte(get(keyCachedConfig, true))
	top, checkedAt := get(keyCachedTopDigest, false), get(keyCachedCheckedAt, false)
	rec.platform = get(keyCachedPlatform, false)
	signature := get(keyCachedSignature, false)
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
			return nil, corruptCache(fmt.Errorf("%s: %v", keyCachedCheckedAt, err))
		}
	}
	switch {
	case signature == "":
	case signature == signatureAccepted:
		rec.signature = &SignatureVerdict{Allowed: true}
	case strings.HasPrefix(signature, signatureRejectedPrefix):
		rec.signature = &SignatureVerdict{Reason: strings.TrimPrefix(signature, signatureRejectedPrefix)}
	default:
		return nil, corruptCache(fmt.Errorf("%s: unknown verdict %q", keyCachedSignature, signature))
	}
	return rec, nil
}

// store sets the record's keys in md, replacing any earlier cached update and
// keeping every other key as it was.
func (rec *cachedRecord) store(md *gvariant.VarDict) error {
	if !utf8.Valid(rec.manifest) || !utf8.Valid(rec.config) {
		return fmt.Errorf("%w: manifest or config of %s is not UTF-8", ErrInvalidMetadata, rec.manifestDigest)
	}
	deleteCachedUpdate(md)
	md.Set(keyCachedManifestDigest, gvariant.NewString(rec.manifestDigest.String()))
	md.Set(keyCachedManifest, gvariant.NewString(string(rec.manifest)))
	md.Set(keyCachedConfig, gvariant.NewString(string(rec.config)))
	if rec.topDigest != "" {
		md.Set(keyCachedTopDigest, gvariant.NewString(rec.topDigest.String()))
	}
	md.Set(keyCachedCheckedAt, gvariant.NewString(rec.checkedAt.UTC().Format(time.RFC3339)))
	if rec.platform != "" {
		md.Set(keyCachedPlatform, gvariant.NewString(rec.platform))
	}
	if v := rec.signature; v != nil {
		verdict := signatureAccepted
		if !v.Allowed {
			verdict = signatureRejectedPrefix + v.Reason
		}
		md.Set(keyCachedSignature, gvariant.NewString(verdict))
	}
	return nil
}

// deleteCachedUpdate removes every cached-update key from md.
func deleteCachedUpdate(md *gvariant.VarDict) {
	for _, k := range cachedUpdateKeys {
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
	if err != nil {
		if errors.Is(err, ostree.ErrCorrupt) {
			return nil, corruptCache(err)
		}
		return nil, err
	}
	return md, nil
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

package updatecache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/keys"
	"github.com/osimage/updatecache/internal/registry"
)

// PrepareOptions configure Prepare.
type PrepareOptions struct {
	RegistryOptions
}

// Outcome is what an update check found; like ostree-ext's PrepareResult
// (AlreadyPresent, Ready), it lets callers branch without reading Reason.
type Outcome int

const (
	// NoUpdate: the registry serves the deployed image.
	NoUpdate Outcome = iota + 1
	// UpdateCached: the registry has another image, and it is cached on the
	// deployed merge commit (by this check or an earlier one).
	UpdateCached
	// UpdateNotDeployed: the registry has an image, but nothing is deployed
	// for the reference, so there is no merge commit to cache it on.
	UpdateNotDeployed
	// UpdateReadOnly: the registry has another image, but the repository is
	// read-only, so it was not cached.
	UpdateReadOnly
)

func (o Outcome) String() string {
	switch o {
	case NoUpdate:
		return "no-update"
	case UpdateCached:
		return "update-cached"
	case UpdateNotDeployed:
		return "update-not-deployed"
	case UpdateReadOnly:
		return "update-read-only"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// PrepareResult is the outcome of an update check.
type PrepareResult struct {
	ImageState
	Outcome Outcome
	// Reason says, in words, why there is no update or why it was not cached.
	Reason string
}

// UpdateAvailable reports whether the registry has an image other than the
// deployed one; CachedUpdate then describes it.
func (r *PrepareResult) UpdateAvailable() bool {
	return r.Outcome == UpdateCached || r.Outcome == UpdateNotDeployed || r.Outcome == UpdateReadOnly
}

// Persisted reports whether CachedUpdate is stored on the deployed merge
// commit, so that QueryCachedUpdate shows it later without the network.
func (r *PrepareResult) Persisted() bool { return r.Outcome == UpdateCached }

// Prepare checks the registry for a new image for the image reference and
// caches its manifest and config (never its layers) as detached metadata of
// the deployed merge commit.
//
// The check costs one HEAD request when the tag still points to the deployed
// image or to the update already cached: then nothing is fetched and nothing
// written. Otherwise the manifest is fetched by the digest the HEAD returned
// (an index is resolved to the requested platform) and then the config; every
// digest and size is verified. An image equal to the deployed one (same
// manifest or same config) is no update, and a stale cached update is
// removed. A new image is cached: ostree-ext's keys with the exact bytes the
// registry served, plus this library's own; every other detached key of the
// commit is kept.
//
// When the registry no longer knows the tag (ErrManifestUnknown), an update
// cached for it earlier is removed: it is not what the tag names any more.
// A platform asked for (RegistryOptions.Platform) other than the deployed
// image's is resolved even when the tag did not move.
//
// With nothing deployed, or a read-only repository, Prepare reports what the
// registry has (Outcome UpdateNotDeployed or UpdateReadOnly, Reason saying
// why); that is not an error. Registry failures leave the repository as it
// was.
func Prepare(ctx context.Context, repo *Repo, image string, opts PrepareOptions) (*PrepareResult, error) {
	ir, err := parseImageRef(image)
	if err != nil {
		return nil, err
	}
	res := &PrepareResult{ImageState: ImageState{Image: ir.name}}
	d, err := repo.deploymentOf(ir)
	if d != nil {
		res.Deployed = d.deployed
	}
	if err != nil && !errors.Is(err, ErrNotDeployed) {
		// A cache that cannot be read is left alone: writing over it could
		// destroy it and whatever else its file holds.
		return res, err
	}
	if d != nil && d.isDeployed(ir.pinnedDigest()) {
		return res, repo.noUpdate(ctx, res, d, "the reference is pinned to the deployed digest", "")
	}
	ch, err := opts.check(ctx, ir)
	if errors.Is(err, ErrManifestUnknown) && d != nil && d.record != nil {
		// The tag names nothing now: what was cached for it is not current.
		repo.forgetUpdate(ctx, d)
	}
	if err != nil {
		return res, err
	}
	defer ch.Close()
	top := ch.TopDigest()
	switch {
	case d != nil && d.isDeployed(top) && !opts.otherPlatform(d.deployed.Platform()):
		return res, repo.noUpdate(ctx, res, d, "the registry still serves the deployed image", "")
	case d != nil && d.isCached(top) && !opts.otherPlatform(d.record.platform):
		return res, repo.stillCached(ctx, res, d, ir, ch, opts.RegistryOptions)
	}
	f, verdict, err := opts.fetch(ctx, ir, ch)
	if err != nil {
		return res, err
	}
	return res, repo.cacheUpdate(ctx, res, d, f, verdict)
}

// stillCached reports the update cached earlier, which the tag still
// names. With signatures verified, the policy as it is now decides again
// (its verdict may have changed since), and a new verdict is stored.
func (r *Repo) stillCached(ctx context.Context, res *PrepareResult, d *deployment, ir *imageRef, ch *registry.Check, opts RegistryOptions) error {
	if d.update == nil { // cached by another tool, though it is the deployed image
		return r.noUpdate(ctx, res, d, "the registry's image is the deployed one", "")
	}
	res.CachedUpdate, res.Outcome = d.update, UpdateCached
	verdict, err := opts.verdict(ctx, ir, ch, d.record.registryImage(ch.TopDigest()))
	if err != nil || verdict == nil || d.record.signature != nil && *verdict == *d.record.signature {
		return err
	}
	res.CachedUpdate.Signature, d.record.signature = verdict, verdict
	err = r.updateDetached(ctx, d.deployed.MergeCommit, d.record.store)
	if errors.Is(err, ErrReadOnly) {
		res.Reason = "the repository is read-only, so the new signature verdict was not recorded"
		return nil
	}
	return err
}

// cacheUpdate records the fetched image as the update of the deployment d
// (nil when nothing is deployed), or as no update when it is the deployed
// image.
func (r *Repo) cacheUpdate(ctx context.Context, res *PrepareResult, d *deployment, f *fetchedImage, verdict *SignatureVerdict) error {
	now := time.Now().UTC().Truncate(time.Second)
	if d == nil {
		res.CachedUpdate, res.Outcome = newCachedUpdate(nil, f.image, now, verdict), UpdateNotDeployed
		res.CachedUpdate.ToFetch = r.toFetch(f.image.Layers)
		res.Reason = fmt.Sprintf("nothing is deployed for %s, so there is no merge commit to cache the update on", res.Image)
		return nil
	}
	if d.deployed.sameImage(f.image) {
		learned := ""
		if d.deployed.TopDigest == "" && f.raw.TopDigest != f.raw.ManifestDigest {
			learned = f.raw.TopDigest.String()
		}
		return r.noUpdate(ctx, res, d, "the registry's image is the deployed one", learned)
	}
	res.CachedUpdate = newCachedUpdate(d.deployed, f.image, now, verdict)
	res.CachedUpdate.ToFetch = r.toFetch(f.image.Layers)
	rec := newCachedRecord(f, verdict, now)
	err := r.updateDetached(ctx, d.deployed.MergeCommit, rec.store)
	switch {
	case errors.Is(err, ErrReadOnly):
		res.Outcome = UpdateReadOnly
		res.Reason = fmt.Sprintf("the repository is read-only, so the update was not cached: %v", err)
		return nil
	case err != nil:
		return fmt.Errorf("caching the update of %s: %w", res.Image, err)
	}
	res.Outcome = UpdateCached
	return nil
}

// forgetUpdate removes the update cached on d, best effort: a read-only
// repository keeps it.
func (r *Repo) forgetUpdate(ctx context.Context, d *deployment) {
	_ = r.updateDetached(ctx, d.deployed.MergeCommit, func(md *gvariant.VarDict) error {
		deleteCachedUpdate(md)
		return nil
	})
}

// noUpdate records that the deployed image is current: a cached update left
// from an earlier check is stale and is removed, and a top-level digest
// learned for the deployed image is remembered. Nothing is written when
// neither applies.
func (r *Repo) noUpdate(ctx context.Context, res *PrepareResult, d *deployment, reason, learnedTop string) error {
	res.Outcome, res.Reason = NoUpdate, reason
	if d.record == nil && learnedTop == "" {
		return nil
	}
	err := r.updateDetached(ctx, d.deployed.MergeCommit, func(md *gvariant.VarDict) error {
		deleteCachedUpdate(md)
		if learnedTop != "" {
			md.Set(keys.DeployedTopDigest, gvariant.NewString(learnedTop))
		}
		return nil
	})
	if errors.Is(err, ErrReadOnly) {
		res.Reason += "; the repository is read-only, so the stale cached update was kept"
		return nil
	}
	return err
}

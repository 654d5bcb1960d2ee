package updatecache

import (
	"context"
	"errors"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/registry"
)

// RegistryOptions say how to reach registries; Prepare and the fetch
// operations share them.
type RegistryOptions struct {
	// SystemContext carries containers/image settings: auth file, TLS
	// (DockerInsecureSkipTLSVerify), registries.conf, certificates and the
	// OS/architecture/variant choices. Nil means the defaults, which read the
	// usual files (auth.json, registries.conf) as podman and skopeo do.
	SystemContext *types.SystemContext
	// Platform selects the instance of a multi-arch image. Nil means the
	// SystemContext choices, else the running platform.
	Platform *imgspecv1.Platform
	// Offline forbids network access: anything that needs it fails with
	// ErrOffline.
	Offline bool
	// MaxManifestSize and MaxConfigSize cap what is read from the network;
	// zero means the defaults of 4 MiB each.
	MaxManifestSize int64
	MaxConfigSize   int64
	// VerifySignatures evaluates the signature policy (policy.json) for
	// every image fetched: Prepare records the verdict with the cached
	// update, Pull refuses an image the policy rejects (ErrPolicyRejected)
	// before importing anything. References written ostree-image-signed:REF
	// turn it on. It needs the build tag containers_image_openpgp (without
	// it: ErrPolicyUnsupported).
	VerifySignatures bool
	// SignaturePolicyPath names the policy; "" means the SystemContext's,
	// else /etc/containers/policy.json.
	SignaturePolicyPath string
}

// SignatureVerdict is the signature policy's verdict on an image.
type SignatureVerdict struct {
	Allowed bool
	// Reason says why the policy rejects the image.
	Reason string
}

// verdict evaluates the signature policy for img when asked to: nil when
// signatures are not verified.
func (o *RegistryOptions) verdict(ctx context.Context, ir *imageRef, src *registry.Source, img *registry.Image) (*SignatureVerdict, error) {
	if !o.VerifySignatures && !ir.signed {
		return nil, nil
	}
	v, err := src.CheckPolicy(ctx, img, o.SignaturePolicyPath)
	if err != nil {
		return nil, fmt.Errorf("signature policy for %s: %w", ir.name, err)
	}
	return &SignatureVerdict{Allowed: v.Allowed, Reason: v.Reason}, nil
}

// fetch reads the manifest and config of the image pinned to top, with the
// signature verdict when asked for.
func (o *RegistryOptions) fetch(ctx context.Context, ir *imageRef, top digest.Digest) (*registry.Image, *SignatureVerdict, error) {
	src, err := o.client().Open(ctx, ir.ref, top)
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	img, err := src.Image(ctx)
	if err != nil {
		return nil, nil, err
	}
	v, err := o.verdict(ctx, ir, src, img)
	return img, v, err
}

func (o *RegistryOptions) client() *registry.Client {
	return registry.New(registry.Options{
		SystemContext:   o.SystemContext,
		Platform:        o.Platform,
		MaxManifestSize: o.MaxManifestSize,
		MaxConfigSize:   o.MaxConfigSize,
	})
}

// PrepareOptions configure Prepare.
type PrepareOptions struct {
	RegistryOptions
}

// PrepareResult is the outcome of an update check.
type PrepareResult struct {
	ImageState
	// UpdateAvailable reports whether the registry has an image other than the
	// deployed one; CachedUpdate then describes it.
	UpdateAvailable bool
	// Persisted reports whether CachedUpdate is stored on the deployed merge
	// commit, so that QueryCachedUpdate shows it later without the network.
	Persisted bool
	// Reason says, in words, why there is no update or why it was not persisted.
	Reason string
}

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
// With nothing deployed, or a read-only repository, Prepare reports what the
// registry has with Persisted false and Reason saying why; that is not an
// error. Registry failures leave the repository as it was.
func Prepare(ctx context.Context, repo *Repo, image string, opts PrepareOptions) (*PrepareResult, error) {
	ir, err := parseImageRef(image)
	if err != nil {
		return nil, err
	}
	res := &PrepareResult{ImageState: ImageState{Image: ir.name}}

	var ds *deployedState
	commit, err := repo.mergeCommit(ir)
	switch {
	case errors.Is(err, ErrNotDeployed):
	case err != nil:
		return nil, err
	default:
		if ds, err = repo.readDeployed(commit); err != nil {
			return nil, err
		}
		res.Deployed = ds.deployed
		if ds.cacheErr != nil {
			// Writing over a cache we cannot read could destroy it and
			// whatever else the file holds: leave it for the caller to clear.
			return res, fmt.Errorf("merge commit %s: %w", commit, ds.cacheErr)
		}
	}

	if ds != nil && ds.isDeployed(pinnedDigest(ir.ref)) {
		return res, repo.noUpdate(ctx, res, ds, "the reference is pinned to the deployed digest", "")
	}
	if opts.Offline {
		return res, fmt.Errorf("%w: checking %s", ErrOffline, ir.name)
	}

	client := opts.client()
	top, err := client.Digest(ctx, ir.ref)
	if err != nil {
		return res, fmt.Errorf("checking %s: %w", ir.name, err)
	}
	if ds != nil {
		if ds.isDeployed(top) {
			return res, repo.noUpdate(ctx, res, ds, "the registry still serves the deployed image", "")
		}
		if ds.isCached(top) {
			if res.CachedUpdate, err = ds.cachedUpdate(); err != nil {
				return res, err
			}
			if res.CachedUpdate == nil {
				// Cached by another tool though it is the deployed image.
				return res, repo.noUpdate(ctx, res, ds, "the registry's image is the deployed one", "")
			}
			res.UpdateAvailable, res.Persisted = true, true
			return res, nil
		}
	}

	fetched, verdict, err := opts.fetch(ctx, ir, top)
	if err != nil {
		return res, fmt.Errorf("fetching %s@%s: %w", ir.name, top, err)
	}
	img, err := parseImage(fetched.ManifestDigest, fetched.Manifest, fetched.Config)
	if err != nil {
		return res, err
	}
	img.TopDigest = fetched.TopDigest
	now := time.Now().UTC().Truncate(time.Second)
	newUpdate := func() *CachedUpdate {
		u := newCachedUpdate(res.Deployed, img, now)
		if u != nil {
			u.Signature = verdict
		}
		return u
	}

	if ds == nil {
		res.CachedUpdate = newUpdate()
		res.UpdateAvailable = true
		res.Reason = fmt.Sprintf("nothing is deployed for %s, so there is no merge commit to cache the update on", ir.name)
		return res, nil
	}
	if ds.deployed.sameImage(img) {
		learned := ""
		if ds.deployed.TopDigest == "" && fetched.TopDigest != fetched.ManifestDigest {
			learned = fetched.TopDigest.String()
		}
		return res, repo.noUpdate(ctx, res, ds, "the registry's image is the deployed one", learned)
	}

	res.CachedUpdate = newUpdate()
	res.UpdateAvailable = true
	rec := &cachedRecord{
		manifestDigest: fetched.ManifestDigest,
		manifest:       fetched.Manifest,
		config:         fetched.Config,
		topDigest:      fetched.TopDigest,
		checkedAt:      now,
		platform:       formatPlatform(fetched.Platform.OS, fetched.Platform.Architecture, fetched.Platform.Variant),
		signature:      verdict,
	}
	err = repo.updateDetached(ctx, commit, rec.store)
	switch {
	case errors.Is(err, ErrReadOnly):
		res.Reason = fmt.Sprintf("the repository is read-only, so the update was not cached: %v", err)
		return res, nil
	case err != nil:
		return res, fmt.Errorf("caching the update of %s on %s: %w", ir.name, commit, err)
	}
	res.Persisted = true
	return res, nil
}

// isDeployed reports whether d names the deployed image, as a top-level or
// a per-platform manifest digest.
func (ds *deployedState) isDeployed(d digest.Digest) bool {
	return d != "" && (d == ds.deployed.ManifestDigest || d == ds.deployed.TopDigest)
}

// isCached reports whether d names the cached update.
func (ds *deployedState) isCached(d digest.Digest) bool {
	return d != "" && ds.cached != nil && (d == ds.cached.manifestDigest || d == ds.cached.topDigest)
}

// noUpdate records that the deployed image is current: a cached update left
// from an earlier check is stale and is removed, and a top-level digest
// learned for the deployed image is remembered. Nothing is written when
// neither applies.
func (r *Repo) noUpdate(ctx context.Context, res *PrepareResult, ds *deployedState, reason, learnedTop string) error {
	res.Reason = reason
	if ds.cached == nil && learnedTop == "" {
		return nil
	}
	err := r.updateDetached(ctx, ds.deployed.MergeCommit, func(md *gvariant.VarDict) error {
		deleteCachedUpdate(md)
		if learnedTop != "" {
			md.Set(keyDeployedTopDigest, gvariant.NewString(learnedTop))
		}
		return nil
	})
	if errors.Is(err, ErrReadOnly) {
		res.Reason += "; the repository is read-only, so the stale cached update was kept"
		return nil
	}
	return err
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
	if errors.Is(err, ErrCorruptRepo) && !errors.Is(err, ErrCorruptCache) {
		err = corruptCache(err)
	}
	return err
}

// pinnedDigest returns the digest a docker reference is pinned to, or "".
func pinnedDigest(ref types.ImageReference) digest.Digest {
	if named := ref.DockerReference(); named != nil {
		if c, ok := named.(reference.Canonical); ok {
			return c.Digest()
		}
	}
	return ""
}

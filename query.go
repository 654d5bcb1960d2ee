package updatecache

import (
	"errors"
	"fmt"
	"sort"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/ostree"
)

// Deployed is the image held by a merge commit.
type Deployed struct {
	Image
	MergeCommit string
}

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
	// Signature is the signature policy's verdict when the check verified
	// signatures (RegistryOptions.VerifySignatures), else nil.
	Signature *SignatureVerdict
}

// ImageState is what the repository knows about one image, read without the
// network.
type ImageState struct {
	// Image is the image reference (transport:name), or "" when queried by commit.
	Image string
	// Deployed is nil when the repository has no merge commit for the image.
	Deployed *Deployed
	// CachedUpdate is nil when no update is cached, or when the cached one is
	// the deployed image itself.
	CachedUpdate *CachedUpdate
}

// QueryImage reports the deployed image and its cached update, offline. An
// image with no merge commit gives a state with Deployed nil and no error.
// A corrupt cache gives an error wrapping ErrCorruptCache together with the
// state, whose Deployed is still filled in.
func QueryImage(repo *Repo, image string) (*ImageState, error) {
	ir, err := parseImageRef(image)
	if err != nil {
		return nil, err
	}
	st := &ImageState{Image: ir.name}
	commit, err := repo.mergeCommit(ir)
	if errors.Is(err, ErrNotDeployed) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	return repo.queryCommit(st, commit)
}

// QueryCommit is QueryImage for a merge commit given by checksum, as an
// updater knows the commit of its booted deployment.
func QueryCommit(repo *Repo, checksum string) (*ImageState, error) {
	if !ostree.ValidChecksum(checksum) {
		return nil, fmt.Errorf("%w: %q is not a commit checksum", ErrInvalidReference, checksum)
	}
	return repo.queryCommit(&ImageState{}, checksum)
}

// QueryCachedUpdate returns the update cached on the image's deployed merge
// commit, offline; nil when there is none.
func QueryCachedUpdate(repo *Repo, image string) (*CachedUpdate, error) {
	st, err := QueryImage(repo, image)
	if err != nil {
		return nil, err
	}
	return st.CachedUpdate, nil
}

// ListImages reports every deployed image in the repository, sorted by
// reference, offline. An image whose cache is corrupt is still listed, with
// no cached update, and its error is joined into the returned error.
func ListImages(repo *Repo) ([]*ImageState, error) {
	refs, err := repo.ostree.ListRefs(ostree.ImageRefPrefix)
	if err != nil {
		return nil, err
	}
	var states []*ImageState
	var errs []error
	for ref, commit := range refs {
		name, err := ostree.ImageReferenceFromRefName(ref)
		if err != nil {
			errs = append(errs, fmt.Errorf("ref %s: %w", ref, err))
			continue
		}
		st, err := repo.queryCommit(&ImageState{Image: name}, commit)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		if st != nil {
			states = append(states, st)
		}
	}
	sort.Slice(states, func(i, j int) bool { return states[i].Image < states[j].Image })
	return states, errors.Join(errs...)
}

// mergeCommit resolves the image's merge commit; ErrNotDeployed when the
// repository has none.
func (r *Repo) mergeCommit(ir *imageRef) (string, error) {
	ref, err := ir.refName()
	if err != nil {
		return "", err
	}
	commit, err := r.ostree.ResolveRef(ref)
	if errors.Is(err, ostree.ErrRefNotFound) {
		return "", fmt.Errorf("%w: %s (no ref %s)", ErrNotDeployed, ir.name, ref)
	}
	return commit, err
}

// deployedState is the deployed image with the update cached on its merge
// commit.
type deployedState struct {
	deployed *Deployed
	cached   *cachedRecord
	cacheErr error // why the cache could not be read
}

// readDeployed reads a merge commit's image and cached update. A corrupt
// cache is reported in cacheErr, not as an error, so the deployed image stays
// visible.
func (r *Repo) readDeployed(commit string) (*deployedState, error) {
	c, err := r.ostree.ReadCommit(commit)
	if err != nil {
		return nil, err
	}
	get := func(key string) (string, error) {
		v, ok, err := c.Metadata.LookupString(key)
		if err == nil && !ok {
			err = fmt.Errorf("merge commit %s has no %s", commit, key)
		}
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrInvalidMetadata, err)
		}
		return v, nil
	}
	var (
		fields = [3]string{keyManifestDigest, keyManifest, keyImageConfig}
		vals   [3]string
	)
	for i, k := range fields {
		if vals[i], err = get(k); err != nil {
			return nil, err
		}
	}
	img, err := parseImage(digest.Digest(vals[0]), []byte(vals[1]), []byte(vals[2]))
	if err != nil {
		return nil, fmt.Errorf("merge commit %s: %w", commit, err)
	}
	if img.Timestamp.IsZero() {
		img.Timestamp = c.Timestamp
	}
	ds := &deployedState{deployed: &Deployed{Image: *img, MergeCommit: commit}}
	if top, ok, _ := c.Metadata.LookupString(keyTopDigest); ok {
		ds.deployed.TopDigest, _ = parseDigest(top)
	}

	detached, err := readDetached(r.ostree, commit)
	if errors.Is(err, ErrCorruptCache) {
		ds.cacheErr = err
		return ds, nil
	}
	if err != nil {
		return nil, err
	}
	if ds.deployed.TopDigest == "" {
		if top, ok, _ := detached.LookupString(keyDeployedTopDigest); ok {
			ds.deployed.TopDigest, _ = parseDigest(top)
		}
	}
	ds.cached, ds.cacheErr = readCachedRecord(detached)
	return ds, nil
}

// cachedUpdate turns the stored record into what callers see, relative to
// the deployed image; nil when the record is the deployed image itself.
func (ds *deployedState) cachedUpdate() (*CachedUpdate, error) {
	if ds.cached == nil {
		return nil, nil
	}
	img, err := parseImage(ds.cached.manifestDigest, ds.cached.manifest, ds.cached.config)
	if err != nil {
		return nil, corruptCache(err)
	}
	img.TopDigest = ds.cached.topDigest
	u := newCachedUpdate(ds.deployed, img, ds.cached.checkedAt)
	if u != nil {
		u.Signature = ds.cached.signature
	}
	return u, nil
}

// newCachedUpdate describes img as an update of deployed (which may be nil),
// or returns nil when img is what is deployed.
func newCachedUpdate(deployed *Deployed, img *Image, checkedAt time.Time) *CachedUpdate {
	var from *Image
	if deployed != nil {
		if deployed.sameImage(img) {
			return nil
		}
		from = &deployed.Image
	}
	return &CachedUpdate{
		Image:         *img,
		CheckedAt:     checkedAt,
		Diff:          diffLayers(from, img),
		ConfigChanged: from == nil || from.ConfigDigest != img.ConfigDigest,
	}
}

// sameImage reports whether img is the deployed image: the same manifest, or
// the same config (the image ID), as ostree-ext decides.
func (d *Deployed) sameImage(img *Image) bool {
	return d.ManifestDigest == img.ManifestDigest || d.ConfigDigest == img.ConfigDigest
}

func (r *Repo) queryCommit(st *ImageState, commit string) (*ImageState, error) {
	ds, err := r.readDeployed(commit)
	if err != nil {
		return nil, err
	}
	st.Deployed = ds.deployed
	if ds.cacheErr != nil {
		return st, fmt.Errorf("merge commit %s: %w", commit, ds.cacheErr)
	}
	st.CachedUpdate, err = ds.cachedUpdate()
	if err != nil {
		return st, fmt.Errorf("merge commit %s: %w", commit, err)
	}
	return st, nil
}

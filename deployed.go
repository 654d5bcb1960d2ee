package updatecache

import (
	"errors"
	"fmt"

	digest "github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/keys"
	"github.com/osimage/updatecache/internal/ostree"
)

// Deployed is the image held by a merge commit.
type Deployed struct {
	Image
	// MergeCommit is the checksum of the merge commit
	// (ostree/container/image/<escaped reference>) that holds the image and
	// carries its cached update.
	MergeCommit string
}

// deployment is an image's merge commit as read from the repository: the
// deployed image and the update cached on it.
type deployment struct {
	deployed *Deployed
	record   *cachedRecord // nil when nothing is cached
	update   *CachedUpdate // record relative to deployed; nil when none or when it is the deployed image
}

// deploymentOf reads the image's merge commit (see mergeCommit and
// readDeployment).
func (r *Repo) deploymentOf(ir *imageRef) (*deployment, error) {
	commit, err := r.mergeCommit(ir)
	if err != nil {
		return nil, err
	}
	return r.readDeployment(commit)
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

// readDeployment reads a merge commit given by checksum: the deployed image
// and its cached update. A commit that is not an image's merge commit is
// ErrInvalidMetadata. A cache that cannot be read gives the deployment
// (without its cache) together with an error wrapping ErrCorruptCache, so
// the deployed image stays visible.
func (r *Repo) readDeployment(commit string) (*deployment, error) {
	c, err := r.ostree.ReadCommit(commit)
	if err != nil {
		return nil, err
	}
	var vals [3]string
	for i, k := range [3]string{keys.ManifestDigest, keys.Manifest, keys.ImageConfig} {
		v, ok, err := c.Metadata.LookupString(k)
		if err == nil && !ok {
			err = fmt.Errorf("no %s", k)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: merge commit %s: %w", ErrInvalidMetadata, commit, err)
		}
		vals[i] = v
	}
	img, err := parseImage(digest.Digest(vals[0]), []byte(vals[1]), []byte(vals[2]))
	if err != nil {
		return nil, fmt.Errorf("merge commit %s: %w", commit, err)
	}
	if img.Timestamp.IsZero() {
		img.Timestamp = c.Timestamp
	}
	d := &deployment{deployed: &Deployed{Image: *img, MergeCommit: commit}}
	if top, ok, _ := c.Metadata.LookupString(keys.TopDigest); ok {
		d.deployed.TopDigest, _ = parseDigest(top)
	}

	detached, err := readDetached(r.ostree, commit)
	if err == nil {
		if d.deployed.TopDigest == "" {
			if top, ok, _ := detached.LookupString(keys.DeployedTopDigest); ok {
				d.deployed.TopDigest, _ = parseDigest(top)
			}
		}
		if d.record, err = readCachedRecord(detached); err == nil && d.record != nil {
			d.update, err = d.record.updateOf(d.deployed)
		}
		if d.update != nil {
			d.update.ToFetch = r.toFetch(d.update.Layers)
		}
	}
	switch {
	case errors.Is(err, ErrCorruptCache):
		d.record, d.update = nil, nil
		if _, hasPath := errors.AsType[*ostree.CorruptError](err); !hasPath { // a path names the commit
			err = fmt.Errorf("merge commit %s: %w", commit, err)
		}
		return d, err
	case err != nil:
		return nil, err
	}
	return d, nil
}

// isDeployed reports whether dg names the deployed image, as a top-level or
// a per-platform manifest digest.
func (d *deployment) isDeployed(dg digest.Digest) bool {
	return dg != "" && (dg == d.deployed.ManifestDigest || dg == d.deployed.TopDigest)
}

// isCached reports whether dg names the cached update.
func (d *deployment) isCached(dg digest.Digest) bool {
	return dg != "" && d.record != nil && (dg == d.record.manifestDigest || dg == d.record.topDigest)
}

// sameImage reports whether img is the deployed image: the same manifest, or
// the same config (the image ID), as ostree-ext decides.
func (d *Deployed) sameImage(img *Image) bool {
	return d.ManifestDigest == img.ManifestDigest || d.ConfigDigest == img.ConfigDigest
}

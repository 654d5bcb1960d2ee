package updatecache

import (
	"errors"
	"fmt"
	"sort"

	"github.com/osimage/updatecache/internal/ostree"
)

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
	d, err := repo.deploymentOf(ir)
	if errors.Is(err, ErrNotDeployed) {
		return st, nil
	}
	return st.fill(d, err)
}

// QueryCommit is QueryImage for a merge commit given by checksum, as an
// updater knows the commit of its booted deployment.
func QueryCommit(repo *Repo, checksum string) (*ImageState, error) {
	if !ostree.ValidChecksum(checksum) {
		return nil, fmt.Errorf("%w: %q is not a commit checksum", ErrInvalidReference, checksum)
	}
	return (&ImageState{}).fill(repo.readDeployment(checksum))
}

// QueryCachedUpdate returns the update cached on the image's deployed merge
// commit, offline: nil when none is cached, and an error wrapping
// ErrNotDeployed when the repository has no merge commit for the image.
func QueryCachedUpdate(repo *Repo, image string) (*CachedUpdate, error) {
	ir, err := parseImageRef(image)
	if err != nil {
		return nil, err
	}
	d, err := repo.deploymentOf(ir)
	if err != nil {
		return nil, err
	}
	return d.update, nil
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
			errs = append(errs, fmt.Errorf("%w: ref %s: %w", ErrInvalidReference, ref, err))
			continue
		}
		st, err := (&ImageState{Image: name}).fill(repo.readDeployment(commit))
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

// fill completes st from a deployment read with err: nil when nothing
// could be read, else st with err (a corrupt cache still shows the image).
func (st *ImageState) fill(d *deployment, err error) (*ImageState, error) {
	if d == nil {
		return nil, err
	}
	st.Deployed, st.CachedUpdate = d.deployed, d.update
	return st, err
}

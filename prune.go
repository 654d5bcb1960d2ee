package updatecache

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/ostree"
)

// gcRootPrefixes name the refs whose commits keep image layers alive: image
// merge commits, and the refs ostree-ext, rpm-ostree and bootc use for base
// images and deployments.
var gcRootPrefixes = []string{
	ostree.ImageRefPrefix,
	"ostree/container/baseimage/",
	"ostree/0/",
	"ostree/1/",
	"rpmostree/base/",
}

// PruneOptions configure Prune.
type PruneOptions struct {
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
}

// PruneResult reports what Prune removed (or, with DryRun, would remove).
type PruneResult struct {
	// RefsDeleted are the layer refs (ostree/container/blob/…) no image
	// needed, sorted.
	RefsDeleted []string
	// ObjectsDeleted counts the objects no ref reached, as ostree prune
	// counts them (a commit's detached metadata goes with it, uncounted).
	ObjectsDeleted int
	// BytesFreed is the size of the files removed.
	BytesFreed int64
	// TmpRemoved names what interrupted writers had left in the
	// repository's tmp/ and was removed: staging directories no process
	// holds, and other temporary files older than core.tmp-expiry-secs (a
	// day by default). TmpBytesFreed is their size.
	TmpRemoved    []string
	TmpBytesFreed int64
}

// Prune collects garbage, under the exclusive repository lock: first the
// layer refs (ostree/container/blob/…) that no image needs, then every
// object no ref reaches, a commit together with its detached metadata. An
// image needs the layers of its merge commit's manifest; so do the base
// image and deployment refs of ostree-ext, rpm-ostree and bootc, and a
// cached update keeps the layers of the update already fetched, so that a
// pull of the prepared update interrupted earlier resumes where it stopped.
// Those layers are kept only while they can be read: a damaged one, which
// no deployment needs, goes (a prepared pull fetches it again) rather than
// stopping every prune.
//
// Then it removes what interrupted writers (a killed pull, say) left in the
// repository's tmp/, as every write transaction also does. A dry run holds
// the lock shared, so it needs no write access and does not wait for
// libostree's transactions.
func Prune(ctx context.Context, repo *Repo, opts PruneOptions) (*PruneResult, error) {
	n := &neededLayers{repo: repo}
	stats, err := repo.ostree.Prune(ctx, ostree.PruneOptions{
		DryRun:     opts.DryRun,
		SelectRefs: n.unneeded,
		Expendable: n.onlyCached,
	})
	if err != nil {
		return nil, err // it says "prune" and names the repository
	}
	res := &PruneResult{RefsDeleted: stats.RefsDeleted, ObjectsDeleted: stats.ObjectsDeleted, BytesFreed: stats.BytesFreed}
	sort.Strings(res.RefsDeleted)
	tmp, err := repo.ostree.ExpireTmp(ctx, opts.DryRun)
	if tmp != nil {
		res.TmpRemoved, res.TmpBytesFreed = tmp.Removed, tmp.Bytes
	}
	if err != nil {
		return res, fmt.Errorf("cleaning %s/tmp: %w", repo.Path(), err)
	}
	return res, nil
}

// neededLayers finds which layer refs the GC roots need, and why.
type neededLayers struct {
	repo             *Repo
	deployed, cached map[digest.Digest]bool // layers of deployed images; of their cached updates
}

// unneeded returns the layer refs that no GC root's manifest, nor the
// update cached on it, lists. A root whose commit cannot be read stops the
// prune: deleting layers on a guess could delete a deployment's.
func (n *neededLayers) unneeded(refs map[string]string) ([]string, error) {
	n.deployed, n.cached = map[digest.Digest]bool{}, map[digest.Digest]bool{}
	for name, commit := range refs {
		if !isGCRoot(name) {
			continue
		}
		if err := n.add(commit); err != nil {
			return nil, fmt.Errorf("ref %s: %w", name, err)
		}
	}
	var unneeded []string
	for name := range refs {
		if !strings.HasPrefix(name, ostree.BlobRefPrefix) {
			continue
		}
		if d, ok := blobRefDigest(name); !ok || !n.deployed[d] && !n.cached[d] {
			unneeded = append(unneeded, name)
		}
	}
	return unneeded, nil
}

// onlyCached reports a layer ref kept for a cached update alone.
func (n *neededLayers) onlyCached(ref string) bool {
	d, ok := blobRefDigest(ref)
	return ok && !n.deployed[d]
}

// blobRefDigest is the layer digest a blob ref names.
func blobRefDigest(ref string) (digest.Digest, bool) {
	escaped, ok := strings.CutPrefix(ref, ostree.BlobRefPrefix)
	if !ok {
		return "", false
	}
	d, err := ostree.UnescapeRef(escaped)
	return digest.Digest(d), err == nil
}

func isGCRoot(ref string) bool {
	for _, p := range gcRootPrefixes {
		if strings.HasPrefix(ref, p) {
			return true
		}
	}
	return false
}

// add records the layers commit keeps alive: those of its image and of the
// update cached on it. A commit that is not an image (a plain deployment,
// say) keeps none; one whose cache is corrupt keeps its image's.
func (n *neededLayers) add(commit string) error {
	d, err := n.repo.readDeployment(commit)
	switch {
	case errors.Is(err, ErrInvalidMetadata):
		return nil
	case d == nil:
		return err
	}
	for _, l := range d.deployed.Layers {
		n.deployed[l.Digest] = true
	}
	if d.update != nil {
		for _, l := range d.update.Layers {
			n.cached[l.Digest] = true
		}
	}
	return nil
}

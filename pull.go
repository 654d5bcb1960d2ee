package updatecache

import (
	"context"
	"errors"
	"fmt"

	digest "github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/importer"
	"github.com/osimage/updatecache/internal/keys"
)

// ImporterVersion is recorded as ostree.importer.version on merge commits
// this library writes.
const ImporterVersion = "updatecache/0.1"

// DefaultConcurrency is how many layers a pull downloads at once by default.
const DefaultConcurrency = 3

// DefaultMaxLayerSize is the default cap on a layer's uncompressed size
// (32 GiB): beyond any OS image layer seen, while a compression bomb stops
// there.
const DefaultMaxLayerSize = importer.DefaultMaxSize

// PullOptions configure Pull and PullPrepared.
type PullOptions struct {
	RegistryOptions
	// Concurrency bounds the layers downloaded at once; 0 means
	// DefaultConcurrency.
	Concurrency int
	// Progress, if set, is called as the pull goes: first with the plan,
	// then for each layer (already present, or as its download starts, as
	// its bytes arrive and when it is imported), last when the merge commit
	// is being written; see Progress. Calls are serialised, so Progress
	// need not be safe for concurrent use, and it should return quickly.
	Progress func(Progress)
	// NoSELinux leaves an image with derived layers (every plain image)
	// unlabelled. By default, as ostree-ext does, its merge commit is
	// labelled with the SELinux policy the merged tree ships (if it ships
	// one), and so are its layer commits; an image without derived layers
	// keeps its OSTree commit's labels either way.
	NoSELinux bool
	// MaxLayerSize caps each layer's uncompressed size, checked as it
	// streams, so a compression bomb stops there (ErrTooLarge, also
	// ErrInvalidLayer); 0 means DefaultMaxLayerSize.
	MaxLayerSize int64
	// KeepVar imports /var at var instead of usr/share/factory/var, and
	// AllowNonUsr keeps top-level directories other than usr, etc and var;
	// see ostree-ext's rules for derived layers.
	KeepVar, AllowNonUsr bool
}

// Progress reports a pull's progress. The first event carries the Plan,
// before any download; then come the events of single layers (Layer set);
// the last, Merging, says every layer is in and the merge commit is being
// written. A pull of an image already deployed reports nothing.
type Progress struct {
	// Plan is set on the first event only.
	Plan *PullPlan
	// Merging is set on the last event only.
	Merging bool

	Layer    digest.Digest
	Index    int   // the layer's position in the manifest
	Layers   int   // how many layers the image has (on every event)
	Done     int64 // compressed bytes fetched so far
	Total    int64 // compressed size from the manifest
	Reused   bool  // already in the repository: nothing to fetch
	Finished bool  // imported (or reused); Done is Total
}

// PullPlan is what a pull will fetch, known once the manifest is read.
type PullPlan struct {
	ManifestDigest digest.Digest // the per-platform manifest pulled
	// Layers and Bytes are the whole image: its layers and their
	// compressed size.
	Layers int
	Bytes  int64
	// FetchLayers and FetchBytes are the part the repository lacks, which
	// the pull downloads.
	FetchLayers int
	FetchBytes  int64
}

// PullResult describes a completed pull.
type PullResult struct {
	Image       string
	MergeCommit string
	Pulled      Image
	// LayersFetched and BytesFetched count what was downloaded;
	// LayersReused counts layers already in the repository.
	LayersFetched int
	BytesFetched  int64
	LayersReused  int
	// AlreadyDeployed reports that the image was deployed already and
	// nothing was written.
	AlreadyDeployed bool
}

// Pull fetches the image the reference points to now (manifest, config and
// the layers not yet in the repository), imports it and moves the image's
// ref to a new merge commit written as ostree-ext writes it. Every digest is
// verified; with VerifySignatures the signature policy must accept the image
// before anything is imported. An interrupted pull leaves the repository
// consistent (the ref moves last), and the next pull reuses the layers
// already imported.
func Pull(ctx context.Context, repo *Repo, image string, opts PullOptions) (*PullResult, error) {
	ir, err := parseImageRef(image)
	if err != nil {
		return nil, err
	}
	// A deployment that cannot be read is replaced all the same.
	d, _ := repo.deploymentOf(ir)
	return repo.pull(ctx, pullRequest{target: ir, deployed: d, from: ir}, opts)
}

// PullPrepared fetches exactly the update that Prepare cached for the image,
// by its digest, never by the tag: a tag moved since makes no difference.
// With no cached update it fails with ErrNoCachedUpdate; when the registry no
// longer has the manifest or a layer it fails with ErrPreparedUpdateGone and
// the repository is as before (the image ref still points to the old merge
// commit, which keeps its cached update). On success the ref moves to the new
// merge commit, which carries no cached update.
func PullPrepared(ctx context.Context, repo *Repo, image string, opts PullOptions) (*PullResult, error) {
	ir, err := parseImageRef(image)
	if err != nil {
		return nil, err
	}
	d, err := repo.deploymentOf(ir)
	if err != nil {
		return nil, err
	}
	if d.update == nil {
		return nil, fmt.Errorf("%w for %s on %s", ErrNoCachedUpdate, ir.name, d.deployed.MergeCommit)
	}
	// A registry serves the per-platform manifest by its digest; an oci:
	// layout lists only top-level manifests (an index, for several
	// platforms) in its index.json.
	// Archives and dir: cannot be pinned: what they hold now must be it.
	want, pin := d.record.manifestDigest, d.record.manifestDigest
	if !ir.overNetwork() && d.record.topDigest != "" {
		pin = d.record.topDigest
	}
	from, err := ir.pinnedTo(pin)
	var res *PullResult
	switch {
	case errors.Is(err, errCannotPin):
		res, err = repo.pull(ctx, pullRequest{target: ir, deployed: d, from: ir, want: want, top: d.record.topDigest}, opts)
	case err == nil:
		res, err = repo.pull(ctx, pullRequest{target: ir, deployed: d, from: from, pin: pin, want: want, top: d.record.topDigest}, opts)
	}
	if errors.Is(err, ErrManifestUnknown) {
		// err names the image, pinned to the prepared digest.
		return nil, fmt.Errorf("%w: %w", ErrPreparedUpdateGone, err)
	}
	return res, err
}

// pullRequest says what a pull fetches and where it deploys it.
type pullRequest struct {
	target   *imageRef     // the image whose merge commit the pull writes
	deployed *deployment   // target's deployment now; nil for none
	from     *imageRef     // where to fetch it: target, or target pinned to a digest
	pin      digest.Digest // the digest from is pinned to, which its top-level manifest must hash to; "" for none
	want     digest.Digest // the per-platform manifest digest from must resolve to; "" for any
	top      digest.Digest // the digest the tag named when want was prepared (recorded for later checks); "" for from's
}

func (r *Repo) pull(ctx context.Context, req pullRequest, opts PullOptions) (*PullResult, error) {
	if req.target.remote != "" {
		return nil, fmt.Errorf("%w: %s names remote %q; for signatures, write ostree-image-signed:REF with a signature policy", ErrRemoteVerification, req.target.name, req.target.remote)
	}
	targetRef, err := req.target.refName()
	if err != nil {
		return nil, err
	}
	src, f, err := opts.open(ctx, req.from, req.pin)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	img := f.image
	if req.want != "" && img.ManifestDigest != req.want {
		return nil, fmt.Errorf("%w: %s now holds %s, not the prepared %s", ErrPreparedUpdateGone, req.from.name, img.ManifestDigest, req.want)
	}
	if req.top != "" {
		img.TopDigest = req.top
	}
	lay, err := layoutOf(img)
	if err != nil {
		return nil, err
	}
	res := &PullResult{Image: req.target.name, Pulled: *img}
	if d := req.deployed; d != nil && d.deployed.ManifestDigest == img.ManifestDigest {
		res.MergeCommit, res.AlreadyDeployed = d.deployed.MergeCommit, true
		return res, nil
	}
	if err := opts.enforcePolicy(ctx, req.from, src, f.raw); err != nil {
		return nil, err
	}
	derived, err := lay.derived(img)
	if err != nil {
		return nil, err
	}
	report := newProgressReporter(opts.Progress, len(img.Layers))
	if err := r.fetchLayers(ctx, src, img, lay, opts, report, res); err != nil {
		return nil, fmt.Errorf("pulling %s: %w", req.from.name, err)
	}
	report(Progress{Merging: true})
	res.MergeCommit, err = importer.WriteImageMergeCommit(ctx, r.ostree, targetRef, importer.ImageMergeOptions{
		Base:      lay.base,
		Layers:    derived,
		Metadata:  mergeCommitMetadata(f),
		Timestamp: img.mergeCommitTime(),
		NoSELinux: opts.NoSELinux,
	})
	if err != nil {
		return nil, fmt.Errorf("writing the merge commit of %s: %w", req.target.name, err)
	}
	return res, nil
}

// mergeCommitMetadata is the commit metadata of the image's merge commit:
// ostree-ext's keys with the exact bytes the registry served, and the
// digest the tag named.
func mergeCommitMetadata(f *fetchedImage) gvariant.VarDict {
	var md gvariant.VarDict
	for _, kv := range [][2]string{
		{keys.ManifestDigest, f.image.ManifestDigest.String()},
		{keys.Manifest, string(f.raw.Manifest)},
		{keys.ImageConfig, string(f.raw.Config)},
		{keys.ImporterVersion, ImporterVersion},
		{keys.TopDigest, f.image.TopDigest.String()},
	} {
		md.Set(kv[0], gvariant.NewString(kv[1]))
	}
	return md
}

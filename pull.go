package updatecache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"golang.org/x/sync/errgroup"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/importer"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/registry"
)

// ImporterVersion is recorded as ostree.importer.version on merge commits
// this library writes.
const ImporterVersion = "updatecache/0.1"

// DefaultConcurrency is how many layers a pull downloads at once by default.
const DefaultConcurrency = 3

// PullOptions configure Pull and PullPrepared.
type PullOptions struct {
	RegistryOptions
	// Concurrency bounds the layers downloaded at once; 0 means
	// DefaultConcurrency.
	Concurrency int
	// Progress, if set, is called as layers are fetched: at the start of
	// each layer, as its bytes arrive, and when it is done. Calls are
	// serialised, so Progress need not be safe for concurrent use, and it
	// should return quickly.
	Progress func(Progress)
	// KeepVar imports /var at var instead of usr/share/factory/var, and
	// AllowNonUsr keeps top-level directories other than usr, etc and var;
	// see ostree-ext's rules for derived layers.
	KeepVar, AllowNonUsr bool
}

// Progress reports one layer of a pull.
type Progress struct {
	Layer    digest.Digest
	Index    int   // the layer's position in the manifest
	Layers   int   // how many layers the image has
	Done     int64 // compressed bytes fetched so far
	Total    int64 // compressed size from the manifest
	Reused   bool  // already in the repository: nothing to fetch
	Finished bool  // imported (or reused)
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
	return repo.pull(ctx, ir, ir, "", "", opts)
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
	commit, err := repo.mergeCommit(ir)
	if err != nil {
		return nil, err
	}
	ds, err := repo.readDeployed(commit)
	if err != nil {
		return nil, err
	}
	if ds.cacheErr != nil {
		return nil, fmt.Errorf("merge commit %s: %w", commit, ds.cacheErr)
	}
	u, err := ds.cachedUpdate()
	if err != nil {
		return nil, fmt.Errorf("merge commit %s: %w", commit, err)
	}
	if u == nil {
		return nil, fmt.Errorf("%w for %s on %s", ErrNoCachedUpdate, ir.name, commit)
	}
	pinned, err := pinDigest(ir, ds.cached.manifestDigest)
	if err != nil {
		return nil, err
	}
	res, err := repo.pull(ctx, ir, pinned, ds.cached.manifestDigest, ds.cached.topDigest, opts)
	if errors.Is(err, ErrManifestUnknown) {
		return nil, fmt.Errorf("%w: %s (prepared %s): %w", ErrPreparedUpdateGone, ir.name, ds.cached.manifestDigest, err)
	}
	return res, err
}

// pinDigest returns the docker reference ir names, pinned to d.
func pinDigest(ir *imageRef, d digest.Digest) (*imageRef, error) {
	named := ir.ref.DockerReference()
	if named == nil {
		return nil, fmt.Errorf("%w: %s: only docker:// references can be pinned to a prepared digest", ErrInvalidReference, ir.name)
	}
	canonical, err := reference.WithDigest(reference.TrimNamed(named), d)
	if err != nil {
		return nil, fmt.Errorf("%w: %s@%s: %v", ErrInvalidReference, ir.name, d, err)
	}
	ref, err := docker.NewReference(canonical)
	if err != nil {
		return nil, fmt.Errorf("%w: %s@%s: %v", ErrInvalidReference, ir.name, d, err)
	}
	return &imageRef{name: "docker://" + canonical.String(), ref: ref, signed: ir.signed}, nil
}

// pull fetches from (pinned to the per-platform manifest digest want, when
// set) and deploys it as target. top, when known, is the digest the tag
// pointed to when want was prepared (an index digest for multi-arch images),
// recorded so the next check of an unchanged tag is a HEAD alone.
func (r *Repo) pull(ctx context.Context, target, from *imageRef, want, top digest.Digest, opts PullOptions) (*PullResult, error) {
	if opts.Offline {
		return nil, fmt.Errorf("%w: pulling %s", ErrOffline, from.name)
	}
	targetRef, err := target.refName()
	if err != nil {
		return nil, err
	}
	src, err := opts.client().Open(ctx, from.ref, want)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", from.name, err)
	}
	defer src.Close()
	fetched, err := src.Image(ctx)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", from.name, err)
	}
	if want != "" && fetched.ManifestDigest != want {
		return nil, fmt.Errorf("%w: %s resolved to %s, want %s", ErrDigestMismatch, from.name, fetched.ManifestDigest, want)
	}
	img, err := parseImage(fetched.ManifestDigest, fetched.Manifest, fetched.Config)
	if err != nil {
		return nil, err
	}
	img.TopDigest = fetched.TopDigest
	if top != "" {
		img.TopDigest = top
	}
	res := &PullResult{Image: target.name, Pulled: *img}

	if commit, err := r.mergeCommit(target); err == nil {
		if ds, err := r.readDeployed(commit); err == nil && ds.deployed.ManifestDigest == img.ManifestDigest {
			res.MergeCommit, res.AlreadyDeployed = commit, true
			return res, nil
		}
	}
	verdict, err := opts.verdict(ctx, from, src, fetched)
	if err != nil {
		return nil, err
	}
	if verdict != nil && !verdict.Allowed {
		return nil, fmt.Errorf("%w: %s@%s: %s", ErrPolicyRejected, from.name, img.ManifestDigest, verdict.Reason)
	}

	layerCommits, err := r.fetchLayers(ctx, src, img, opts, res)
	if err != nil {
		return nil, fmt.Errorf("pulling %s: %w", from.name, err)
	}
	var md gvariant.VarDict
	for _, kv := range [][2]string{
		{keyManifestDigest, img.ManifestDigest.String()},
		{keyManifest, string(fetched.Manifest)},
		{keyImageConfig, string(fetched.Config)},
		{keyImporterVersion, ImporterVersion},
		{keyTopDigest, img.TopDigest.String()},
	} {
		md.Set(kv[0], gvariant.NewString(kv[1]))
	}
	ts := img.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	res.MergeCommit, err = importer.WriteMergeCommit(ctx, r.ostree, targetRef, layerCommits, md, ts.UTC().Truncate(time.Second))
	if err != nil {
		return nil, fmt.Errorf("writing the merge commit of %s: %w", target.name, err)
	}
	return res, nil
}

// fetchLayers returns the layer commit of every layer of img, importing the
// ones the repository lacks, a bounded number at a time.
func (r *Repo) fetchLayers(ctx context.Context, src *registry.Source, img *Image, opts PullOptions, res *PullResult) ([]string, error) {
	commits := make([]string, len(img.Layers))
	report := newProgressReporter(opts.Progress, len(img.Layers))
	// Every layer is looked up before any download starts, so that a failure
	// here never leaves imports running behind the returned error.
	var missing []int
	for i, l := range img.Layers {
		blobRef, err := ostree.BlobRefName(l.Digest.String())
		if err != nil {
			return nil, fmt.Errorf("%w: layer %s: %v", ErrInvalidMetadata, l.Digest, err)
		}
		commit, err := r.ostree.ResolveRef(blobRef)
		switch {
		case err == nil:
			commits[i] = commit
		case !errors.Is(err, ostree.ErrRefNotFound):
			return nil, err
		case l.DiffID == "":
			return nil, fmt.Errorf("%w: layer %d (%s) has no diff ID in the config", ErrInvalidMetadata, i, l.Digest)
		default:
			missing = append(missing, i)
		}
	}
	for i, l := range img.Layers {
		if commits[i] != "" {
			res.LayersReused++
			report(Progress{Layer: l.Digest, Index: i, Total: l.Size, Done: l.Size, Reused: true, Finished: true})
		}
	}

	var mu sync.Mutex // guards res
	g, gctx := errgroup.WithContext(ctx)
	limit := opts.Concurrency
	if limit <= 0 {
		limit = DefaultConcurrency
	}
	g.SetLimit(limit)
	for _, i := range missing {
		l := img.Layers[i]
		g.Go(func() error {
			p := Progress{Layer: l.Digest, Index: i, Total: l.Size}
			report(p)
			blob, err := src.Layer(gctx, imgspecv1.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
			if err != nil {
				return err
			}
			defer blob.Close()
			counted := &progressReader{r: blob, onRead: func(n int64) { p.Done += n; report(p) }}
			lr, err := importer.ImportLayer(gctx, r.ostree, counted, importer.LayerOptions{
				MediaType: l.MediaType, Digest: l.Digest.String(), DiffID: l.DiffID.String(), Size: l.Size,
				KeepVar: opts.KeepVar, AllowNonUsr: opts.AllowNonUsr,
			})
			if err != nil {
				return fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			commits[i] = lr.Commit
			p.Finished = true
			report(p)
			mu.Lock()
			res.LayersFetched++
			res.BytesFetched += lr.Size
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return commits, nil
}

// newProgressReporter serialises calls to fn; a nil fn reports nothing.
func newProgressReporter(fn func(Progress), layers int) func(Progress) {
	if fn == nil {
		return func(Progress) {}
	}
	var mu sync.Mutex
	return func(p Progress) {
		p.Layers = layers
		mu.Lock()
		defer mu.Unlock()
		fn(p)
	}
}

// progressReader calls onRead with the size of every read.
type progressReader struct {
	r      io.Reader
	onRead func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.onRead(int64(n))
	}
	return n, err
}

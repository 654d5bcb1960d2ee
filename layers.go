package updatecache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	digest "github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/osimage/updatecache/internal/importer"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/registry"
)

// fetchLayers makes the repository hold every layer of img under its blob
// ref, importing what it lacks or holds wrongly: chunk and derived layers a bounded
// number at a time, then the commit layer, whose commit needs the chunks'
// objects. Each blob is fetched once, however often the manifest lists it.
func (r *Repo) fetchLayers(ctx context.Context, src *registry.Source, img *Image, lay *layout, opts PullOptions, report func(Progress), res *PullResult) error {
	commits, missing, err := r.storedLayers(ctx, img, lay)
	if err != nil {
		return err
	}
	reportPlan(img, commits, len(missing), report, res)
	var mu sync.Mutex // guards res
	fetch := func(ctx context.Context, i int) error {
		lr, err := r.importLayer(ctx, src, img.Layers[i], i, lay, opts, report)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		res.LayersFetched++
		res.BytesFetched += lr.Size
		return nil
	}
	first := map[digest.Digest]int{}
	commitLayer := -1
	g, gctx := errgroup.WithContext(ctx)
	limit := opts.Concurrency
	if limit <= 0 {
		limit = DefaultConcurrency
	}
	g.SetLimit(limit)
	for _, i := range missing {
		if _, dup := first[img.Layers[i].Digest]; dup {
			continue
		}
		first[img.Layers[i].Digest] = i
		if lay.kinds[i] == importer.CommitLayer {
			commitLayer = i
			continue
		}
		g.Go(func() error { return fetch(gctx, i) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if commitLayer >= 0 {
		return fetch(ctx, commitLayer)
	}
	return nil
}

// reportPlan reports what the pull fetches (the layers without a commit)
// and the layers it reuses.
func reportPlan(img *Image, commits []string, missing int, report func(Progress), res *PullResult) {
	plan := &PullPlan{ManifestDigest: img.ManifestDigest, Layers: len(img.Layers), FetchLayers: missing}
	for i, l := range img.Layers {
		plan.Bytes += l.Size
		if commits[i] == "" {
			plan.FetchBytes += l.Size
		}
	}
	report(Progress{Plan: plan})
	for i, l := range img.Layers {
		if commits[i] != "" {
			res.LayersReused++
			report(Progress{Layer: l.Digest, Index: i, Total: l.Size, Done: l.Size, Reused: true, Finished: true})
		}
	}
}

// toFetch counts the distinct layers the repository lacks and their size:
// what a pull of layers downloads. A layer whose ref cannot be read counts
// as missing.
func (r *Repo) toFetch(layers []Layer) FetchSize {
	var n FetchSize
	seen := map[digest.Digest]bool{}
	for _, l := range layers {
		if seen[l.Digest] {
			continue
		}
		seen[l.Digest] = true
		if _, err := r.layerCommit(l.Digest); err != nil {
			n.Layers++
			n.Size += l.Size
		}
	}
	return n
}

// layerCommit resolves a layer's blob ref; ErrRefNotFound (from
// internal/ostree) when the repository does not hold it.
func (r *Repo) layerCommit(d digest.Digest) (string, error) {
	blobRef, err := ostree.BlobRefName(d.String())
	if err != nil {
		return "", fmt.Errorf("%w: layer %s: %v", ErrInvalidMetadata, d, err)
	}
	return r.ostree.ResolveRef(blobRef)
}

// storedLayers looks every layer of img up before any download starts (so
// that a failure here never leaves imports running behind the returned
// error): the commit of each layer the repository holds as what that kind
// of layer makes (ostree-ext trusts blob refs, so one it wrote for a chunk,
// say, is never taken for a derived layer), and the indexes of the others.
func (r *Repo) storedLayers(ctx context.Context, img *Image, lay *layout) (commits []string, missing []int, err error) {
	commits = make([]string, len(img.Layers))
	checked := map[digest.Digest]string{} // a digest listed twice is checked once
	for i, l := range img.Layers {
		commit, seen := checked[l.Digest]
		if !seen {
			if commit, err = r.storedLayer(ctx, l.Digest, lay.kinds[i], lay.base); err != nil {
				return nil, nil, err
			}
			checked[l.Digest] = commit
		}
		switch {
		case commit != "":
			commits[i] = commit
		case l.DiffID == "":
			return nil, nil, fmt.Errorf("%w: layer %d (%s) has no diff ID in the config", ErrInvalidMetadata, i, l.Digest)
		default:
			missing = append(missing, i)
		}
	}
	return commits, missing, nil
}

// storedLayer returns the commit of the layer d if the repository holds it
// as what a layer of kind makes, else "".
func (r *Repo) storedLayer(ctx context.Context, d digest.Digest, kind importer.LayerKind, base string) (string, error) {
	commit, err := r.layerCommit(d)
	if err == nil {
		err = importer.VerifyLayerCommit(ctx, r.ostree, commit, kind, base)
	}
	switch {
	case err == nil:
		return commit, nil
	case errors.Is(err, ostree.ErrRefNotFound), errors.Is(err, importer.ErrIncompleteCommit),
		errors.Is(err, importer.ErrLayerCommitKind), errors.Is(err, importer.ErrCommitMismatch):
		return "", nil // not there, or not what this layer makes: to import (again)
	}
	return "", err
}

// importLayer fetches layer i and imports it as its kind says, reporting
// its progress.
func (r *Repo) importLayer(ctx context.Context, src *registry.Source, l Layer, i int, lay *layout, opts PullOptions, report func(Progress)) (*importer.LayerResult, error) {
	p := Progress{Layer: l.Digest, Index: i, Total: l.Size}
	report(p)
	blob, err := src.Layer(ctx, imgspecv1.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	if err != nil {
		return nil, err
	}
	defer blob.Close()
	counted := &progressReader{r: blob, onRead: func(n int64) { p.Done += n; report(p) }}
	b := importer.Blob{MediaType: l.MediaType, Digest: l.Digest.String(), DiffID: l.DiffID.String(), MaxSize: opts.MaxLayerSize}
	var lr *importer.LayerResult
	switch lay.kinds[i] {
	case importer.CommitLayer:
		lr, err = importer.ImportCommitLayer(ctx, r.ostree, counted, importer.CommitLayerOptions{Blob: b, Commit: lay.base})
	case importer.ObjectSetLayer:
		lr, err = importer.ImportObjectSetLayer(ctx, r.ostree, counted, b)
	default:
		lr, err = importer.ImportLayer(ctx, r.ostree, counted, importer.LayerOptions{Blob: b, KeepVar: opts.KeepVar, AllowNonUsr: opts.AllowNonUsr})
	}
	switch {
	case errors.Is(err, importer.ErrDigestMismatch):
		err = fmt.Errorf("%w: %w", ErrDigestMismatch, err)
	case errors.Is(err, importer.ErrLayerTooLarge):
		err = fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", lay.kinds[i], l.Digest, err)
	}
	p.Finished = true
	report(p)
	return lr, nil
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

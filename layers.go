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

// fetchLayers returns the layer commit of every layer of img, importing the
// ones the repository lacks, a bounded number at a time.
func (r *Repo) fetchLayers(ctx context.Context, src *registry.Source, img *Image, opts PullOptions, report func(Progress), res *PullResult) ([]string, error) {
	commits, missing, err := r.storedLayers(img)
	if err != nil {
		return nil, err
	}
	plan := &PullPlan{ManifestDigest: img.ManifestDigest, Layers: len(img.Layers), FetchLayers: len(missing)}
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
	// A digest listed more than once is fetched and imported once.
	first := map[digest.Digest]int{}
	var mu sync.Mutex // guards res
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
		g.Go(func() error {
			lr, err := r.importLayer(gctx, src, img.Layers[i], i, opts, report)
			if err != nil {
				return err
			}
			commits[i] = lr.Commit
			mu.Lock()
			defer mu.Unlock()
			res.LayersFetched++
			res.BytesFetched += lr.Size
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, i := range missing {
		commits[i] = commits[first[img.Layers[i].Digest]]
	}
	return commits, nil
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
// error): the commit of each layer the repository holds, and the indexes of
// those it lacks.
func (r *Repo) storedLayers(img *Image) (commits []string, missing []int, err error) {
	commits = make([]string, len(img.Layers))
	for i, l := range img.Layers {
		commit, err := r.layerCommit(l.Digest)
		switch {
		case err == nil:
			commits[i] = commit
		case !errors.Is(err, ostree.ErrRefNotFound):
			return nil, nil, err
		case l.DiffID == "":
			return nil, nil, fmt.Errorf("%w: layer %d (%s) has no diff ID in the config", ErrInvalidMetadata, i, l.Digest)
		default:
			missing = append(missing, i)
		}
	}
	return commits, missing, nil
}

// importLayer fetches layer i and imports it, reporting its progress.
func (r *Repo) importLayer(ctx context.Context, src *registry.Source, l Layer, i int, opts PullOptions, report func(Progress)) (*importer.LayerResult, error) {
	p := Progress{Layer: l.Digest, Index: i, Total: l.Size}
	report(p)
	blob, err := src.Layer(ctx, imgspecv1.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	if err != nil {
		return nil, err
	}
	defer blob.Close()
	counted := &progressReader{r: blob, onRead: func(n int64) { p.Done += n; report(p) }}
	lr, err := importer.ImportLayer(ctx, r.ostree, counted, importer.LayerOptions{
		Blob:    importer.Blob{MediaType: l.MediaType, Digest: l.Digest.String(), DiffID: l.DiffID.String(), MaxSize: opts.MaxLayerSize},
		KeepVar: opts.KeepVar, AllowNonUsr: opts.AllowNonUsr,
	})
	switch {
	case errors.Is(err, importer.ErrDigestMismatch):
		err = fmt.Errorf("%w: %w", ErrDigestMismatch, err)
	case errors.Is(err, importer.ErrLayerTooLarge):
		err = fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
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

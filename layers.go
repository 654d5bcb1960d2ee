package updatecache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

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
	var mu sync.Mutex // guards res
	g, gctx := errgroup.WithContext(ctx)
	limit := opts.Concurrency
	if limit <= 0 {
		limit = DefaultConcurrency
	}
	g.SetLimit(limit)
	for _, i := range missing {
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
	return commits, nil
}

// storedLayers looks every layer of img up before any download starts (so
// that a failure here never leaves imports running behind the returned
// error): the commit of each layer the repository holds, and the indexes of
// those it lacks.
func (r *Repo) storedLayers(img *Image) (commits []string, missing []int, err error) {
	commits = make([]string, len(img.Layers))
	for i, l := range img.Layers {
		blobRef, err := ostree.BlobRefName(l.Digest.String())
		if err != nil {
			return nil, nil, fmt.Errorf("%w: layer %s: %v", ErrInvalidMetadata, l.Digest, err)
		}
		commit, err := r.ostree.ResolveRef(blobRef)
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
		MediaType: l.MediaType, Digest: l.Digest.String(), DiffID: l.DiffID.String(),
		KeepVar: opts.KeepVar, AllowNonUsr: opts.AllowNonUsr,
	})
	if errors.Is(err, importer.ErrDigestMismatch) {
		err = fmt.Errorf("%w: %w", ErrDigestMismatch, err)
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

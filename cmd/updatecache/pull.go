package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	units "github.com/docker/go-units"

	"github.com/osimage/updatecache"
)

// pullFlags are pull's own flags.
type pullFlags struct {
	prepared     bool
	jobs         int
	progressFD   int
	allowMetered bool
	maxLayerSize string
	noSELinux    bool
	image        imageFlag
	unchanged    unchangedFlag
}

func newPullCommand(g *globalFlags) *cobra.Command {
	n := &networkFlags{}
	pf := &pullFlags{}
	cmd := &cobra.Command{
		Use:   "pull [--prepared] [flags] IMAGE|--booted",
		Short: "Fetch the image (or exactly the update cached by check) and deploy it as a new merge commit",
		Long: `Pull fetches IMAGE's manifest, config and the layers the repository lacks, and
moves the image's ref to a new merge commit. With --prepared it fetches exactly the
update that "check" cached, by digest, even if the tag has moved since; if the
registry no longer has it, pull fails and the repository is unchanged.

On a metered connection (NetworkManager's Metered property) pull does nothing and
exits 75, unless --allow-metered. --progress-fd N writes progress as JSON Lines in
bootc's protocol (progress-v0) to the inherited file descriptor N.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPull(cmd, g, n, pf, args)
		},
	}
	n.register(cmd, 0)
	pf.image.register(cmd)
	pf.unchanged.register(cmd, "when there is nothing to pull: the image is deployed already, or --prepared finds no cached update")
	f := cmd.Flags()
	f.BoolVar(&pf.prepared, "prepared", false, "fetch exactly the update cached by check, never the tag")
	f.IntVar(&pf.jobs, "jobs", updatecache.DefaultConcurrency, "layers to download at once (1 or more)")
	f.IntVar(&pf.progressFD, "progress-fd", -1, "write progress as JSON Lines (bootc's progress-v0) to file descriptor `N`")
	f.BoolVar(&pf.allowMetered, "allow-metered", false, "pull even on a metered connection")
	f.BoolVar(&pf.noSELinux, "no-selinux", false, "do not label an image with derived layers with the SELinux policy it ships (labelled by default, as ostree-ext does)")
	f.StringVar(&pf.maxLayerSize, "max-layer-size", "", "refuse a layer larger than `SIZE` uncompressed, e.g. 64MiB (default 32GiB)")
	return cmd
}

func runPull(cmd *cobra.Command, g *globalFlags, n *networkFlags, pf *pullFlags, args []string) error {
	regOpts, err := n.options()
	if err != nil {
		return err
	}
	if pf.jobs < 1 {
		return usageError{fmt.Errorf("--jobs %d: want 1 or more", pf.jobs)}
	}
	var maxLayerSize int64
	if pf.maxLayerSize != "" {
		if maxLayerSize, err = units.RAMInBytes(pf.maxLayerSize); err != nil || maxLayerSize < 1 {
			return usageError{fmt.Errorf("--max-layer-size %q: want a size such as 64MiB or 2GiB", pf.maxLayerSize)}
		}
	}
	var progressFile *os.File
	if cmd.Flags().Changed("progress-fd") {
		if progressFile, err = openProgressFD(pf.progressFD); err != nil {
			return err
		}
		defer progressFile.Close()
	}
	image, err := pf.image.image(args)
	if err != nil {
		return err
	}
	if !pf.allowMetered && !n.offline {
		metered, err := connectionMetered(cmd.Context())
		if err != nil {
			return err
		}
		if metered {
			return exitStatus{code: exitSkipped, msg: "updatecache: not pulling: the network connection is metered (NetworkManager); --allow-metered pulls anyway"}
		}
	}
	repo, err := updatecache.OpenRepo(g.repo)
	if err != nil {
		return err
	}

	opts := updatecache.PullOptions{RegistryOptions: regOpts, Concurrency: pf.jobs, MaxLayerSize: maxLayerSize, NoSELinux: pf.noSELinux}
	out := cmd.OutOrStdout()
	var sinks []func(updatecache.Progress)
	var bars *progressBars
	switch {
	case g.json:
	case isTerminal(out):
		bars = newProgressBars(cmd.Context(), out)
		sinks = append(sinks, bars.update)
	default:
		sinks = append(sinks, newPlainProgress(out).update)
	}
	var jsonl *progressJSONL
	if progressFile != nil {
		jsonl = newProgressJSONL(progressFile, cmd.ErrOrStderr())
		sinks = append(sinks, jsonl.update)
	}
	if len(sinks) > 0 {
		opts.Progress = func(p updatecache.Progress) {
			for _, sink := range sinks {
				sink(p)
			}
		}
	}
	pull := updatecache.Pull
	if pf.prepared {
		pull = updatecache.PullPrepared
	}
	var res *updatecache.PullResult
	err = n.bounded(cmd.Context(), func(ctx context.Context) error {
		res, err = pull(ctx, repo, image, opts)
		return err
	})
	if bars != nil {
		bars.finish(err == nil)
	}
	if jsonl != nil {
		jsonl.finish(res)
	}
	switch {
	case errors.Is(err, updatecache.ErrNoCachedUpdate) && pf.unchanged.exit77:
		ew := &errWriter{w: out}
		if ew.printf("No cached update for: %s\n", image); ew.err != nil {
			return ew.err
		}
		return pf.unchanged.status()
	case err != nil:
		return err
	}
	if g.json {
		err = writeJSON(out, pullJSON(res))
	} else {
		err = writePull(out, res)
	}
	if err == nil && res.AlreadyDeployed {
		return pf.unchanged.status()
	}
	return err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// plainProgress prints a line when a layer starts and when it is done, for
// logs and pipes.
type plainProgress struct {
	ew      *errWriter
	started map[int]time.Time
}

func newPlainProgress(w io.Writer) *plainProgress {
	return &plainProgress{ew: &errWriter{w: w}, started: map[int]time.Time{}}
}

func (pp *plainProgress) update(p updatecache.Progress) {
	switch {
	case p.Plan != nil:
		pp.ew.printf("Fetching %d of %d layers: %s (%s already present)\n", p.Plan.FetchLayers, p.Plan.Layers,
			humanSize(p.Plan.FetchBytes), humanSize(p.Plan.Bytes-p.Plan.FetchBytes))
	case p.Merging:
		pp.ew.printf("Writing the merge commit\n")
	case p.Reused:
		pp.ew.printf("Layer %d/%d %s: already present\n", p.Index+1, p.Layers, short(p.Layer.String()))
	case p.Finished:
		took := time.Since(pp.started[p.Index])
		pp.ew.printf("Layer %d/%d %s: fetched %s in %s (%s/s)\n", p.Index+1, p.Layers, short(p.Layer.String()),
			humanSize(p.Done), took.Round(time.Millisecond), humanSize(int64(float64(p.Done)/max(took.Seconds(), 1e-3))))
	case p.Done == 0:
		pp.started[p.Index] = time.Now()
		pp.ew.printf("Layer %d/%d %s: fetching %s\n", p.Index+1, p.Layers, short(p.Layer.String()), humanSize(p.Total))
	}
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// progressBars shows one bar per layer being fetched and one for the
// total, each with its rate and the time left (see rateMeter).
type progressBars struct {
	p      *mpb.Progress
	total  *mpb.Bar
	meter  rateMeter // the total's
	layers map[int]*layerBar
	sum    int64 // bytes fetched so far, over every layer
}

type layerBar struct {
	bar   *mpb.Bar
	meter rateMeter
	done  int64
}

func newProgressBars(ctx context.Context, out io.Writer) *progressBars {
	return &progressBars{
		p:      mpb.NewWithContext(ctx, mpb.WithOutput(out), mpb.WithWidth(40)),
		layers: map[int]*layerBar{},
	}
}

func (b *progressBars) sizeBar(name string, total int64, meter *rateMeter) *mpb.Bar {
	return b.p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.Counters(decor.SizeB1000(0), "% .1f / % .1f")),
		mpb.AppendDecorators(decor.Any(func(s decor.Statistics) string { return meter.describe(time.Now(), s.Total) })),
	)
}

// update is the Progress callback; calls are serialised by the library.
func (b *progressBars) update(p updatecache.Progress) {
	now := time.Now()
	switch {
	case p.Plan != nil:
		if p.Plan.FetchLayers > 0 {
			b.total = b.sizeBar("total", p.Plan.FetchBytes, &b.meter)
			b.meter.add(now, 0)
		}
		return
	case p.Merging, p.Reused:
		return
	}
	l, ok := b.layers[p.Index]
	if !ok {
		l = &layerBar{}
		l.bar = b.sizeBar(short(p.Layer.String()), p.Total, &l.meter)
		l.meter.add(now, 0)
		b.layers[p.Index] = l
	}
	b.sum += p.Done - l.done
	l.done = p.Done
	l.bar.SetCurrent(p.Done)
	l.meter.add(now, p.Done)
	if b.total != nil {
		b.total.SetCurrent(b.sum)
		b.meter.add(now, b.sum)
	}
	if p.Finished {
		l.bar.SetTotal(-1, true)
	}
}

// finish completes or aborts the bars and waits for the last render.
func (b *progressBars) finish(ok bool) {
	bars := []*mpb.Bar{b.total}
	for _, l := range b.layers {
		bars = append(bars, l.bar)
	}
	for _, bar := range bars {
		switch {
		case bar == nil:
		case ok:
			bar.SetTotal(-1, true)
		default:
			bar.Abort(false)
		}
	}
	b.p.Wait()
}

type pullResultJSON struct {
	Image           string  `json:"image"`
	MergeCommit     string  `json:"mergeCommit"`
	ImageDigest     string  `json:"imageDigest"`
	Version         *string `json:"version"`
	LayersFetched   int     `json:"layersFetched"`
	BytesFetched    int64   `json:"bytesFetched"`
	LayersReused    int     `json:"layersReused"`
	AlreadyDeployed bool    `json:"alreadyDeployed"`
}

func pullJSON(res *updatecache.PullResult) pullResultJSON {
	return pullResultJSON{
		Image: res.Image, MergeCommit: res.MergeCommit, ImageDigest: res.Pulled.ManifestDigest.String(),
		Version: optional(res.Pulled.Version), LayersFetched: res.LayersFetched, BytesFetched: res.BytesFetched,
		LayersReused: res.LayersReused, AlreadyDeployed: res.AlreadyDeployed,
	}
}

func writePull(w io.Writer, res *updatecache.PullResult) error {
	ew := &errWriter{w: w}
	if res.AlreadyDeployed {
		ew.printf("Already deployed: %s (%s)\n", res.Image, describe(&res.Pulled))
		return ew.err
	}
	ew.printf("Deployed: %s (%s)\n", res.Image, describe(&res.Pulled))
	ew.printf("  Merge commit: %s\n", res.MergeCommit)
	ew.printf("  Layers fetched: %d (%s), already present: %d\n", res.LayersFetched, humanSize(res.BytesFetched), res.LayersReused)
	return ew.err
}

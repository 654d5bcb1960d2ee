package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/osimage/updatecache"
)

func newPullCommand(g *globalFlags) *cobra.Command {
	n := &networkFlags{}
	var prepared bool
	var concurrency int
	cmd := &cobra.Command{
		Use:   "pull [--prepared] [flags] IMAGE",
		Short: "Fetch the image (or exactly the update cached by check) and deploy it as a new merge commit",
		Long: `Pull fetches IMAGE's manifest, config and the layers the repository lacks, and
moves the image's ref to a new merge commit. With --prepared it fetches exactly the
update that "check" cached, by digest, even if the tag has moved since; if the
registry no longer has it, pull fails and the repository is unchanged.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			regOpts, err := n.options()
			if err != nil {
				return err
			}
			repo, err := updatecache.OpenRepo(g.repo)
			if err != nil {
				return err
			}
			opts := updatecache.PullOptions{RegistryOptions: regOpts, Concurrency: concurrency}
			out := cmd.OutOrStdout()
			var bars *progressBars
			switch {
			case g.json:
			case isTerminal(out):
				bars = newProgressBars(cmd, out)
				opts.Progress = bars.update
			default:
				opts.Progress = plainProgress(out)
			}
			pull := updatecache.Pull
			if prepared {
				pull = updatecache.PullPrepared
			}
			res, err := pull(cmd.Context(), repo, args[0], opts)
			if bars != nil {
				bars.finish(err == nil)
			}
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(out, pullJSON(res))
			}
			return writePull(out, res)
		},
	}
	n.register(cmd)
	cmd.Flags().BoolVar(&prepared, "prepared", false, "fetch exactly the update cached by check, never the tag")
	cmd.Flags().IntVar(&concurrency, "jobs", updatecache.DefaultConcurrency, "layers to download at once")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// plainProgress prints a line when a layer starts and when it is done, for
// logs and pipes.
func plainProgress(w io.Writer) func(updatecache.Progress) {
	return func(p updatecache.Progress) {
		switch {
		case p.Reused:
			fmt.Fprintf(w, "Layer %d/%d %s: already present\n", p.Index+1, p.Layers, short(p.Layer.String()))
		case p.Finished:
			fmt.Fprintf(w, "Layer %d/%d %s: fetched %s\n", p.Index+1, p.Layers, short(p.Layer.String()), humanSize(p.Done))
		case p.Done == 0:
			fmt.Fprintf(w, "Layer %d/%d %s: fetching %s\n", p.Index+1, p.Layers, short(p.Layer.String()), humanSize(p.Total))
		}
	}
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// progressBars shows one bar per layer being fetched and one for the total,
// with rate and ETA.
type progressBars struct {
	p      *mpb.Progress
	layers map[int]*mpb.Bar
	done   map[int]int64
	total  *mpb.Bar
	sum    int64 // the total bar's size: every layer started so far
	start  time.Time
}

func newProgressBars(cmd *cobra.Command, out io.Writer) *progressBars {
	return &progressBars{
		p:      mpb.NewWithContext(cmd.Context(), mpb.WithOutput(out), mpb.WithWidth(40)),
		layers: map[int]*mpb.Bar{},
		done:   map[int]int64{},
		start:  time.Now(),
	}
}

func sizeBar(p *mpb.Progress, name string, total int64) *mpb.Bar {
	return p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.Counters(decor.SizeB1000(0), "% .1f / % .1f")),
		mpb.AppendDecorators(decor.EwmaSpeed(decor.SizeB1000(0), "% .1f", 30), decor.Name(" "), decor.EwmaETA(decor.ET_STYLE_GO, 30)),
	)
}

// update is the Progress callback; calls are serialised by the library.
func (b *progressBars) update(p updatecache.Progress) {
	if p.Reused {
		return
	}
	if b.total == nil {
		b.total = sizeBar(b.p, "total", 0)
	}
	bar, ok := b.layers[p.Index]
	if !ok {
		bar = sizeBar(b.p, short(p.Layer.String()), p.Total)
		b.layers[p.Index] = bar
		b.sum += p.Total
		b.total.SetTotal(b.sum, false)
	}
	delta := p.Done - b.done[p.Index]
	b.done[p.Index] = p.Done
	bar.EwmaSetCurrent(p.Done, time.Since(b.start))
	b.total.EwmaIncrInt64(delta, time.Since(b.start))
	if p.Finished {
		bar.SetTotal(-1, true)
	}
}

// finish completes or aborts the bars and waits for the last render.
func (b *progressBars) finish(ok bool) {
	for _, bar := range b.layers {
		if !ok {
			bar.Abort(false)
		}
	}
	if b.total != nil {
		if ok {
			b.total.SetTotal(-1, true)
		} else {
			b.total.Abort(false)
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

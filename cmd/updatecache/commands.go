package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/osimage/updatecache"
)

func newCheckCommand(g *globalFlags) *cobra.Command {
	n := &networkFlags{}
	var img imageFlag
	var unchanged unchangedFlag
	cmd := &cobra.Command{
		Use:   "check [flags] IMAGE|--booted",
		Short: "Check the registry for an update and cache its manifest and config on the deployed commit",
		Long: `Check asks the registry whether IMAGE has a new image. When it has, its manifest
and config (no layers) are cached on the deployed merge commit, so that "status"
shows the update later without the network.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := n.options()
			if err != nil {
				return err
			}
			image, err := img.image(args)
			if err != nil {
				return err
			}
			repo, err := updatecache.OpenRepo(g.repo)
			if err != nil {
				return err
			}
			var res *updatecache.PrepareResult
			err = n.bounded(cmd.Context(), func(ctx context.Context) error {
				res, err = updatecache.Prepare(ctx, repo, image, updatecache.PrepareOptions{RegistryOptions: opts})
				return err
			})
			if err != nil {
				return err
			}
			if g.json {
				err = writeJSON(cmd.OutOrStdout(), checkJSON(res))
			} else {
				err = writeCheck(cmd.OutOrStdout(), res)
			}
			if err == nil && !res.UpdateAvailable() {
				return unchanged.status()
			}
			return err
		},
	}
	n.register(cmd, checkTimeout)
	img.register(cmd)
	unchanged.register(cmd, "when there is no update")
	return cmd
}

func newStatusCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status [flags] [IMAGE]",
		Short: "Show deployed images and their cached updates, without the network",
		Args:  usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := updatecache.OpenRepo(g.repo)
			if err != nil {
				return err
			}
			// A corrupt cache still shows the deployed image: print what was
			// read, then fail with the error.
			var states []*updatecache.ImageState
			var queryErr error
			if len(args) == 1 {
				st, err := updatecache.QueryImage(repo, args[0])
				if st == nil {
					return err
				}
				states, queryErr = []*updatecache.ImageState{st}, err
			} else {
				states, queryErr = updatecache.ListImages(repo)
				if states == nil && queryErr != nil {
					return queryErr
				}
			}
			if g.json {
				err = writeJSON(cmd.OutOrStdout(), statusJSON(states))
			} else {
				err = writeStatus(cmd.OutOrStdout(), states)
			}
			if err != nil {
				return err
			}
			return queryErr
		},
	}
}

func newClearCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "clear [flags] IMAGE",
		Short: "Remove the cached update from the deployed commit, keeping every other detached key",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := updatecache.OpenRepo(g.repo)
			if err != nil {
				return err
			}
			// What was cached, to report; a cache that cannot be read is
			// left to ClearCachedUpdate to report.
			before, _ := updatecache.QueryImage(repo, args[0])
			if err := updatecache.ClearCachedUpdate(cmd.Context(), repo, args[0]); err != nil {
				return err
			}
			var cleared *updatecache.CachedUpdate
			if before != nil {
				cleared = before.CachedUpdate
			}
			if g.json {
				return writeJSON(cmd.OutOrStdout(), clearJSON{Image: args[0], Cleared: cachedStatus(cleared)})
			}
			return writeClear(cmd.OutOrStdout(), args[0], cleared)
		},
	}
}

func newPruneCommand(g *globalFlags) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune [--dry-run] [flags]",
		Short: "Remove layers no image needs and every object no ref reaches",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, err := updatecache.OpenRepo(g.repo)
			if err != nil {
				return err
			}
			res, err := updatecache.Prune(cmd.Context(), repo, updatecache.PruneOptions{DryRun: dryRun})
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(cmd.OutOrStdout(), pruneJSON(res, dryRun))
			}
			return writePrune(cmd.OutOrStdout(), res, dryRun)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what would be removed and remove nothing")
	return cmd
}

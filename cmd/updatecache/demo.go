//go:build demo

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/updatecachetest"
)

// The demo links the test kit (an in-process registry, an image builder),
// so only builds with the demo tag have it: the product binary holds no
// test code.
func init() { extraCommands = append(extraCommands, newDemoCommand) }

func newDemoCommand() *cobra.Command {
	var keep string
	cmd := &cobra.Command{
		Use:   "demo [--keep DIR]",
		Short: "Run the whole update flow on a generated OS image, with a local registry and repository",
		Long: `Demo tells the story this tool exists for, end to end, on its own: an in-process
registry on 127.0.0.1 and a fresh OSTree repository in a temporary directory. It
publishes and deploys an OS image, finds and caches an update, shows it again with
the registry gone, fetches exactly the prepared update although the tag has moved,
and fails clearly when the registry no longer has what was prepared. Every step is
checked: the exit status is 0 only if each behaved as stated. No network is needed
(it also runs under "unshare -n").`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), keep)
		},
	}
	cmd.Flags().StringVar(&keep, "keep", "", "work in `DIR` and keep the repository there")
	return cmd
}

// demo holds the demo's world.
type demo struct {
	ctx    context.Context
	out    io.Writer
	reg    *updatecachetest.Registry
	repo   *updatecache.Repo
	dir    string // the repository's path
	image  string // the image reference
	pushed map[string]*updatecachetest.Image
	opts   updatecache.RegistryOptions
}

const demoRepo = "demo/os"

func runDemo(ctx context.Context, out io.Writer, keep string) error {
	if err := ensureLoopback(); err != nil {
		return err
	}
	work := keep
	if work == "" {
		tmp, err := os.MkdirTemp("", "updatecache-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		work = tmp
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	d := &demo{ctx: ctx, out: out, dir: filepath.Join(work, "repo"), pushed: map[string]*updatecachetest.Image{}}
	if err := updatecachetest.CreateRepo(d.dir, updatecachetest.ModeArchive); err != nil {
		return fmt.Errorf("creating the demo repository in %s: %w", work, err)
	}
	var err error
	if d.repo, err = updatecache.OpenRepo(d.dir); err != nil {
		return err
	}
	// containers/image settings of the demo's own, so the machine's
	// registries.conf and credentials play no part.
	confDir := filepath.Join(work, "containers")
	if err := os.MkdirAll(confDir, 0o700); err != nil {
		return err
	}
	sys, err := updatecachetest.SystemContext(confDir)
	if err != nil {
		return err
	}
	d.opts = updatecache.RegistryOptions{SystemContext: sys}
	if d.reg, err = updatecachetest.StartRegistry(); err != nil {
		return err
	}
	defer d.reg.Stop()
	d.image = d.reg.Ref(demoRepo, "stable")

	d.say("updatecache demo: the update flow of an image-based OS, on a generated image.\n")
	d.say("  Registry:   %s (in-process, plain HTTP on loopback)\n", d.reg.Host())
	d.say("  Repository: %s (OSTree, archive mode)\n", d.dir)
	d.say("  Image:      %s\n", d.image)
	for _, step := range []func() error{d.deployFirst, d.checkFindsUpdate, d.rebootOffline, d.pullPrepared, d.preparedGone} {
		if err := step(); err != nil {
			return fmt.Errorf("demo failed: %w", err)
		}
	}
	d.say("\nEvery step behaved as stated.")
	if keep != "" {
		d.say(" The repository is kept in %s.", d.dir)
	}
	d.say("\n")
	return nil
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) step(n int, title string) { d.say("\n%d. %s\n", n, title) }

func (d *demo) ok(format string, args ...any) { d.say("   ok: "+format+"\n", args...) }

// publish builds version v of the demo OS and pushes it to the tag. Each
// version shares the base layer and changes the others, as OS builds do.
func (d *demo) publish(v string) (*updatecachetest.Image, error) {
	file := func(path, content string, mode os.FileMode) updatecachetest.File {
		return updatecachetest.File{Path: path, Content: []byte(content), Mode: mode}
	}
	big := make([]byte, 256<<10)
	for i := range big {
		big[i] = byte(i*7 + len(v))
	}
	img, err := updatecachetest.NewImage(updatecachetest.ImageSpec{
		Version: v,
		Created: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		Layers: []updatecachetest.Layer{
			{Files: []updatecachetest.File{
				file("usr/bin/sh", "#!/bin/sh\n# a shell\n", 0o755),
				file("usr/lib/systemd/systemd", "systemd\n", 0o755),
				{Path: "usr/bin/bash", Target: "sh"},
			}},
			{Files: []updatecachetest.File{file("usr/lib/firmware/blob.bin", string(big), 0o644)}},
			{Files: []updatecachetest.File{
				file("usr/lib/os-release", "NAME=\"Demo OS\"\nVERSION_ID="+v+"\n", 0o644),
				file("usr/etc/motd", "Welcome to Demo OS "+v+"\n", 0o644),
			}},
		},
	})
	if err != nil {
		return nil, err
	}
	top, err := d.reg.Push(d.ctx, demoRepo, "stable", img)
	if err != nil {
		return nil, err
	}
	d.pushed[v] = img
	d.say("   published %s: %s\n", v, top)
	return img, nil
}

func (d *demo) deployFirst() error {
	d.step(1, "Version 41.1 is published and deployed (pulled) into the repository")
	v1, err := d.publish("41.1")
	if err != nil {
		return err
	}
	res, err := updatecache.Pull(d.ctx, d.repo, d.image, updatecache.PullOptions{RegistryOptions: d.opts})
	if err != nil {
		return err
	}
	d.say("   deployed %s as merge commit %s: %d layers, %s fetched\n", res.Pulled.Version, res.MergeCommit[:12], res.LayersFetched, humanSize(res.BytesFetched))
	if res.Pulled.ManifestDigest != v1.ManifestDigest {
		return fmt.Errorf("pulled %s, want %s", res.Pulled.ManifestDigest, v1.ManifestDigest)
	}
	d.ok("the merge commit carries 41.1's manifest digest")
	return nil
}

func (d *demo) checkFindsUpdate() error {
	d.step(2, "Version 41.2 is published; the background check finds it and caches manifest and config")
	v2, err := d.publish("41.2")
	if err != nil {
		return err
	}
	d.reg.Reset()
	res, err := updatecache.Prepare(d.ctx, d.repo, d.image, updatecache.PrepareOptions{RegistryOptions: d.opts})
	if err != nil {
		return err
	}
	if !res.UpdateAvailable() || !res.Persisted() || res.CachedUpdate.ManifestDigest != v2.ManifestDigest {
		return fmt.Errorf("check: update %v, persisted %v (%s)", res.UpdateAvailable(), res.Persisted(), res.Reason)
	}
	d.say("\n")
	if err := writeCheck(indent(d.out), res); err != nil {
		return err
	}
	c := d.reg.Counts()
	d.say("\n   the check cost %d manifest HEAD, %d manifest GET and %d blob GET (the config): no layer\n", c.ManifestHEAD, c.ManifestGET, c.BlobGET)
	if c.BlobGETs(v2.ConfigDigest()) != 1 || c.BlobGET != 1 {
		return fmt.Errorf("the check fetched layers: %s", c)
	}
	d.ok("update 41.2 cached on merge commit %s; %s to download", res.Deployed.MergeCommit[:12], humanSize(res.CachedUpdate.Diff.AddedSize))
	return nil
}

func (d *demo) rebootOffline() error {
	d.step(3, "Reboot: the registry is gone; a fresh process shows the same update, offline")
	d.reg.Stop()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(d.ctx, self, "status", "--repo", d.dir, d.image).Output()
	if err != nil {
		return fmt.Errorf("updatecache status: %w", commandError(err))
	}
	d.say("   $ updatecache status --repo %s %s\n", d.dir, d.image)
	if _, err := indent(d.out).Write(out); err != nil {
		return err
	}
	js, err := exec.CommandContext(d.ctx, self, "status", "--json", "--repo", d.dir, d.image).Output()
	if err != nil {
		return fmt.Errorf("updatecache status --json: %w", commandError(err))
	}
	var st statusResultJSON
	if err := json.Unmarshal(js, &st); err != nil {
		return err
	}
	want := d.pushed["41.2"].ManifestDigest.String()
	if len(st.Images) != 1 || st.Images[0].CachedUpdate == nil || st.Images[0].CachedUpdate.ImageDigest != want {
		return fmt.Errorf("status after the reboot does not show %s: %s", want, js)
	}
	d.ok("the cached update is read from the repository alone")
	return nil
}

func (d *demo) pullPrepared() error {
	d.step(4, "Version 41.3 is pushed to the same tag; the prepared 41.2 is fetched exactly")
	if err := d.reg.Restart(); err != nil {
		return err
	}
	v3, err := d.publish("41.3")
	if err != nil {
		return err
	}
	res, err := updatecache.PullPrepared(d.ctx, d.repo, d.image, updatecache.PullOptions{RegistryOptions: d.opts})
	if err != nil {
		return err
	}
	d.say("   pulled %s (%s): %d layer(s) fetched (%s), %d already present\n", res.Pulled.Version, res.Pulled.ManifestDigest,
		res.LayersFetched, humanSize(res.BytesFetched), res.LayersReused)
	if res.Pulled.ManifestDigest != d.pushed["41.2"].ManifestDigest || res.Pulled.ManifestDigest == v3.ManifestDigest {
		return fmt.Errorf("pulled %s, want the prepared 41.2", res.Pulled.ManifestDigest)
	}
	d.ok("deployed 41.2, not 41.3 which the tag now names")
	st, err := updatecache.QueryImage(d.repo, d.image)
	if err != nil {
		return err
	}
	if st.Deployed.MergeCommit != res.MergeCommit || st.CachedUpdate != nil {
		return fmt.Errorf("after the pull: deployed %s, cached %v", st.Deployed.MergeCommit, st.CachedUpdate)
	}
	d.ok("the new merge commit %s starts with no cached update", res.MergeCommit[:12])
	return nil
}

func (d *demo) preparedGone() error {
	d.step(5, "The registry deletes a prepared update; fetching it fails clearly and changes nothing")
	v2 := d.pushed["41.2"]
	if err := d.reg.DeleteManifest(d.ctx, demoRepo, v2.ManifestDigest); err != nil {
		return err
	}
	d.say("   deleted 41.2's manifest %s from the registry\n", v2.ManifestDigest)
	_, err := updatecache.Pull(d.ctx, d.repo, d.reg.Ref(demoRepo, v2.ManifestDigest.String()), updatecache.PullOptions{RegistryOptions: d.opts})
	if !errors.Is(err, updatecache.ErrManifestUnknown) {
		return fmt.Errorf("fetching the deleted 41.2 again: %v, want ErrManifestUnknown", err)
	}
	d.say("   fetching 41.2 again: %v\n", err)
	d.ok("the registry's answer is reported as such")

	// The same for an update that was prepared and then deleted.
	res, err := updatecache.Prepare(d.ctx, d.repo, d.image, updatecache.PrepareOptions{RegistryOptions: d.opts})
	if err != nil {
		return err
	}
	prepared := res.CachedUpdate.ManifestDigest
	d.say("   the check prepares %s (%s); then the registry deletes it\n", res.CachedUpdate.Version, prepared)
	if err := d.reg.DeleteManifest(d.ctx, demoRepo, prepared); err != nil {
		return err
	}
	before, err := updatecache.QueryImage(d.repo, d.image)
	if err != nil {
		return err
	}
	_, err = updatecache.PullPrepared(d.ctx, d.repo, d.image, updatecache.PullOptions{RegistryOptions: d.opts})
	if !errors.Is(err, updatecache.ErrPreparedUpdateGone) {
		return fmt.Errorf("pull --prepared of a deleted update: %v, want ErrPreparedUpdateGone", err)
	}
	d.say("   $ updatecache pull --prepared %s\n   %v\n", d.image, err)
	after, err := updatecache.QueryImage(d.repo, d.image)
	if err != nil {
		return err
	}
	if after.Deployed.MergeCommit != before.Deployed.MergeCommit || after.CachedUpdate == nil || after.CachedUpdate.ManifestDigest != prepared {
		return errors.New("the failed pull changed the deployment or its cached update")
	}
	d.ok("still deployed: 41.2; still cached: %s", digest.Digest(prepared).Encoded()[:12])
	return nil
}

// commandError adds a failed command's stderr to its error.
func commandError(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, ee.Stderr)
	}
	return err
}

// indent prefixes every line written with three spaces.
func indent(w io.Writer) io.Writer { return &indentWriter{w: w, start: true} }

type indentWriter struct {
	w     io.Writer
	start bool
}

func (iw *indentWriter) Write(p []byte) (int, error) {
	for i, b := range p {
		if iw.start {
			if _, err := iw.w.Write([]byte("   ")); err != nil {
				return i, err
			}
		}
		if _, err := iw.w.Write(p[i : i+1]); err != nil {
			return i, err
		}
		iw.start = b == '\n'
	}
	return len(p), nil
}

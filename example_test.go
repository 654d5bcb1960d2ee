package updatecache_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/updatecachetest"
)

// exampleWorld starts what a real system has: a registry with the OS image
// at version 1 and 2, and a repository with version 1 deployed. It returns
// the image reference, the repository, the registry options and a cleanup.
func exampleWorld() (string, *updatecache.Repo, updatecache.RegistryOptions, func()) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "updatecache-example")
	if err != nil {
		log.Fatal(err)
	}
	reg, err := updatecachetest.StartRegistry()
	if err != nil {
		log.Fatal(err)
	}
	cleanup := func() { reg.Stop(); os.RemoveAll(dir) }
	sys, err := updatecachetest.SystemContext(dir)
	if err != nil {
		log.Fatal(err)
	}
	repoPath := filepath.Join(dir, "repo")
	if err := updatecachetest.CreateRepo(repoPath, updatecachetest.ModeArchive); err != nil {
		log.Fatal(err)
	}
	ref := reg.Ref("fedora/coreos", "stable")
	for _, v := range []string{"41.1", "41.2"} {
		// Uncompressed layers keep the sizes printed below independent of
		// the Go version's gzip.
		img, err := updatecachetest.NewImage(updatecachetest.ImageSpec{Version: v, Architecture: "amd64", Compression: updatecachetest.Uncompressed,
			Layers: []updatecachetest.Layer{{Files: []updatecachetest.File{{Path: "usr/lib/os-release", Content: []byte("VERSION=" + v), Mode: 0o644}}}}})
		if err != nil {
			log.Fatal(err)
		}
		if v == "41.1" {
			if _, err := updatecachetest.Deploy(ctx, repoPath, ref, img, ""); err != nil {
				log.Fatal(err)
			}
		}
		if _, err := reg.Push(ctx, "fedora/coreos", "stable", img); err != nil {
			log.Fatal(err)
		}
	}
	repo, err := updatecache.OpenRepo(repoPath)
	if err != nil {
		log.Fatal(err)
	}
	return ref, repo, updatecache.RegistryOptions{SystemContext: sys}, cleanup
}

// A background check: ask the registry, cache the new manifest and config on
// the deployed merge commit, and tell the user.
func ExamplePrepare() {
	image, repo, regOpts, cleanup := exampleWorld()
	defer cleanup()

	res, err := updatecache.Prepare(context.Background(), repo, image, updatecache.PrepareOptions{RegistryOptions: regOpts})
	if err != nil {
		log.Fatal(err)
	}
	switch res.Outcome {
	case updatecache.NoUpdate:
		fmt.Println("up to date:", res.Reason)
	case updatecache.UpdateCached:
		u := res.CachedUpdate
		fmt.Printf("update available: %s (from %s), %d bytes to download, cached\n",
			u.Version, res.Deployed.Version, u.Diff.AddedSize)
	default: // found, but not cached: nothing deployed, or a read-only repository
		fmt.Println("update available:", res.CachedUpdate.Version, "-", res.Reason)
	}
	// Output: update available: 41.2 (from 41.1), 2048 bytes to download, cached
}

// After a reboot, with no network: the update found earlier is still known.
func ExampleQueryCachedUpdate() {
	image, repo, regOpts, cleanup := exampleWorld()
	defer cleanup()
	if _, err := updatecache.Prepare(context.Background(), repo, image, updatecache.PrepareOptions{RegistryOptions: regOpts}); err != nil {
		log.Fatal(err)
	}

	u, err := updatecache.QueryCachedUpdate(repo, image)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cached update: version %s, %d new layer(s) of %d\n", u.Version, u.Diff.NAdded, u.Diff.Total)
	// Output: cached update: version 41.2, 1 new layer(s) of 1
}

// Forget a cached update, keeping every other detached key of the commit.
func ExampleClearCachedUpdate() {
	image, repo, regOpts, cleanup := exampleWorld()
	defer cleanup()
	ctx := context.Background()
	if _, err := updatecache.Prepare(ctx, repo, image, updatecache.PrepareOptions{RegistryOptions: regOpts}); err != nil {
		log.Fatal(err)
	}

	if err := updatecache.ClearCachedUpdate(ctx, repo, image); err != nil {
		log.Fatal(err)
	}
	u, err := updatecache.QueryCachedUpdate(repo, image)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("cached update after clearing:", u)
	// Output: cached update after clearing: <nil>
}

// The user starts the fetch: exactly the update prepared earlier, even though
// the tag has moved on since.
func ExamplePullPrepared() {
	image, repo, regOpts, cleanup := exampleWorld()
	defer cleanup()
	ctx := context.Background()
	if _, err := updatecache.Prepare(ctx, repo, image, updatecache.PrepareOptions{RegistryOptions: regOpts}); err != nil {
		log.Fatal(err)
	}

	res, err := updatecache.PullPrepared(ctx, repo, image, updatecache.PullOptions{RegistryOptions: regOpts})
	if errors.Is(err, updatecache.ErrPreparedUpdateGone) {
		log.Fatal("the registry no longer has the prepared update; check again")
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("deployed %s: %d layer(s) fetched\n", res.Pulled.Version, res.LayersFetched)
	// Output: deployed 41.2: 1 layer(s) fetched
}

// After a new deployment, collect what nothing needs any more.
func ExamplePrune() {
	image, repo, regOpts, cleanup := exampleWorld()
	defer cleanup()
	ctx := context.Background()
	if _, err := updatecache.Pull(ctx, repo, image, updatecache.PullOptions{RegistryOptions: regOpts}); err != nil {
		log.Fatal(err)
	}

	res, err := updatecache.Prune(ctx, repo, updatecache.PruneOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("removed %d ref(s) and %d object(s)\n", len(res.RefsDeleted), res.ObjectsDeleted)
	// Output: removed 0 ref(s) and 2 object(s)
}

package updatecache_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/keys"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/updatecachetest"
)

// benchLayers is the layer count of the benchmark's images, in the range of
// a chunked OS image such as Fedora CoreOS.
const benchLayers = 40

// otherCommits is how many unrelated commits the large repository holds.
const otherCommits = 10000

// BenchmarkQueryCachedUpdate reads the cached update of a deployed
// 40-layer image (the update has 40 layers too), first in a repository
// holding nothing else, then with 10,000 other commits (a tenth of them
// under refs) beside it: the cost should not depend on the repository's
// size. The floor reads the same two files (commit object, .commitmeta)
// and decodes the four JSON documents with encoding/json, skipping
// everything else QueryCachedUpdate does (ref lookup, checksum check,
// GVariant decoding, validation, the layer diff): the least any
// implementation must do, to show what ours adds.
func BenchmarkQueryCachedUpdate(b *testing.B) {
	ctx := context.Background()
	repoPath, ref, commit := cachedUpdateRepo(b)
	repo, err := updatecache.OpenRepo(repoPath)
	if err != nil {
		b.Fatal(err)
	}
	query := func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			u, err := updatecache.QueryCachedUpdate(repo, ref)
			if err != nil || u == nil || len(u.Layers) != benchLayers {
				b.Fatalf("QueryCachedUpdate: %v, %v", u, err)
			}
		}
	}
	b.Run("repo=image-only", query)
	b.Run("floor=readfile+json", func(b *testing.B) { queryFloor(b, repoPath, commit) })
	if err := addOtherCommits(ctx, repoPath, otherCommits); err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("repo=%d-other-commits", otherCommits), query)
}

// benchImage is version v of a benchLayers-layer image; the last three
// layers change from one version to the next.
func benchImage(tb testing.TB, v string) *updatecachetest.Image {
	tb.Helper()
	spec := updatecachetest.ImageSpec{
		Version:      v,
		Created:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Architecture: "amd64",
	}
	for i := range benchLayers {
		content := fmt.Sprintf("component %d\n", i)
		if i >= benchLayers-3 {
			content += "version " + v + "\n"
		}
		spec.Layers = append(spec.Layers, updatecachetest.Layer{Files: []updatecachetest.File{
			{Path: fmt.Sprintf("usr/lib/component-%02d/data", i), Content: []byte(content)},
		}})
	}
	img, err := updatecachetest.NewImage(spec)
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// cachedUpdateRepo returns a repository with v1 deployed and v2 cached by
// Prepare from the in-process registry, the image reference and the merge
// commit.
func cachedUpdateRepo(b *testing.B) (repoPath, ref, commit string) {
	b.Helper()
	ctx := context.Background()
	reg := updatecachetest.NewRegistry(b)
	repoPath = updatecachetest.NewRepo(b)
	ref = reg.Ref("os/base", "stable")
	sys, err := updatecachetest.SystemContext(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	v1, v2 := benchImage(b, "1"), benchImage(b, "2")
	if commit, err = updatecachetest.Deploy(ctx, repoPath, ref, v1, ""); err != nil {
		b.Fatal(err)
	}
	if _, err := reg.Push(ctx, "os/base", "stable", v2); err != nil {
		b.Fatal(err)
	}
	repo, err := updatecache.OpenRepo(repoPath)
	if err != nil {
		b.Fatal(err)
	}
	res, err := updatecache.Prepare(ctx, repo, ref, updatecache.PrepareOptions{
		RegistryOptions: updatecache.RegistryOptions{SystemContext: sys},
	})
	if err != nil || !res.Persisted() {
		b.Fatalf("Prepare: %v, %+v", err, res)
	}
	return repoPath, ref, commit
}

// addOtherCommits writes n commits of an empty tree, each with its own
// timestamp and subject, and points a ref at every tenth, as unrelated
// history and layer refs would be. Writers run in parallel because each
// object write is fsynced.
func addOtherCommits(ctx context.Context, repoPath string, n int) error {
	repo, err := ostree.Open(repoPath)
	if err != nil {
		return err
	}
	tree, err := ostree.EncodeDirTree(nil, nil)
	if err != nil {
		return err
	}
	meta, err := ostree.EncodeDirMeta(0, 0, 0o40755, nil)
	if err != nil {
		return err
	}
	root := ostree.Commit{}
	if root.RootTree, err = repo.WriteMetadataObject(ctx, ostree.ObjectDirTree, tree); err != nil {
		return err
	}
	if root.RootMeta, err = repo.WriteMetadataObject(ctx, ostree.ObjectDirMeta, meta); err != nil {
		return err
	}
	const writers = 8
	g, ctx := errgroup.WithContext(ctx)
	for w := range writers {
		g.Go(func() error {
			for i := w; i < n; i += writers {
				c := root
				c.Timestamp = time.Unix(int64(1_700_000_000+i), 0).UTC()
				c.Subject = fmt.Sprintf("other commit %d", i)
				c.Metadata = gvariant.VarDict{{Key: "version", Value: gvariant.NewString(fmt.Sprint(i))}}
				checksum, err := repo.WriteCommit(ctx, &c)
				if err != nil {
					return err
				}
				if i%10 == 0 {
					if err := repo.SetRef(ctx, fmt.Sprintf("other/branch-%05d", i), checksum); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// floorManifest and floorConfig hold only what a query reports.
type floorManifest struct {
	SchemaVersion int `json:"schemaVersion"`
	Config        struct {
		Digest string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	} `json:"layers"`
	Annotations map[string]string `json:"annotations"`
}

type floorConfig struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Config       struct {
		Labels map[string]string `json:"Labels"`
	} `json:"config"`
	Created string `json:"created"`
}

// queryFloor reads the commit object and its .commitmeta and decodes the
// deployed and the cached manifest and config, found in the files' bytes
// at offsets located once beforehand.
func queryFloor(b *testing.B, repoPath, commit string) {
	objects := filepath.Join(repoPath, "objects", commit[:2], commit[2:])
	commitPath, metaPath := objects+".commit", objects+".commitmeta"
	spans := func(path string, keys ...string) [][2]int {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		var md gvariant.VarDict
		if path == commitPath {
			c, err := ostree.DecodeCommit(data)
			if err != nil {
				b.Fatal(err)
			}
			md = c.Metadata
		} else if md, err = gvariant.UnmarshalVarDict(data); err != nil {
			b.Fatal(err)
		}
		var out [][2]int
		for _, k := range keys {
			s, ok, err := md.LookupString(k)
			i := bytes.Index(data, []byte(s))
			if err != nil || !ok || i < 0 {
				b.Fatalf("%s: no %s in place (%v)", path, k, err)
			}
			out = append(out, [2]int{i, i + len(s)})
		}
		return out
	}
	commitSpans := spans(commitPath, keys.Manifest, keys.ImageConfig)
	metaSpans := spans(metaPath, keys.CachedManifest, keys.CachedConfig)

	b.ReportAllocs()
	for b.Loop() {
		for _, f := range []struct {
			path  string
			spans [][2]int
		}{{commitPath, commitSpans}, {metaPath, metaSpans}} {
			data, err := os.ReadFile(f.path)
			if err != nil {
				b.Fatal(err)
			}
			var m floorManifest
			var c floorConfig
			if err := json.Unmarshal(data[f.spans[0][0]:f.spans[0][1]], &m); err != nil {
				b.Fatal(err)
			}
			if err := json.Unmarshal(data[f.spans[1][0]:f.spans[1][1]], &c); err != nil {
				b.Fatal(err)
			}
			if len(m.Layers) != benchLayers {
				b.Fatalf("%s: %d layers", f.path, len(m.Layers))
			}
		}
	}
}

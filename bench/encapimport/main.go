// Command encapimport imports an encapsulated image from an OCI layout
// into a new OSTree repository with updatecache's importer, as a pull
// does (chunk layers, then the commit layer, then the merge commit), for
// bench/encap.sh, and prints the commit, the time taken and the process's
// peak RSS. Layers are streamed from their files.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"syscall"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/osimage/updatecache/bench/internal/cpuprofile"
	"github.com/osimage/updatecache/internal/importer"
	"github.com/osimage/updatecache/internal/ostree"
)

func main() {
	layout := flag.String("layout", "", "OCI layout directory (one image)")
	repoPath := flag.String("repo", "", "repository to create")
	mode := flag.String("mode", string(ostree.ModeBareUser), "its mode")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	defer cpuprofile.Start(*cpuProfile)()
	ctx := context.Background()
	var index imgspecv1.Index
	readJSON(filepath.Join(*layout, "index.json"), &index)
	var manifest imgspecv1.Manifest
	readJSON(blobPath(*layout, index.Manifests[0]), &manifest)
	var config imgspecv1.Image
	readJSON(blobPath(*layout, manifest.Config), &config)
	labels := config.Config.Labels
	commit := labels["ostree.commit"]
	final := labels["ostree.final-diffid"]

	start := time.Now()
	repo, err := ostree.Create(*repoPath, ostree.Mode(*mode))
	if err != nil {
		log.Fatal(err)
	}
	// Layout: the commit layer first, chunks up to ostree.final-diffid.
	last := 0
	for i, d := range config.RootFS.DiffIDs {
		if d.String() == final {
			last = i
		}
	}
	blob := func(i int) (importer.Blob, *os.File) {
		l := manifest.Layers[i]
		f, err := os.Open(blobPath(*layout, l))
		if err != nil {
			log.Fatal(err)
		}
		return importer.Blob{MediaType: l.MediaType, Digest: l.Digest.String(), DiffID: config.RootFS.DiffIDs[i].String()}, f
	}
	objects := 0
	for i := 1; i <= last; i++ {
		b, f := blob(i)
		res, err := importer.ImportObjectSetLayer(ctx, repo, f, b)
		f.Close()
		if err != nil {
			log.Fatal(err)
		}
		objects += res.Objects.ContentWritten + res.Objects.MetadataWritten
	}
	b, f := blob(0)
	res, err := importer.ImportCommitLayer(ctx, repo, f, importer.CommitLayerOptions{Blob: b, Commit: commit})
	f.Close()
	if err != nil {
		log.Fatal(err)
	}
	objects += res.Objects.ContentWritten + res.Objects.MetadataWritten
	merge, err := importer.WriteImageMergeCommit(ctx, repo, "image", importer.ImageMergeOptions{Base: commit})
	if err != nil {
		log.Fatal(err)
	}
	elapsed := time.Since(start)
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("commit %s\nmerge %s\nobjects_written %d\nseconds %.3f\npeak_rss_kib %d\n", res.Commit, merge, objects, elapsed.Seconds(), ru.Maxrss)
}

func blobPath(layout string, d imgspecv1.Descriptor) string {
	return filepath.Join(layout, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded())
}

func readJSON(path string, v any) {
	data, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		log.Fatalf("%s: %v", path, err)
	}
}

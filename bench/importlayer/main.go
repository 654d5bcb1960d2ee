// Command importlayer imports one layer tar into an OSTree repository with
// updatecache's importer, for bench/import.sh, and prints the time taken,
// the process's peak RSS and what was written (bench/label.sh makes the
// tree it labels with it).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"syscall"
	"time"

	"github.com/osimage/updatecache/bench/internal/cpuprofile"
	"github.com/osimage/updatecache/internal/importer"
	"github.com/osimage/updatecache/internal/ostree"
)

func main() {
	repoPath := flag.String("repo", "", "repository (created archive-z2 if missing)")
	layer := flag.String("layer", "", "layer blob")
	mediaType := flag.String("media-type", "application/vnd.oci.image.layer.v1.tar", "the layer's media type")
	dgst := flag.String("digest", "", "the blob's digest")
	diffID := flag.String("diff-id", "", "the tar's digest (default: -digest)")
	allowNonUsr := flag.Bool("allow-non-usr", false, "keep top-level directories other than usr, etc and var")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	defer cpuprofile.Start(*cpuProfile)()
	if *diffID == "" {
		*diffID = *dgst
	}
	repo, err := ostree.Open(*repoPath)
	if err != nil {
		if repo, err = ostree.Create(*repoPath, ostree.ModeArchive); err != nil {
			log.Fatal(err)
		}
	}
	f, err := os.Open(*layer)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	res, err := importer.ImportLayer(context.Background(), repo, f, importer.LayerOptions{Blob: importer.Blob{MediaType: *mediaType, Digest: *dgst, DiffID: *diffID}, AllowNonUsr: *allowNonUsr})
	if err != nil {
		log.Print(err)
		return
	}
	elapsed := time.Since(start)
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("commit %s\nseconds %.3f\npeak_rss_kib %d\ncontent_written %d\ncontent_present %d\nmetadata_written %d\n",
		res.Commit, elapsed.Seconds(), ru.Maxrss, res.Objects.ContentWritten, res.Objects.ContentPresent, res.Objects.MetadataWritten)
}

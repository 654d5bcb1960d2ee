// Command encapgen makes the encapsulated image bench/encap.sh imports:
// it imports a layer tar written by bench/importgen into a new OSTree
// repository as a commit (the source), then writes the image ostree-ext's
// encapsulation makes of that commit, as an OCI layout. The content
// objects of the usr/share/pkgNNN directories are spread over -chunks
// chunk layers by NNN; what is left (1 in chunks+1 of those directories,
// the large files) stays in the commit layer. It prints the commit.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/osimage/updatecache/internal/importer"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/updatecachetest"
)

func main() {
	layer := flag.String("layer", "", "layer tar from bench/importgen")
	dgst := flag.String("digest", "", "its digest")
	repoPath := flag.String("repo", "", "source repository to create")
	mode := flag.String("mode", string(ostree.ModeBareUser), "its mode")
	out := flag.String("out", "", "OCI layout directory to write")
	chunks := flag.Int("chunks", 8, "chunk layers")
	dirs := flag.Int("dirs", 400, "usr/share/pkgNNN directories in the layer")
	compression := flag.String("compression", "none", "none, gzip or zstd")
	linked := flag.Bool("linked", false, "the .file-xattrs + hard link encoding instead of inline xattrs")
	flag.Parse()
	ctx := context.Background()

	repo, err := ostree.Create(*repoPath, ostree.Mode(*mode))
	if err != nil {
		log.Fatal(err)
	}
	f, err := os.Open(*layer)
	if err != nil {
		log.Fatal(err)
	}
	res, err := importer.ImportLayer(ctx, repo, f, importer.LayerOptions{Blob: importer.Blob{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: *dgst, DiffID: *dgst}})
	f.Close()
	if err != nil {
		log.Fatal(err)
	}
	spec := updatecachetest.EncapsulateSpec{Repo: *repoPath, Commit: res.Commit}
	spec.Compression = map[string]updatecachetest.Compression{"none": updatecachetest.Uncompressed, "gzip": updatecachetest.Gzip, "zstd": updatecachetest.Zstd}[*compression]
	if *linked {
		spec.XattrEncoding = updatecachetest.XattrsLinked
	}
	for c := range *chunks {
		ch := updatecachetest.Chunk{Name: fmt.Sprintf("chunk %d", c), Components: []string{fmt.Sprintf("pkg-group-%d", c)}}
		for d := c; d < *dirs; d += *chunks + 1 {
			ch.Paths = append(ch.Paths, fmt.Sprintf("usr/share/pkg%03d", d))
		}
		spec.Chunks = append(spec.Chunks, ch)
	}
	img, err := updatecachetest.Encapsulate(ctx, spec)
	if err != nil {
		log.Fatal(err)
	}
	if err := updatecachetest.WriteLayout(*out, "latest", img); err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Commit)
}

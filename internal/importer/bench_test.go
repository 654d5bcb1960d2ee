package importer

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/updatecachetest"
)

// benchLayer is a gzip layer of 2000 small files in 40 directories and one
// 8 MiB file.
func benchLayer(b *testing.B) layer {
	entries := []ent{dir("usr/", 0o755)}
	for i := range 2000 {
		entries = append(entries, reg(fmt.Sprintf("usr/share/d%02d/f%04d", i%40, i), 0o644, string(randomBytes(i%8192, uint64(i)))))
	}
	entries = append(entries, reg("usr/lib/big", 0o755, string(randomBytes(8<<20, 1))))
	return compressLayer(b, makeTar(b, entries), mediaGzip)
}

// BenchmarkImportLayer imports a layer into a fresh archive-z2 repository
// ("new"), and again into one that already has every object ("present").
// Throughput is of the uncompressed tar.
func BenchmarkImportLayer(b *testing.B) {
	l := benchLayer(b)
	tarSize := int64(0)
	run := func(b *testing.B, fresh bool) {
		var r *ostree.Repo
		if !fresh {
			r = newRepo(b, ostree.ModeArchive)
			res, err := ImportLayer(context.Background(), r, bytes.NewReader(l.blob), l.options())
			if err != nil {
				b.Fatal(err)
			}
			tarSize = res.TarSize
		}
		b.SetBytes(tarSize)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if fresh {
				b.StopTimer()
				r = newRepo(b, ostree.ModeArchive)
				b.StartTimer()
			}
			if _, err := ImportLayer(context.Background(), r, bytes.NewReader(l.blob), l.options()); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("present", func(b *testing.B) { run(b, false) })
	b.Run("new", func(b *testing.B) { run(b, true) })
}

// BenchmarkImportEncapsulated imports the sample commit's encapsulated
// image (chunk layers, then the commit layer) into a fresh bare-user
// repository. bench/encap.sh measures a 20,000-object image against
// ostree pull-local.
func BenchmarkImportEncapsulated(b *testing.B) {
	r := newRepo(b, ostree.ModeArchive)
	spec := updatecachetest.SampleCommit("1")
	commit, err := updatecachetest.WriteCommit(context.Background(), r.Path(), spec)
	if err != nil {
		b.Fatal(err)
	}
	img, err := updatecachetest.Encapsulate(context.Background(), updatecachetest.EncapsulateSpec{
		Repo: r.Path(), Commit: commit, Chunks: sampleChunks, Compression: updatecachetest.Uncompressed})
	if err != nil {
		b.Fatal(err)
	}
	size := int64(0)
	for _, l := range img.Layers {
		size += l.Size
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		dst := newRepo(b, ostree.ModeBareUser)
		b.StartTimer()
		ctx := context.Background()
		for _, l := range img.Layers[1:] {
			if _, err := ImportObjectSetLayer(ctx, dst, bytes.NewReader(l.Data), blobOf(l)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := ImportCommitLayer(ctx, dst, bytes.NewReader(img.Layers[0].Data), CommitLayerOptions{Blob: blobOf(img.Layers[0]), Commit: commit}); err != nil {
			b.Fatal(err)
		}
	}
}

package importer

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/updatecachetest"
)

// TestVerifyLayerCommit checks blob refs before reuse: each kind of layer
// commit passes for its own kind only, the commit layer only for the
// image's commit, and a commit missing an object fails.
func TestVerifyLayerCommit(t *testing.T) {
	ctx := context.Background()
	src, commit := sourceCommit(t, ostree.ModeArchive, "40.8")
	img := encapsulate(t, src, commit, updatecachetest.EncapsulateSpec{Chunks: sampleChunks, Derived: derivedLayers})
	r := newRepo(t, ostree.ModeBareUser)
	got := importImage(t, r, img, commit, len(sampleChunks))
	for _, tc := range []struct {
		name   string
		commit string
		kind   LayerKind
		want   error
	}{
		{"commit layer", commit, CommitLayer, nil},
		{"chunk", got.chunks[0], ObjectSetLayer, nil},
		{"derived", got.derived[0], DerivedLayer, nil},
		{"another commit for the commit layer", got.derived[0], CommitLayer, ErrCommitMismatch},
		{"a chunk for a derived layer", got.chunks[1], DerivedLayer, ErrLayerCommitKind},
		{"a derived layer for a chunk", got.derived[1], ObjectSetLayer, ErrLayerCommitKind},
		{"the image's commit for a chunk", commit, ObjectSetLayer, ErrLayerCommitKind},
		{"unknown kind", commit, LayerKind(7), ErrInvalidOptions},
	} {
		if err := VerifyLayerCommit(ctx, r, tc.commit, tc.kind, commit); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// An object of the kernel chunk goes: the chunk and the commit are
	// incomplete, the other chunks are not.
	c, err := r.ReadCommit(got.chunks[0])
	if err != nil {
		t.Fatal(err)
	}
	data, err := r.ReadMetadataObject(c.RootTree, ostree.ObjectDirTree)
	if err != nil {
		t.Fatal(err)
	}
	files, _, err := ostree.DecodeDirTree(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(r.ObjectPath(files[0].Checksum, ostree.ObjectFile)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		commit string
		kind   LayerKind
		want   error
	}{
		{got.chunks[0], ObjectSetLayer, ErrIncompleteCommit},
		{commit, CommitLayer, ErrIncompleteCommit},
		{got.chunks[1], ObjectSetLayer, nil},
	} {
		if err := VerifyLayerCommit(ctx, r, tc.commit, tc.kind, commit); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("%s after a removal: %v, want %v", tc.kind, err, tc.want)
		}
	}
}

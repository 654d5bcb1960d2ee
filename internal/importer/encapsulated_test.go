package importer

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// sampleChunks splits the sample commit into chunk layers as rpm-ostree
// does by package: the kernel, the shell and coreutils-like programs.
var sampleChunks = []updatecachetest.Chunk{
	{Name: "kernel", Components: []string{"kernel-core", "kernel"}, Paths: []string{"usr/lib/modules"}},
	{Name: "bash", Components: []string{"bash"}, Paths: []string{"usr/bin/bash", "usr/bin/sh"}},
	{Name: "gzip and friends", Components: []string{"gzip", "iputils"}, Paths: []string{"usr/bin/gzip", "usr/bin/ping"}},
}

// sourceCommit writes updatecachetest.SampleCommit into a new repository
// of the given mode and returns the repository and the commit.
func sourceCommit(t *testing.T, mode ostree.Mode, version string) (*ostree.Repo, string) {
	t.Helper()
	r := newRepo(t, mode)
	spec := updatecachetest.SampleCommit(version)
	spec.DetachedMetadata = map[string]string{"ostree.gpgsigs.fake": "signature of " + version}
	commit, err := updatecachetest.WriteCommit(context.Background(), r.Path(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return r, commit
}

// encapsulate builds the encapsulated image of commit.
func encapsulate(t *testing.T, r *ostree.Repo, commit string, spec updatecachetest.EncapsulateSpec) *updatecachetest.Image {
	t.Helper()
	spec.Repo, spec.Commit = r.Path(), commit
	img, err := updatecachetest.Encapsulate(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func blobOf(l updatecachetest.Blob) Blob {
	return Blob{MediaType: l.MediaType, Digest: l.Digest.String(), DiffID: l.DiffID.String()}
}

// importedImage is what importImage made of an image.
type importedImage struct {
	base    string   // the commit layer's commit
	chunks  []string // the chunk layers' object-set commits
	derived []string // the derived layers' commits
	refs    []string // and their blob refs
}

// importImage imports an encapsulated image's layers as a pull does: the
// chunk layers first, then the commit layer, then the derived layers.
func importImage(t *testing.T, r *ostree.Repo, img *updatecachetest.Image, commit string, nChunks int) importedImage {
	t.Helper()
	ctx := context.Background()
	var got importedImage
	for _, l := range img.Layers[1 : 1+nChunks] {
		res, err := ImportObjectSetLayer(ctx, r, bytes.NewReader(l.Data), blobOf(l))
		if err != nil {
			t.Fatalf("chunk layer %s: %v", l.Digest, err)
		}
		got.chunks = append(got.chunks, res.Commit)
	}
	res, err := ImportCommitLayer(ctx, r, bytes.NewReader(img.Layers[0].Data), CommitLayerOptions{Blob: blobOf(img.Layers[0]), Commit: commit})
	if err != nil {
		t.Fatalf("commit layer: %v", err)
	}
	got.base = res.Commit
	for _, l := range img.Layers[1+nChunks:] {
		b := blobOf(l)
		res, err := ImportLayer(ctx, r, bytes.NewReader(l.Data), LayerOptions{Blob: b})
		if err != nil {
			t.Fatalf("derived layer %s: %v", l.Digest, err)
		}
		got.derived = append(got.derived, res.Commit)
		got.refs = append(got.refs, res.Ref)
	}
	return got
}

// lsTree is `ostree ls -R -X -C` of a commit: every path with its mode,
// owner, size, checksum and xattrs, as libostree reads them.
func lsTree(t *testing.T, r *ostree.Repo, rev string) string {
	t.Helper()
	return testtool.RunOstree(t, "ls", "--repo="+r.Path(), "-R", "-X", "-C", rev)
}

// modes are the repository modes images are imported into; bare needs root.
func modes(t *testing.T) []ostree.Mode {
	ms := []ostree.Mode{ostree.ModeArchive, ostree.ModeBareUser}
	if os.Geteuid() == 0 {
		return append(ms, ostree.ModeBare)
	}
	t.Log("not root: bare repositories are not tested")
	return ms
}

// TestEncapsulatedRoundTrip imports encapsulated images of the sample
// commit (every xattr encoding, with and without chunks, each
// compression) into each repository mode, and requires the commit itself
// (same checksum, its detached metadata), a clean `ostree fsck`, the same
// `ostree ls -R -X -C` as the source, and a merge commit whose root is
// the commit's, child of it.
func TestEncapsulatedRoundTrip(t *testing.T) {
	testtool.Ostree(t)
	src, commit := sourceCommit(t, ostree.ModeArchive, "40.1")
	want := lsTree(t, src, commit)
	srcCommit, err := src.ReadCommit(commit)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range modes(t) {
		for _, tc := range []struct {
			name string
			spec updatecachetest.EncapsulateSpec
		}{
			{"inline", updatecachetest.EncapsulateSpec{Chunks: sampleChunks}},
			{"linked-pax", updatecachetest.EncapsulateSpec{Chunks: sampleChunks, XattrEncoding: updatecachetest.XattrsLinkedPAX, Compression: updatecachetest.Zstd}},
			{"linked", updatecachetest.EncapsulateSpec{Chunks: sampleChunks, XattrEncoding: updatecachetest.XattrsLinked, ParentDirs: true}},
			{"one-layer", updatecachetest.EncapsulateSpec{Compression: updatecachetest.Uncompressed}},
		} {
			t.Run(string(mode)+"/"+tc.name, func(t *testing.T) {
				img := encapsulate(t, src, commit, tc.spec)
				r := newRepo(t, mode)
				// What an interrupted libostree pull leaves; the import clears it.
				partial := filepath.Join(r.Path(), "state", commit+".commitpartial")
				if err := os.WriteFile(partial, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				got := importImage(t, r, img, commit, len(tc.spec.Chunks))
				if _, err := os.Stat(partial); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("the commit is still marked partial: %v", err)
				}
				if got.base != commit {
					t.Fatalf("commit layer gave %s, want %s", got.base, commit)
				}
				testtool.RunOstree(t, "fsck", "--repo="+r.Path())
				if ls := lsTree(t, r, commit); ls != want {
					t.Errorf("ostree ls of the imported commit differs:\n%s\nwant:\n%s", ls, want)
				}
				sig := testtool.RunOstree(t, "show", "--repo="+r.Path(), commit, "--print-detached-metadata-key=ostree.gpgsigs.fake")
				if !strings.Contains(sig, "signature of 40.1") {
					t.Errorf("detached metadata: %q", sig)
				}
				ref, _ := ostree.BlobRefName(img.Layers[0].Digest.String())
				if sum, err := r.ResolveRef(ref); err != nil || sum != commit {
					t.Errorf("blob ref of the commit layer: %s, %v", sum, err)
				}
				merge, err := WriteImageMergeCommit(context.Background(), r, "image", ImageMergeOptions{Base: commit})
				if err != nil {
					t.Fatal(err)
				}
				mc, err := r.ReadCommit(merge)
				if err != nil {
					t.Fatal(err)
				}
				if mc.RootTree != srcCommit.RootTree || mc.RootMeta != srcCommit.RootMeta || mc.Parent != commit {
					t.Errorf("merge commit root %s/%s parent %s, want %s/%s parent %s", mc.RootTree, mc.RootMeta, mc.Parent, srcCommit.RootTree, srcCommit.RootMeta, commit)
				}
				testtool.RunOstree(t, "fsck", "--repo="+r.Path())
			})
		}
	}
}

// TestEncapsulatedFromEveryMode encapsulates the sample commit from a
// source repository of each mode: the images carry the same objects, so
// importing any of them gives the same commit.
func TestEncapsulatedFromEveryMode(t *testing.T) {
	testtool.Ostree(t)
	var first string
	for _, mode := range modes(t) {
		t.Run(string(mode), func(t *testing.T) {
			src, commit := sourceCommit(t, mode, "40.2")
			if first == "" {
				first = commit
			} else if commit != first {
				t.Fatalf("the sample commit is %s in %s, %s elsewhere", commit, mode, first)
			}
			img := encapsulate(t, src, commit, updatecachetest.EncapsulateSpec{Chunks: sampleChunks})
			r := newRepo(t, ostree.ModeArchive)
			if got := importImage(t, r, img, commit, len(sampleChunks)); got.base != commit {
				t.Fatalf("imported %s, want %s", got.base, commit)
			}
			testtool.RunOstree(t, "fsck", "--repo="+r.Path())
		})
	}
}

// objectSetScript replays ostree-ext's finish_import_object_set through
// libostree's own bindings: a MutableTree of the given content objects,
// each named by its checksum, the default dirmeta, write_mtree, and
// write_commit_with_time with no parent, subject, body or metadata at
// time 0. It prints the commit's checksum.
const objectSetScript = `
import sys, gi
gi.require_version('OSTree', '1.0')
from gi.repository import OSTree, Gio
repo = OSTree.Repo.new(Gio.File.new_for_path(sys.argv[1]))
repo.open(None)
repo.prepare_transaction(None)
mt = OSTree.MutableTree.new()
for c in sys.argv[2:]:
    mt.replace_file(c, c)
fi = Gio.FileInfo.new()
fi.set_attribute_uint32('unix::uid', 0)
fi.set_attribute_uint32('unix::gid', 0)
fi.set_attribute_uint32('unix::mode', 0o40755)
_, meta = repo.write_metadata(OSTree.ObjectType.DIR_META, None, OSTree.create_directory_metadata(fi, None), None)
mt.set_metadata_checksum(OSTree.checksum_from_bytes(meta))
_, root = repo.write_mtree(mt, None)
_, commit = repo.write_commit_with_time(None, None, None, None, root, 0, None)
repo.commit_transaction(None)
print(commit)
`

// TestObjectSetCommitMatchesLibostree imports the chunk layers and has
// libostree write the object-set commit of the same objects as
// ostree-ext's finish_import_object_set does: the checksums, so the
// bytes, must be ours. IsObjectSetCommit must recognise them, and not the
// image's own commit.
func TestObjectSetCommitMatchesLibostree(t *testing.T) {
	python := testtool.LibostreePython(t)
	src, commit := sourceCommit(t, ostree.ModeArchive, "40.3")
	img := encapsulate(t, src, commit, updatecachetest.EncapsulateSpec{Chunks: sampleChunks})
	for _, mode := range []ostree.Mode{ostree.ModeArchive, ostree.ModeBareUser} {
		t.Run(string(mode), func(t *testing.T) {
			r := newRepo(t, mode)
			got := importImage(t, r, img, commit, len(sampleChunks))
			for _, set := range got.chunks {
				c, err := r.ReadCommit(set)
				if err != nil {
					t.Fatal(err)
				}
				data, err := r.ReadMetadataObject(c.RootTree, ostree.ObjectDirTree)
				if err != nil {
					t.Fatal(err)
				}
				files, _, err := ostree.DecodeDirTree(data)
				if err != nil || len(files) == 0 {
					t.Fatalf("object set %s: %d files, %v", set, len(files), err)
				}
				args := []string{"-c", objectSetScript, r.Path()}
				for _, f := range files {
					args = append(args, f.Checksum)
				}
				out, err := exec.Command(python, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("libostree: %v\n%s", err, out)
				}
				if theirs := strings.TrimSpace(string(out)); theirs != set {
					t.Errorf("object-set commit %s, libostree's %s", set, theirs)
				}
				if ok, err := IsObjectSetCommit(r, set); !ok || err != nil {
					t.Errorf("IsObjectSetCommit(%s) = %v, %v", set, ok, err)
				}
			}
			if ok, err := IsObjectSetCommit(r, commit); ok || err != nil {
				t.Errorf("IsObjectSetCommit(the image's commit) = %v, %v", ok, err)
			}
		})
	}
}

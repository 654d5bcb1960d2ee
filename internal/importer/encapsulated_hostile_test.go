package importer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/updatecachetest"
)

// rawEntry is a tar entry with its content, for editing layers; pax, if
// set, are PAX records written as they are ahead of it.
type rawEntry struct {
	hdr  *tar.Header
	data []byte
	pax  [][2]string
}

func readEntries(t *testing.T, data []byte) []rawEntry {
	t.Helper()
	var es []rawEntry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return es
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, rawEntry{hdr: hdr, data: body})
	}
}

// rewriteLayer edits an uncompressed layer's entries and writes them
// again with archive/tar.
func rewriteLayer(t *testing.T, data []byte, edit func([]rawEntry) []rawEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range edit(readEntries(t, data)) {
		h := *e.hdr
		h.Format, h.Size = tar.FormatUnknown, int64(len(e.data))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if e.pax != nil {
			tw.Flush()
			buf.Write(paxHeader(t, e.pax))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	return buf.Bytes()
}

func tarBlob(data []byte) Blob {
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(data))
	return Blob{MediaType: mediaTar, Digest: d, DiffID: d}
}

// index returns the first entry whose name ends with suffix.
func index(es []rawEntry, suffix string) int {
	return slices.IndexFunc(es, func(e rawEntry) bool { return strings.HasSuffix(e.hdr.Name, suffix) })
}

// contentIndex returns the first content object of non-zero size.
func contentIndex(es []rawEntry) int {
	return slices.IndexFunc(es, func(e rawEntry) bool {
		return strings.HasSuffix(e.hdr.Name, ".file") && e.hdr.Typeflag == tar.TypeReg && len(e.data) > 0
	})
}

func flip(e rawEntry) rawEntry {
	e.data = bytes.Clone(e.data)
	e.data[len(e.data)/2] ^= 1
	return e
}

// repoSnapshot lists every file under a repository with its type,
// permissions, size, content hash, symlink target and xattrs.
func repoSnapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d", info.Mode(), info.Size())
		switch {
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(data))
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		buf := make([]byte, 4096)
		if n, err := unix.Llistxattr(p, buf); err == nil {
			for _, name := range strings.Split(string(buf[:n]), "\x00") {
				if name != "" {
					v := make([]byte, 4096)
					vn, _ := unix.Lgetxattr(p, name, v)
					desc += fmt.Sprintf(" %s=%x", name, v[:max(vn, 0)])
				}
			}
		}
		snap[strings.TrimPrefix(p, root)] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// hostileCase is a broken encapsulated layer and the error it must give.
type hostileCase struct {
	name     string
	chunk    bool   // a chunk layer is edited, not the commit layer
	commit   string // the expected commit, if not the image's
	edit     func([]rawEntry) []rawEntry
	truncate bool            // the stream ends half way
	blob     func(Blob) Blob // a change to the blob's description
	want     error
}

// TestEncapsulatedHostile feeds broken and hostile encapsulated layers:
// each gives its typed error and leaves the repository exactly as it was
// (every file's bytes, mode and xattrs; no ref, no staging left). The
// intact layers still import afterwards.
func TestEncapsulatedHostile(t *testing.T) {
	src, commit := sourceCommit(t, ostree.ModeArchive, "40.7")
	other := strings.Repeat("ab", 32)
	for _, enc := range []updatecachetest.XattrEncoding{updatecachetest.XattrsInline, updatecachetest.XattrsLinked} {
		img := encapsulate(t, src, commit, updatecachetest.EncapsulateSpec{Chunks: sampleChunks, XattrEncoding: enc, Compression: updatecachetest.Uncompressed})
		commitLayer, chunkLayer := img.Layers[0].Data, img.Layers[1].Data
		chunkDirtree := readEntries(t, commitLayer)[index(readEntries(t, commitLayer), ".dirtree")]
		chunkCommit := readEntries(t, commitLayer)[index(readEntries(t, commitLayer), ".commit")]
		tests := []hostileCase{
			{name: "corrupt content object", edit: func(es []rawEntry) []rawEntry {
				i := contentIndex(es)
				es[i] = flip(es[i])
				return es
			}, want: ErrObjectChecksum},
			{name: "corrupt dirtree", edit: func(es []rawEntry) []rawEntry {
				i := index(es, ".dirtree")
				es[i] = flip(es[i])
				return es
			}, want: ErrObjectChecksum},
			{name: "commit not the label's", commit: other, want: ErrCommitMismatch},
			{name: "commit not first", edit: func(es []rawEntry) []rawEntry {
				i, j := index(es, ".commit"), index(es, ".dirmeta")
				es[i], es[j] = es[j], es[i]
				return es
			}, want: ErrUnexpectedObject},
			{name: "second commit", edit: func(es []rawEntry) []rawEntry {
				return append(es, es[index(es, ".commit")])
			}, want: ErrUnexpectedObject},
			{name: "commitmeta not after the commit", edit: func(es []rawEntry) []rawEntry {
				i := index(es, ".commitmeta")
				meta := es[i]
				return append(slices.Delete(es, i, i+1), meta)
			}, want: ErrUnexpectedObject},
			{name: "malformed commitmeta", edit: func(es []rawEntry) []rawEntry {
				es[index(es, ".commitmeta")].data = []byte{1}
				return es
			}, want: ErrInvalidObject},
			{name: "object missing", edit: func(es []rawEntry) []rawEntry {
				i := contentIndex(es)
				return slices.Delete(es, i-1, i+1) // the object and its xattrs
			}, want: ErrIncompleteCommit},
			{name: "content object without xattrs", edit: func(es []rawEntry) []rawEntry {
				i := contentIndex(es)
				return slices.Delete(es, i-1, i)
			}, want: ErrInvalidObject},
			{name: "xattrs of another object", edit: func(es []rawEntry) []rawEntry {
				i := contentIndex(es)
				es[i-1].hdr.Name = "sysroot/ostree/repo/objects/" + other[:2] + "/" + other[2:] + ".file-xattrs-link"
				return es
			}, want: ErrInvalidObject},
			{name: "escaping checkout path", edit: func(es []rawEntry) []rawEntry {
				return append(es, rawEntry{hdr: &tar.Header{Name: "usr/../../etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("x")})
			}, want: ErrInvalidPath},
			{name: "escaping object path", edit: func(es []rawEntry) []rawEntry {
				return append(es, rawEntry{hdr: &tar.Header{Name: "sysroot/ostree/repo/objects/../../../../etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("x")})
			}, want: ErrInvalidPath},
			{name: "malformed object path", edit: func(es []rawEntry) []rawEntry {
				return append(es, rawEntry{hdr: &tar.Header{Name: "sysroot/ostree/repo/objects/zz/0123.file", Typeflag: tar.TypeReg}})
			}, want: ErrInvalidObject},
			{name: "v0 xattrs", edit: func(es []rawEntry) []rawEntry {
				return append(es, rawEntry{hdr: &tar.Header{Name: "sysroot/ostree/repo/xattrs/" + other, Typeflag: tar.TypeReg}})
			}, want: ErrUnexpectedObject},
			{name: "unknown object type", edit: func(es []rawEntry) []rawEntry {
				return append(es, rawEntry{hdr: &tar.Header{Name: "sysroot/ostree/repo/objects/ab/" + other[2:] + ".filez", Typeflag: tar.TypeReg}})
			}, want: ErrUnexpectedObject},
			{name: "dirmeta as a symlink", edit: func(es []rawEntry) []rawEntry {
				i := index(es, ".dirmeta")
				es[i].hdr.Typeflag, es[i].hdr.Linkname, es[i].data = tar.TypeSymlink, "x", nil
				return es
			}, want: ErrInvalidObject},
			{name: "sparse content object", edit: func(es []rawEntry) []rawEntry {
				// A terabyte of holes in a few bytes of layer.
				i := contentIndex(es)
				es[i].hdr.PAXRecords = nil
				es[i].data = []byte(sparseMap(1<<40-1, 1) + "x")
				es[i].pax = [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"},
					{"GNU.sparse.name", es[i].hdr.Name}, {"GNU.sparse.realsize", "1099511627776"}}
				return es
			}, want: ErrInvalidObject},
			{name: "wrong diff_id", blob: func(b Blob) Blob { b.DiffID = "sha256:" + other; return b }, want: ErrDigestMismatch},
			{name: "truncated", truncate: true, want: ErrInvalidTar},
			{name: "dirtree in a chunk", chunk: true, edit: func(es []rawEntry) []rawEntry {
				return append(es, chunkDirtree)
			}, want: ErrUnexpectedObject},
			{name: "commit in a chunk", chunk: true, edit: func(es []rawEntry) []rawEntry {
				return append(es, chunkCommit)
			}, want: ErrUnexpectedObject},
			{name: "object twice in a chunk", chunk: true, edit: func(es []rawEntry) []rawEntry {
				i := contentIndex(es)
				return append(es, es[i-1], es[i])
			}, want: ErrInvalidObject},
			{name: "corrupt content in a chunk", chunk: true, edit: func(es []rawEntry) []rawEntry {
				i := contentIndex(es)
				es[i] = flip(es[i])
				return es
			}, want: ErrObjectChecksum},
		}
		if enc == updatecachetest.XattrsInline {
			tests = append(tests, hostileCase{name: "xattrs changed", edit: func(es []rawEntry) []rawEntry {
				i := contentIndex(es)
				es[i-1].data, _ = ostree.EncodeXattrs([]ostree.Xattr{{Name: "user.evil", Value: []byte("1")}})
				return es
			}, want: ErrObjectChecksum})
		} else {
			tests = append(tests, hostileCase{name: "corrupt xattr set", edit: func(es []rawEntry) []rawEntry {
				i := index(es, ".file-xattrs")
				es[i] = flip(es[i])
				return es
			}, want: ErrObjectChecksum})
		}

		t.Run(fmt.Sprint(enc), func(t *testing.T) {
			ctx := context.Background()
			r := newRepo(t, ostree.ModeBareUser)
			for _, l := range img.Layers[1 : 1+len(sampleChunks)] {
				if _, err := ImportObjectSetLayer(ctx, r, bytes.NewReader(l.Data), blobOf(l)); err != nil {
					t.Fatal(err)
				}
			}
			before := repoSnapshot(t, r.Path())
			for _, tc := range tests {
				layer := commitLayer
				if tc.chunk {
					layer = chunkLayer
				}
				data := layer
				if tc.edit != nil {
					data = rewriteLayer(t, layer, tc.edit)
				}
				if tc.truncate {
					data = data[:len(data)/2]
				}
				b := tarBlob(data)
				if tc.blob != nil {
					b = tc.blob(b)
				}
				var err error
				if tc.chunk {
					_, err = ImportObjectSetLayer(ctx, r, bytes.NewReader(data), b)
				} else {
					want := commit
					if tc.commit != "" {
						want = tc.commit
					}
					_, err = ImportCommitLayer(ctx, r, bytes.NewReader(data), CommitLayerOptions{Blob: b, Commit: want})
				}
				if !errors.Is(err, tc.want) {
					t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
				}
				if after := repoSnapshot(t, r.Path()); !equalSnapshots(t, before, after) {
					t.Errorf("%s changed the repository", tc.name)
				}
			}
			if _, err := ImportCommitLayer(ctx, r, bytes.NewReader(commitLayer), CommitLayerOptions{Blob: blobOf(img.Layers[0]), Commit: commit}); err != nil {
				t.Errorf("the intact commit layer after all that: %v", err)
			}
		})
	}
}

func equalSnapshots(t *testing.T, before, after map[string]string) bool {
	t.Helper()
	same := true
	for p, d := range after {
		if before[p] != d {
			t.Logf("%s: %s, before %q", p, d, before[p])
			same = false
		}
	}
	for p, d := range before {
		if _, ok := after[p]; !ok {
			t.Logf("%s gone (was %s)", p, d)
			same = false
		}
	}
	return same
}

package importer

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/testtool"
)

// Media types the tests use.
const (
	mediaTar  = "application/vnd.oci.image.layer.v1.tar"
	mediaGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	mediaZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
)

// ent is one tar entry of a test layer.
type ent struct {
	name, link string
	typ        byte // tar.Type*; 0 means a regular file
	mode       int64
	uid, gid   int
	body       string
	xattrs     map[string]string
	// paxRecords are written in this order in a PAX header of our own,
	// bypassing archive/tar, which sorts records and drops some.
	paxRecords [][2]string
	format     tar.Format
}

func reg(name string, mode int64, body string) ent { return ent{name: name, mode: mode, body: body} }
func dir(name string, mode int64) ent              { return ent{name: name, typ: tar.TypeDir, mode: mode} }
func symlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}
func hardlink(name, target string) ent { return ent{name: name, typ: tar.TypeLink, link: target} }

// makeTar serialises entries as a tar stream.
func makeTar(t testing.TB, entries []ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: time.Unix(1700000000, 0), Format: e.format}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if len(e.xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if len(e.paxRecords) > 0 {
			if err := tw.Flush(); err != nil {
				t.Fatal(err)
			}
			buf.Write(paxHeader(t, e.paxRecords))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// paxHeader returns a PAX extended header block ('x') holding the records
// in the given order: archive/tar refuses to write one itself, so it is
// written as a regular file and its type flag and checksum patched.
func paxHeader(t testing.TB, records [][2]string) []byte {
	t.Helper()
	var body strings.Builder
	for _, r := range records {
		rec := " " + r[0] + "=" + r[1] + "\n"
		n := len(rec)
		for n != len(strconv.Itoa(n))+len(rec) {
			n = len(strconv.Itoa(n)) + len(rec)
		}
		body.WriteString(strconv.Itoa(n) + rec)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "PaxHeaders/x", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(body.Len()), Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body.String()))
	tw.Flush()
	b := buf.Bytes()
	b[156] = tar.TypeXHeader
	return fixChecksum(b)
}

// fixChecksum recomputes the checksum of the tar header block starting b.
func fixChecksum(b []byte) []byte {
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// sparseMap is the data-section map of a GNU sparse 1.0 file with one
// data chunk, padded to a block.
func sparseMap(offset, length int64) string {
	m := fmt.Sprintf("1\n%d\n%d\n", offset, length)
	return m + strings.Repeat("\x00", 512-len(m))
}

// layer is a tar compressed for a media type, with its digests.
type layer struct {
	blob      []byte
	mediaType string
	digest    string
	diffID    string
}

func compressLayer(t testing.TB, tarData []byte, mediaType string) layer {
	t.Helper()
	var blob []byte
	switch mediaType {
	case mediaTar:
		blob = tarData
	case mediaGzip:
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(tarData)
		zw.Close()
		blob = buf.Bytes()
	case mediaZstd:
		zw, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		blob = zw.EncodeAll(tarData, nil)
	default:
		t.Fatalf("media type %s", mediaType)
	}
	return layer{blob: blob, mediaType: mediaType, digest: digest.FromBytes(blob).String(), diffID: digest.FromBytes(tarData).String()}
}

func (l layer) options() LayerOptions {
	return LayerOptions{Blob: Blob{MediaType: l.mediaType, Digest: l.digest, DiffID: l.diffID}}
}

// newRepo creates an empty repository of the given mode.
func newRepo(t testing.TB, mode ostree.Mode) *ostree.Repo {
	t.Helper()
	r, err := ostree.Create(filepath.Join(t.TempDir(), "repo"), mode)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// importEntries imports entries as an uncompressed layer.
func importEntries(t testing.TB, r *ostree.Repo, entries []ent) *LayerResult {
	t.Helper()
	l := compressLayer(t, makeTar(t, entries), mediaTar)
	res, err := ImportLayer(context.Background(), r, bytes.NewReader(l.blob), l.options())
	if err != nil {
		t.Fatalf("ImportLayer: %v", err)
	}
	return res
}

// ostreeTarCommit commits tarData with the real tool into a fresh
// repository of the given mode, as ostree-ext does, and returns the
// repository and commit.
func ostreeTarCommit(t *testing.T, mode ostree.Mode, tarData []byte) (*ostree.Repo, string) {
	t.Helper()
	testtool.Ostree(t)
	dir := t.TempDir()
	tarPath := filepath.Join(dir, "layer.tar")
	if err := os.WriteFile(tarPath, tarData, 0o644); err != nil {
		t.Fatal(err)
	}
	repoPath := filepath.Join(dir, "repo")
	testtool.RunOstree(t, "init", "--repo="+repoPath, "--mode="+string(mode))
	out := testtool.RunOstree(t, "commit", "--repo="+repoPath, "-b", "layer", "--tree=tar="+tarPath,
		"--tar-autocreate-parents", "--no-bindings", "--timestamp=@0", "-s", "s")
	r, err := ostree.Open(repoPath)
	if err != nil {
		t.Fatal(err)
	}
	return r, strings.TrimSpace(out)
}

// randomBytes returns n deterministic bytes that compress a little.
func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.IntN(64))
	}
	return b
}

// objectFiles lists a repository's objects/ with sizes, to compare before
// and after an operation.
func objectFiles(t testing.TB, r *ostree.Repo) map[string]int64 {
	t.Helper()
	files := map[string]int64{}
	root := filepath.Join(r.Path(), "objects")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files[strings.TrimPrefix(p, root)] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

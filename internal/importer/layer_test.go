package importer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/testtool"
)

// usrLayer is a layer with only usr/ content (so the path rules change
// nothing) exercising what a tar can say: odd modes and owners, empty and
// large files, symlinks, hard links (to a file and to a symlink), xattrs,
// GNU and PAX long names, a directory given twice and after its content,
// a file given twice, parents missing from the archive, whiteout files.
func usrLayer(t testing.TB) []ent {
	long := "usr/share/" + strings.Repeat("long-component-", 8) + "/" + strings.Repeat("n", 200)
	return []ent{
		dir("usr/", 0o755),
		dir("usr/bin/", 0o755),
		reg("usr/bin/tool", 0o755, "#!/bin/sh\necho tool\n"),
		{name: "usr/bin/setuid", mode: 0o4755, body: "s"},
		{name: "usr/bin/allbits", mode: 0o7777, uid: 3, gid: 4, body: "a"},
		{name: "usr/bin/nobits", mode: 0, body: "n"},
		dir("usr/lib/", 0o755),
		reg("usr/lib/empty", 0o644, ""),
		{name: "usr/lib/big", mode: 0o644, body: string(randomBytes(3<<20/2, 7))},
		{name: "usr/lib/owned", mode: 0o640, uid: 1000, gid: 100, body: "owned"},
		{name: "usr/lib/tmpdir/", typ: tar.TypeDir, mode: 0o1777},
		symlink("usr/lib/link", "../bin/tool"),
		{name: "usr/lib/ownedlink", typ: tar.TypeSymlink, mode: 0o777, uid: 5, link: "/absolute/elsewhere"},
		hardlink("usr/lib/hard", "usr/bin/tool"),
		hardlink("usr/lib/hardsym", "./usr/lib/link"),
		{name: "usr/lib/xattr", mode: 0o644, body: "x", xattrs: map[string]string{"user.one": "1"}},
		// Written in descending order, which libarchive reverses to the
		// ascending order both sides record.
		{name: "usr/lib/multi", mode: 0o644, body: "m", paxRecords: [][2]string{{"SCHILY.xattr.user.z", "last"}, {"SCHILY.xattr.user.m", "\x00\x01"}, {"SCHILY.xattr.user.a", "first"}}},
		reg("usr/lib/dup", 0o644, "first version"),
		reg("usr/lib/dup", 0o600, "second version"),
		{name: "usr/lib/gnu-" + strings.Repeat("g", 150), mode: 0o644, body: "gnu long name", format: tar.FormatGNU},
		{name: long, mode: 0o644, body: "pax long name", format: tar.FormatPAX},
		reg("usr/share/doc/late/file", 0o644, "before its directory"),
		{name: "usr/share/doc/late/", typ: tar.TypeDir, mode: 0o700, uid: 7, gid: 7},
		{name: "usr/share/doc/late/", typ: tar.TypeDir, mode: 0o750, uid: 8, gid: 8, xattrs: map[string]string{"user.dir": "d"}},
		reg("usr/.wh.removed", 0o644, ""),
		reg("usr/lib/.wh..wh..opq", 0o644, ""),
		// Missing parents, created for (and owned like) this entry, which
		// also resets usr and the root, as libostree does.
		{name: "usr/local/a/b/deep", mode: 0o644, uid: 33, gid: 33, body: "deep"},
		{name: "usr/lib/after-reset", mode: 0o644, body: "a"},
	}
}

// TestImportMatchesOstree imports the same tar as `ostree commit
// --tree=tar=... --tar-autocreate-parents` in every writable mode and
// requires the same root dirtree and dirmeta, so byte-identical trees and
// content checksums throughout; the result passes `ostree fsck`.
func TestImportMatchesOstree(t *testing.T) {
	testtool.Ostree(t)
	tarData := makeTar(t, usrLayer(t))
	for _, mode := range []ostree.Mode{ostree.ModeArchive, ostree.ModeBareUser, ostree.ModeBareUserOnly, ostree.ModeBare} {
		t.Run(string(mode), func(t *testing.T) {
			if mode == ostree.ModeBare && os.Geteuid() != 0 {
				t.Skip("bare repositories need root")
			}
			theirs, theirCommit := ostreeTarCommit(t, mode, tarData)
			want, err := theirs.ReadCommit(theirCommit)
			if err != nil {
				t.Fatal(err)
			}
			r := newRepo(t, mode)
			l := compressLayer(t, tarData, mediaGzip)
			res, err := ImportLayer(context.Background(), r, bytes.NewReader(l.blob), l.options())
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.ReadCommit(res.Commit)
			if err != nil {
				t.Fatal(err)
			}
			if got.RootTree != want.RootTree || got.RootMeta != want.RootMeta {
				t.Fatalf("root tree %s meta %s, ostree's %s %s\nours:\n%s\ntheirs:\n%s", got.RootTree, got.RootMeta, want.RootTree, want.RootMeta,
					testtool.RunOstree(t, "ls", "-R", "-X", "-C", "--repo="+r.Path(), res.Commit),
					testtool.RunOstree(t, "ls", "-R", "-X", "-C", "--repo="+theirs.Path(), theirCommit))
			}
			testtool.RunOstree(t, "fsck", "--repo="+r.Path())
			if sum := strings.TrimSpace(testtool.RunOstree(t, "rev-parse", "--repo="+r.Path(), res.Ref)); sum != res.Commit {
				t.Errorf("ref %s resolves to %s, want %s", res.Ref, sum, res.Commit)
			}
		})
	}
}

// TestImportUnrepresentable covers metadata some modes cannot store: a
// symlink's permission bits other than 0777 (bare and bare-user-only store
// real symlinks) and an xattr with an empty value (bare reads none back).
// libostree records them anyway, and its repository then fails fsck; ours
// records what the stored file shows and passes, and matches libostree
// where the mode stores them.
func TestImportUnrepresentable(t *testing.T) {
	testtool.Ostree(t)
	odd := []ent{
		dir("usr/", 0o755),
		{name: "usr/link0", typ: tar.TypeSymlink, mode: 0, link: "target"},
		{name: "usr/emptyxattr", mode: 0o644, body: "e", paxRecords: [][2]string{{"SCHILY.xattr.user.full", "f"}, {"SCHILY.xattr.user.empty", ""}}},
	}
	stored := []ent{
		dir("usr/", 0o755),
		{name: "usr/link0", typ: tar.TypeSymlink, mode: 0o777, link: "target"},
		{name: "usr/emptyxattr", mode: 0o644, body: "e", xattrs: map[string]string{"user.full": "f"}},
	}
	tests := []struct {
		mode ostree.Mode
		// the tar libostree must agree with
		same []ent
	}{
		{ostree.ModeArchive, odd},
		{ostree.ModeBareUser, odd},
		{ostree.ModeBareUserOnly, stored},
		{ostree.ModeBare, stored},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			if tt.mode == ostree.ModeBare && os.Geteuid() != 0 {
				t.Skip("bare repositories need root")
			}
			r := newRepo(t, tt.mode)
			res := importEntries(t, r, odd)
			testtool.RunOstree(t, "fsck", "--repo="+r.Path())
			theirs, theirCommit := ostreeTarCommit(t, tt.mode, makeTar(t, tt.same))
			want, _ := theirs.ReadCommit(theirCommit)
			got, _ := r.ReadCommit(res.Commit)
			if want == nil || got == nil || got.RootTree != want.RootTree {
				t.Errorf("tree differs from libostree's\nours:\n%s\ntheirs:\n%s",
					testtool.RunOstree(t, "ls", "-R", "-X", "--repo="+r.Path(), res.Commit),
					testtool.RunOstree(t, "ls", "-R", "-X", "--repo="+theirs.Path(), theirCommit))
			}
		})
	}
}

// TestImportCompressions imports the same layer from each supported
// compression to the same commit, and checks the blob ref and sizes.
func TestImportCompressions(t *testing.T) {
	tarData := makeTar(t, []ent{dir("usr/", 0o755), reg("usr/f", 0o644, "content")})
	var commits []string
	for _, mt := range []string{mediaTar, mediaGzip, mediaZstd} {
		t.Run(mt, func(t *testing.T) {
			r := newRepo(t, ostree.ModeArchive)
			l := compressLayer(t, tarData, mt)
			res, err := ImportLayer(context.Background(), r, bytes.NewReader(l.blob), l.options())
			if err != nil {
				t.Fatal(err)
			}
			wantRef, _ := ostree.BlobRefName(l.digest)
			if res.Ref != wantRef || res.Size != int64(len(l.blob)) || res.TarSize != int64(len(tarData)) {
				t.Errorf("result ref %s size %d tar %d, want %s %d %d", res.Ref, res.Size, res.TarSize, wantRef, len(l.blob), len(tarData))
			}
			if got, err := r.ResolveRef(wantRef); err != nil || got != res.Commit {
				t.Errorf("ref resolves to %s, %v", got, err)
			}
			commits = append(commits, res.Commit)
		})
	}
	if len(commits) == 3 && (commits[0] != commits[1] || commits[1] != commits[2]) {
		t.Errorf("commits differ by compression: %v", commits)
	}
}

// TestImportTwice imports a layer twice: the second writes no object and
// yields the same commit.
func TestImportTwice(t *testing.T) {
	r := newRepo(t, ostree.ModeBareUser)
	entries := usrLayer(t)
	first := importEntries(t, r, entries)
	before := objectFiles(t, r)
	second := importEntries(t, r, entries)
	if second.Commit != first.Commit {
		t.Errorf("second import made commit %s, first %s", second.Commit, first.Commit)
	}
	if second.Objects.ContentWritten != 0 || second.Objects.MetadataWritten != 0 {
		t.Errorf("second import wrote objects: %+v", second.Objects)
	}
	if first.Objects.ContentWritten == 0 || second.Objects.ContentPresent != first.Objects.ContentWritten+first.Objects.ContentPresent {
		t.Errorf("first import %+v, second %+v", first.Objects, second.Objects)
	}
	if after := objectFiles(t, r); !maps.Equal(before, after) {
		t.Errorf("objects changed: %d before, %d after", len(before), len(after))
	}
}

// TestImportFilter checks the path rules end to end: what is kept where,
// what is dropped, and the counts in the result and the commit metadata.
func TestImportFilter(t *testing.T) {
	entries := []ent{
		dir("./", 0o755),
		dir("etc/", 0o755),
		reg("etc/os-release", 0o644, "ID=test\n"),
		hardlink("etc/os-release.link", "/etc/os-release"),
		dir("var/", 0o755),
		reg("var/lib/state", 0o644, "s"),
		{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		reg("tmp/junk", 0o644, "j"),
		reg("run/x", 0o644, "r"),
		dir("boot/", 0o755),
		reg("boot/vmlinuz", 0o644, "k"),
		reg("opt/app", 0o644, "o"),
		symlink("bin", "usr/bin"),
		{name: "usr/dev/null", typ: tar.TypeChar, mode: 0o666},
		{name: "usr/fifo", typ: tar.TypeFifo, mode: 0o644},
		{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660},
		reg("usr/bin/sh", 0o755, "sh"),
	}
	tests := []struct {
		name         string
		opts         func(*LayerOptions)
		wantPaths    []string
		wantFiltered map[string]uint32
	}{
		{
			name:         "defaults",
			wantPaths:    []string{"/usr/etc/os-release", "/usr/etc/os-release.link", "/usr/share/factory/var/lib/state", "/tmp", "/usr/bin/sh"},
			wantFiltered: map[string]uint32{"tmp": 1, "run": 1, "boot": 2, "opt": 1, "bin": 1, "dev": 1},
		},
		{
			name:         "keep var and non-usr",
			opts:         func(o *LayerOptions) { o.KeepVar, o.AllowNonUsr = true, true },
			wantPaths:    []string{"/usr/etc/os-release", "/var/lib/state", "/boot/vmlinuz", "/opt/app", "/bin", "/tmp"},
			wantFiltered: map[string]uint32{"tmp": 1, "run": 1, "dev": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepo(t, ostree.ModeArchive)
			l := compressLayer(t, makeTar(t, entries), mediaTar)
			opts := l.options()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			res, err := ImportLayer(context.Background(), r, bytes.NewReader(l.blob), opts)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(res.Filtered, tt.wantFiltered) || res.Special != 2 {
				t.Errorf("filtered %v special %d, want %v 2", res.Filtered, res.Special, tt.wantFiltered)
			}
			c, err := r.ReadCommit(res.Commit)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := c.Metadata.Lookup(FilteredKey)
			got := map[string]uint32{}
			for _, e := range v.Value.([]gvariant.DictEntry) {
				got[e.Key.(string)] = e.Value.(uint32)
			}
			if !ok || v.Type != "a{su}" || !maps.Equal(got, tt.wantFiltered) {
				t.Errorf("commit metadata %s = %v (%s), want %v", FilteredKey, got, v.Type, tt.wantFiltered)
			}
			if v, ok := c.Metadata.Lookup(SpecialKey); !ok || v.Value != uint32(2) {
				t.Errorf("commit metadata %s = %v", SpecialKey, v)
			}
			listing := testtool.RunOstree(t, "ls", "-R", "--repo="+r.Path(), res.Commit)
			for _, p := range tt.wantPaths {
				if !strings.Contains(listing, " "+p+"\n") && !strings.Contains(listing, " "+p+" ->") {
					t.Errorf("%s missing from\n%s", p, listing)
				}
			}
			for _, p := range []string{"/etc", "/run", "/tmp/junk", "/usr/dev", "/usr/fifo"} {
				if strings.Contains(listing, " "+p+"\n") {
					t.Errorf("%s present in\n%s", p, listing)
				}
			}
		})
	}
}

// TestImportHostile feeds layers that must be refused. Each case gives a
// clear error matching its sentinel, sets no ref, writes nothing outside
// objects/ and tmp/ and leaves no staging directory.
func TestImportHostile(t *testing.T) {
	ok := []ent{dir("usr/", 0o755), reg("usr/f", 0o644, "f")}
	tests := []struct {
		name    string
		entries []ent
		raw     func(t *testing.T) []byte // a tar made by hand, instead of entries
		opts    func(*LayerOptions)
		want    error
	}{
		{name: "dotdot", entries: []ent{reg("usr/../../etc/shadow", 0o644, "x")}, want: ErrInvalidPath},
		{name: "dotdot at the start", entries: []ent{reg("../escape", 0o644, "x")}, want: ErrInvalidPath},
		{name: "invalid UTF-8", entries: []ent{reg("usr/\xff\xfe", 0o644, "x")}, want: ErrInvalidPath},
		{name: "component too long", entries: []ent{reg("usr/"+strings.Repeat("x", 256), 0o644, "x")}, want: ErrInvalidPath},
		{name: "through a symlink", entries: []ent{symlink("usr/a", "/etc"), reg("usr/a/x", 0o644, "x")}, want: ErrNotDirectory},
		{name: "through a file", entries: []ent{reg("usr/a", 0o644, "x"), reg("usr/a/x", 0o644, "x")}, want: ErrNotDirectory},
		{name: "directory over a file", entries: []ent{reg("usr/a", 0o644, "x"), dir("usr/a/", 0o755)}, want: ErrTypeConflict},
		{name: "file over a directory", entries: []ent{dir("usr/a/", 0o755), reg("usr/a", 0o644, "x")}, want: ErrTypeConflict},
		{name: "symlink over a directory", entries: []ent{dir("usr/a/", 0o755), symlink("usr/a", "/")}, want: ErrTypeConflict},
		{name: "root as a file", entries: []ent{reg(".", 0o644, "")}, want: ErrInvalidEntry},
		{name: "hardlink to missing", entries: []ent{hardlink("usr/h", "usr/missing")}, want: ErrHardlink},
		{name: "hardlink to later entry", entries: []ent{hardlink("usr/h", "usr/f"), reg("usr/f", 0o644, "f")}, want: ErrHardlink},
		{name: "hardlink escaping", entries: []ent{reg("usr/f", 0o644, "f"), hardlink("usr/h", "../usr/f")}, want: ErrHardlink},
		{name: "hardlink to a directory", entries: []ent{dir("usr/d/", 0o755), hardlink("usr/h", "usr/d")}, want: ErrHardlink},
		{name: "hardlink to the root", entries: []ent{hardlink("usr/h", "/")}, want: ErrHardlink},
		{name: "hardlink to a filtered path", entries: []ent{reg("opt/f", 0o644, "f"), hardlink("usr/h", "opt/f")}, want: ErrHardlink},
		{name: "hardlink through a file", entries: []ent{reg("usr/f", 0o644, "f"), hardlink("usr/h", "usr/f/x")}, want: ErrHardlink},
		{name: "empty symlink target", entries: []ent{{name: "usr/l", typ: tar.TypeSymlink}}, want: ErrInvalidEntry},
		{name: "symlink target too long", entries: []ent{symlink("usr/l", strings.Repeat("t", 4096))}, want: ErrInvalidEntry},
		{name: "owner beyond 32 bits", entries: []ent{{name: "usr/f", mode: 0o644, uid: 1 << 33, format: tar.FormatPAX}}, want: ErrInvalidEntry},
		{name: "uid 4294967295", entries: []ent{{name: "usr/f", mode: 0o644, uid: math.MaxUint32, format: tar.FormatPAX}}, want: ErrInvalidEntry},
		{name: "gid 4294967295 on a symlink", entries: []ent{{name: "usr/l", typ: tar.TypeSymlink, link: "f", gid: math.MaxUint32, format: tar.FormatPAX}}, want: ErrInvalidEntry},
		{name: "gid 4294967295 on a directory", entries: []ent{{name: "usr/d/", typ: tar.TypeDir, mode: 0o755, gid: math.MaxUint32, format: tar.FormatPAX}}, want: ErrInvalidEntry},
		{name: "empty xattr name", entries: []ent{{name: "usr/f", mode: 0o644, xattrs: map[string]string{"": "v"}}}, want: ErrInvalidEntry},
		{name: "unknown entry type", entries: []ent{{name: "usr/v", typ: 'V'}}, want: ErrInvalidEntry},
		{name: "sparse file", entries: []ent{{name: "usr/sparse", mode: 0o644, body: sparseMap(1<<40-1, 1) + "x", paxRecords: [][2]string{
			{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", "usr/sparse"}, {"GNU.sparse.realsize", "1099511627776"}}}}, want: ErrInvalidEntry},
		{name: "old GNU sparse file", raw: func(t *testing.T) []byte {
			data := makeTar(t, []ent{{name: "usr/sparse", mode: 0o644, body: "x", format: tar.FormatGNU}})
			data[156] = tar.TypeGNUSparse
			return fixChecksum(data)
		}, want: ErrInvalidEntry},
		{name: "truncated in a file", raw: func(t *testing.T) []byte {
			data := makeTar(t, []ent{reg("usr/big", 0o644, strings.Repeat("x", 10000))})
			return data[:512+5000]
		}, want: ErrInvalidTar},
		{name: "huge claimed size", raw: func(t *testing.T) []byte {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: "usr/huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40})
			tw.Write([]byte("only this"))
			return buf.Bytes()
		}, want: ErrInvalidTar},
		{name: "garbage", raw: func(t *testing.T) []byte { return bytes.Repeat([]byte("not a tar "), 100) }, want: ErrInvalidTar},
		{name: "wrong diff_id", entries: ok, opts: func(o *LayerOptions) { o.DiffID = "sha256:" + strings.Repeat("0", 64) }, want: ErrDigestMismatch},
		{name: "malformed digest", entries: ok, opts: func(o *LayerOptions) { o.Digest = "sha256:xyz" }, want: ErrInvalidOptions},
		{name: "missing diff_id", entries: ok, opts: func(o *LayerOptions) { o.DiffID = "" }, want: ErrInvalidOptions},
		{name: "unknown media type", entries: ok, opts: func(o *LayerOptions) { o.MediaType = "application/vnd.oci.image.layer.v1.tar+lz4" }, want: ErrUnsupportedMediaType},
		{name: "gzip media type, plain tar", entries: ok, opts: func(o *LayerOptions) { o.MediaType = mediaGzip }, want: ErrInvalidTar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRepo(t, ostree.ModeBareUser)
			var data []byte
			if tt.raw != nil {
				data = tt.raw(t)
			} else {
				data = makeTar(t, tt.entries)
			}
			l := compressLayer(t, data, mediaTar)
			opts := l.options()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			before := topLevel(t, r)
			res, err := ImportLayer(context.Background(), r, bytes.NewReader(l.blob), opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ImportLayer = %+v, %v; want an error matching %v", res, err, tt.want)
			}
			t.Logf("error: %v", err)
			if refs, err := r.ListRefs(""); err != nil || len(refs) > 0 {
				t.Errorf("refs after a failed import: %v, %v", refs, err)
			}
			if after := topLevel(t, r); !maps.Equal(before, after) {
				t.Errorf("repository top level changed from %v to %v", before, after)
			}
			if left, _ := filepath.Glob(filepath.Join(r.Path(), "tmp", "staging-*")); len(left) > 0 {
				t.Errorf("staging left behind: %v", left)
			}
		})
	}
}

// topLevel lists the repository's entries, recursing into all but objects/
// and tmp/, the only places an import may leave anything.
func topLevel(t *testing.T, r *ostree.Repo) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(r.Path(), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.Path(), p)
		if rel == "objects" || rel == "tmp" {
			return filepath.SkipDir
		}
		// The lock file appears with the first lock, whoever takes it.
		if rel != ".lock" {
			seen[rel] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

// TestImportContext: a cancelled context stops the import with its error
// and no ref.
func TestImportContext(t *testing.T) {
	r := newRepo(t, ostree.ModeArchive)
	l := compressLayer(t, makeTar(t, usrLayer(t)), mediaTar)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ImportLayer(ctx, r, bytes.NewReader(l.blob), l.options()); !errors.Is(err, context.Canceled) {
		t.Fatalf("ImportLayer with a cancelled context: %v", err)
	}
	if refs, _ := r.ListRefs(""); len(refs) > 0 {
		t.Errorf("refs: %v", refs)
	}
}

// TestImportStreams checks the blob is read in one pass through a reader
// that returns tiny chunks, and that an error from the reader surfaces.
func TestImportStreams(t *testing.T) {
	l := compressLayer(t, makeTar(t, usrLayer(t)), mediaZstd)
	r := newRepo(t, ostree.ModeArchive)
	if _, err := ImportLayer(context.Background(), r, io.LimitReader(&trickleReader{data: l.blob}, int64(len(l.blob))), l.options()); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("network went away")
	failing := io.MultiReader(bytes.NewReader(l.blob[:len(l.blob)/2]), &errReader{boom})
	_, err := ImportLayer(context.Background(), newRepo(t, ostree.ModeArchive), failing, l.options())
	if !errors.Is(err, boom) {
		t.Fatalf("ImportLayer over a failing reader: %v", err)
	}
}

type trickleReader struct{ data []byte }

func (r *trickleReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 7)], r.data)
	r.data = r.data[n:]
	return n, nil
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

// TestImportTimestamp: the commit takes the given timestamp, else the
// epoch.
func TestImportTimestamp(t *testing.T) {
	r := newRepo(t, ostree.ModeArchive)
	l := compressLayer(t, makeTar(t, []ent{reg("usr/f", 0o644, "f")}), mediaTar)
	opts := l.options()
	opts.Timestamp = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	res, err := ImportLayer(context.Background(), r, bytes.NewReader(l.blob), opts)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := r.ReadCommit(res.Commit); err != nil || !c.Timestamp.Equal(opts.Timestamp) {
		t.Errorf("commit timestamp %v, %v", c.Timestamp, err)
	}
	res = importEntries(t, r, []ent{reg("usr/f", 0o644, "f")})
	if c, err := r.ReadCommit(res.Commit); err != nil || c.Timestamp.Unix() != 0 {
		t.Errorf("default commit timestamp %v, %v", c.Timestamp, err)
	}
}

// TestImportConcurrent imports layers sharing most of their files at the
// same time into one repository, as a pull does: each import succeeds,
// the shared objects are stored once, and the repository passes fsck.
func TestImportConcurrent(t *testing.T) {
	testtool.Ostree(t)
	r := newRepo(t, ostree.ModeBareUser)
	const n = 4
	layers := make([]layer, n)
	for i := range layers {
		entries := usrLayer(t)
		entries = append(entries, reg(fmt.Sprintf("usr/lib/own%d", i), 0o644, fmt.Sprint("layer ", i)))
		layers[i] = compressLayer(t, makeTar(t, entries), mediaGzip)
	}
	errs := make(chan error, n)
	for _, l := range layers {
		go func() {
			_, err := ImportLayer(context.Background(), r, bytes.NewReader(l.blob), l.options())
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	refs, err := r.ListRefs("")
	if err != nil || len(refs) != n {
		t.Fatalf("refs %v, %v", refs, err)
	}
	testtool.RunOstree(t, "fsck", "--repo="+r.Path())
}

// TestImportCompressionBombs: a small compressed layer that expands past
// LayerOptions.MaxSize fails with ErrLayerTooLarge while streaming (at most
// MaxSize+1 uncompressed bytes are read), and leaves the repository as it
// was.
func TestImportCompressionBombs(t *testing.T) {
	const expanded, limit = 256 << 20, 16 << 20
	data := makeTar(t, []ent{reg("usr/zeros", 0o644, string(make([]byte, expanded)))})
	for _, media := range []string{mediaGzip, mediaZstd} {
		t.Run(media, func(t *testing.T) {
			r := newRepo(t, ostree.ModeBareUser)
			l := compressLayer(t, data, media)
			opts := l.options()
			opts.MaxSize = limit
			before := topLevel(t, r)
			objectsBefore := dirSize(t, filepath.Join(r.Path(), "objects"))
			in := &countingReader{r: bytes.NewReader(l.blob), limit: math.MaxInt64}
			_, err := ImportLayer(context.Background(), r, in, opts)
			if !errors.Is(err, ErrLayerTooLarge) || !errors.Is(err, ErrInvalidLayer) {
				t.Fatalf("ImportLayer = %v, want ErrLayerTooLarge", err)
			}
			t.Logf("%d-byte blob expanding to %d bytes: stopped after reading %d compressed bytes: %v", len(l.blob), expanded, in.n, err)
			if after := topLevel(t, r); !maps.Equal(before, after) {
				t.Errorf("repository top level changed from %v to %v", before, after)
			}
			if after := dirSize(t, filepath.Join(r.Path(), "objects")); after != objectsBefore {
				t.Errorf("objects grew from %d to %d bytes", objectsBefore, after)
			}
		})
	}
}

// dirSize is the total size of the files below dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		n += info.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestImportTooManyEntries: a directory with more than MaxDirEntries
// entries is refused as the entries arrive (the tree built so far stays
// small) and nothing is written.
func TestImportTooManyEntries(t *testing.T) {
	r := newRepo(t, ostree.ModeBareUser)
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		for i := range MaxDirEntries + 10 {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("usr/many/f%07d", i), Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	before := topLevel(t, r)
	d := "sha256:" + strings.Repeat("0", 64) // never reached: the import stops first
	_, err := ImportLayer(context.Background(), r, pr, LayerOptions{Blob: Blob{MediaType: mediaTar, Digest: d, DiffID: d}})
	pr.CloseWithError(io.ErrClosedPipe)
	if !errors.Is(err, ErrTooManyEntries) || !errors.Is(err, ErrInvalidLayer) {
		t.Fatalf("ImportLayer = %v, want ErrTooManyEntries", err)
	}
	if after := topLevel(t, r); !maps.Equal(before, after) {
		t.Errorf("repository top level changed from %v to %v", before, after)
	}
	if refs, err := r.ListRefs(""); err != nil || len(refs) > 0 {
		t.Errorf("refs after a refused import: %v, %v", refs, err)
	}
}

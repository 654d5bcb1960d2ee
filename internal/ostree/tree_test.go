package ostree

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/testtool"
)

func TestTreeEncodingVectors(t *testing.T) {
	empty, err := EncodeDirTree(nil, nil)
	if err != nil || !bytes.Equal(empty, []byte{0}) {
		t.Errorf("empty dirtree = %x, %v; want 00", empty, err)
	}
	root, err := EncodeDirMeta(0, 0, 0o40755, nil)
	if want := "0000000000000000000041ed"; err != nil || hex.EncodeToString(root) != want {
		t.Errorf("root dirmeta = %x, %v; want %s", root, err, want)
	}
	// Xattrs keep their order, names carry their NUL, values are as given.
	dm, err := EncodeDirMeta(0, 0, 0o40755, []Xattr{{"user.a", []byte("v1")}, {"user.b", []byte("v2")}})
	if want := "0000000000000000000041ed757365722e610076310775736572" + "2e6200763207" + "0a14"; err != nil || hex.EncodeToString(dm) != want {
		t.Errorf("dirmeta with xattrs = %x, %v; want %s", dm, err, want)
	}
	dm, err = EncodeDirMeta(0, 0, 0o40755, []Xattr{{"user.b", []byte("v2")}, {"user.a", []byte("v1")}})
	if want := "0000000000000000000041ed757365722e620076320775736572" + "2e6100763107" + "0a14"; err != nil || hex.EncodeToString(dm) != want {
		t.Errorf("dirmeta with xattrs unsorted = %x, %v; want %s", dm, err, want)
	}
}

func TestTreeObjectsMadeByOstree(t *testing.T) {
	r := ostreeRepo(t)
	src := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/lib/x", "etc", "empty"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"usr/bin/a", "usr/bin/B", "usr/bin/_", "usr/lib/x/é", "etc/z", "top"} {
		if err := os.WriteFile(filepath.Join(src, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../lib", filepath.Join(src, "usr/bin/lib")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	// xattrs in an archive repo end up in dirmeta (and content headers).
	xattrsOK := setXattr(filepath.Join(src, "usr/lib"), "user.b", "2") == nil && setXattr(filepath.Join(src, "usr/lib"), "user.a", "1") == nil
	ostreeCommitDir(t, r, src, "-b", "t")

	var trees, metas int
	sawXattrs := false
	for _, ext := range []ObjectType{ObjectDirTree, ObjectDirMeta} {
		paths, _ := filepath.Glob(filepath.Join(r.Path(), "objects", "*", "*."+string(ext)))
		for _, p := range paths {
			sum := filepath.Base(filepath.Dir(p)) + strings.TrimSuffix(filepath.Base(p), "."+string(ext))
			raw, err := r.ReadMetadataObject(sum, ext)
			if err != nil {
				t.Fatal(err)
			}
			var again []byte
			if ext == ObjectDirTree {
				trees++
				files, dirs, err := DecodeDirTree(raw)
				if err != nil {
					t.Fatalf("DecodeDirTree(%s): %v", sum, err)
				}
				again, err = EncodeDirTree(files, dirs)
				if err != nil {
					t.Fatal(err)
				}
			} else {
				metas++
				uid, gid, mode, xattrs, err := DecodeDirMeta(raw)
				if err != nil {
					t.Fatalf("DecodeDirMeta(%s): %v", sum, err)
				}
				if len(xattrs) == 2 && xattrs[0].Name == "user.a" && string(xattrs[1].Value) == "2" {
					sawXattrs = true
				}
				again, err = EncodeDirMeta(uid, gid, mode, xattrs)
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(again, raw) {
				t.Errorf("%s %s re-encodes differently:\n ostree %x\n ours   %x", ext, sum, raw, again)
			}
		}
	}
	// Directories with different contents (7) and metadata (0755, 0700,
	// and with xattrs, 0755 with xattrs).
	if trees < 6 || metas < 2 {
		t.Errorf("checked %d dirtrees and %d dirmetas; the tree should give more", trees, metas)
	}
	if xattrsOK && !sawXattrs {
		t.Error("no dirmeta with the xattrs set on usr/lib")
	}
}

func setXattr(path, name, value string) error { return unixSetxattr(path, name, []byte(value)) }

func TestEncodeTreeErrors(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	treeCases := []struct {
		name  string
		files []DirTreeFile
		dirs  []DirTreeDir
		want  error
	}{
		{"empty name", []DirTreeFile{{"", sum}}, nil, ErrInvalidFilename},
		{"dot", []DirTreeFile{{".", sum}}, nil, ErrInvalidFilename},
		{"dotdot dir", nil, []DirTreeDir{{"..", sum, sum}}, ErrInvalidFilename},
		{"slash", []DirTreeFile{{"a/b", sum}}, nil, ErrInvalidFilename},
		{"NUL", []DirTreeFile{{"a\x00", sum}}, nil, ErrInvalidFilename},
		{"duplicate file", []DirTreeFile{{"a", sum}, {"a", sum}}, nil, ErrInvalidFilename},
		{"file and dir", []DirTreeFile{{"a", sum}}, []DirTreeDir{{"a", sum, sum}}, ErrInvalidFilename},
		{"bad file checksum", []DirTreeFile{{"a", "x"}}, nil, ErrInvalidChecksum},
		{"bad tree checksum", nil, []DirTreeDir{{"a", sum[:10], sum}}, ErrInvalidChecksum},
		{"bad meta checksum", nil, []DirTreeDir{{"a", sum, ""}}, ErrInvalidChecksum},
	}
	for _, tc := range treeCases {
		if _, err := EncodeDirTree(tc.files, tc.dirs); !errors.Is(err, tc.want) {
			t.Errorf("EncodeDirTree %s: %v; want %v", tc.name, err, tc.want)
		}
	}
	metaCases := []struct {
		name   string
		mode   uint32
		xattrs []Xattr
	}{
		{"regular file mode", 0o100644, nil},
		{"no type", 0o755, nil},
		{"stray bits", 0o40755 | 0o1000000, nil},
		{"empty xattr name", 0o40755, []Xattr{{"", nil}}},
		{"NUL in xattr name", 0o40755, []Xattr{{"a\x00b", nil}}},
		{"duplicate xattr", 0o40755, []Xattr{{"user.a", nil}, {"user.a", []byte("x")}}},
	}
	for _, tc := range metaCases {
		if _, err := EncodeDirMeta(0, 0, tc.mode, tc.xattrs); err == nil {
			t.Errorf("EncodeDirMeta %s succeeded", tc.name)
		}
	}
}

func TestDecodeTreeMalformed(t *testing.T) {
	sum := bytes.Repeat([]byte{0xab}, 32)
	mk := func(typ string, v any) []byte {
		data, err := gvariant.Marshal(typ, v)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	trees := map[string][]byte{
		"not gvariant":        {1, 2, 3},
		"unsorted files":      mk(dirTreeType, []any{[]any{[]any{"b", sum}, []any{"a", sum}}, []any{}}),
		"unsorted dirs":       mk(dirTreeType, []any{[]any{}, []any{[]any{"b", sum, sum}, []any{"a", sum, sum}}}),
		"duplicate":           mk(dirTreeType, []any{[]any{[]any{"a", sum}, []any{"a", sum}}, []any{}}),
		"file and dir":        mk(dirTreeType, []any{[]any{[]any{"a", sum}}, []any{[]any{"a", sum, sum}}}),
		"dotdot":              mk(dirTreeType, []any{[]any{}, []any{[]any{"..", sum, sum}}}),
		"slash":               mk(dirTreeType, []any{[]any{[]any{"a/b", sum}}, []any{}}),
		"short file checksum": mk(dirTreeType, []any{[]any{[]any{"a", sum[:31]}}, []any{}}),
		"short meta checksum": mk(dirTreeType, []any{[]any{}, []any{[]any{"a", sum, sum[:1]}}}),
	}
	for name, data := range trees {
		if _, _, err := DecodeDirTree(data); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeDirTree %s: %v; want ErrCorrupt", name, err)
		}
	}
	metas := map[string][]byte{
		"short":             {0, 0, 0},
		"file mode":         mk(dirMetaType, []any{uint32(0), uint32(0), be32(0o100644), []any{}}),
		"xattr without NUL": mk(dirMetaType, []any{uint32(0), uint32(0), be32(0o40755), []any{[]any{[]byte("user.a"), []byte{}}}}),
		"empty xattr name":  mk(dirMetaType, []any{uint32(0), uint32(0), be32(0o40755), []any{[]any{[]byte{0}, []byte{}}}}),
		"repeated xattr":    mk(dirMetaType, []any{uint32(0), uint32(0), be32(0o40755), []any{[]any{[]byte("a\x00"), []byte{}}, []any{[]byte("a\x00"), []byte{}}}}),
	}
	for name, data := range metas {
		if _, _, _, _, err := DecodeDirMeta(data); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeDirMeta %s: %v; want ErrCorrupt", name, err)
		}
	}
}

func TestMetadataObjects(t *testing.T) {
	ctx := context.Background()
	r, err := Create(filepath.Join(t.TempDir(), "repo"), ModeArchive)
	if err != nil {
		t.Fatal(err)
	}
	dm, _ := EncodeDirMeta(0, 0, 0o40755, nil)
	sum, err := r.WriteMetadataObject(ctx, ObjectDirMeta, dm)
	if err != nil || sum != sha256Hex(dm) {
		t.Fatalf("WriteMetadataObject = %s, %v", sum, err)
	}
	p := r.ObjectPath(sum, ObjectDirMeta)
	if want := filepath.Join(r.Path(), "objects", sum[:2], sum[2:]+".dirmeta"); p != want {
		t.Errorf("ObjectPath = %s; want %s", p, want)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("object file: %v, %v", st, err)
	}
	// An existing object is not rewritten.
	old := time.Unix(1000000000, 0)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if again, err := r.WriteMetadataObject(ctx, ObjectDirMeta, dm); err != nil || again != sum {
		t.Fatalf("second write = %s, %v", again, err)
	}
	if st, _ := os.Stat(p); !st.ModTime().Equal(old) {
		t.Error("existing object was rewritten")
	}
	if ok, err := r.HasObject(sum, ObjectDirMeta); !ok || err != nil {
		t.Errorf("HasObject = %v, %v", ok, err)
	}
	if ok, err := r.HasObject(sum, ObjectDirTree); ok || err != nil {
		t.Errorf("HasObject of the wrong type = %v, %v", ok, err)
	}
	if data, err := r.ReadMetadataObject(sum, ObjectDirMeta); err != nil || !bytes.Equal(data, dm) {
		t.Errorf("ReadMetadataObject = %x, %v", data, err)
	}
	assertNoTempFiles(t, r.Path())

	// Refused input, nothing written.
	unsorted, _ := gvariant.Marshal(dirTreeType, []any{[]any{[]any{"b", make([]byte, 32)}, []any{"a", make([]byte, 32)}}, []any{}})
	for _, tc := range []struct {
		name string
		t    ObjectType
		data []byte
		want error
	}{
		{"unsorted dirtree", ObjectDirTree, unsorted, ErrCorrupt},
		{"dirmeta as dirtree", ObjectDirTree, dm, ErrCorrupt},
		{"garbage commit", ObjectCommit, []byte("garbage"), ErrCorrupt},
		{"content type", ObjectFileZ, dm, ErrInvalidObjectType},
		{"commitmeta type", ObjectCommitMeta, nil, ErrInvalidObjectType},
		{"unknown type", "blob", dm, ErrInvalidObjectType},
	} {
		if _, err := r.WriteMetadataObject(ctx, tc.t, tc.data); !errors.Is(err, tc.want) {
			t.Errorf("WriteMetadataObject %s: %v; want %v", tc.name, err, tc.want)
		}
		if ok, _ := r.HasObject(sha256Hex(tc.data), ObjectDirTree); ok {
			t.Errorf("%s was written", tc.name)
		}
	}

	if _, err := r.ReadMetadataObject(strings.Repeat("0", 64), ObjectDirTree); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("ReadMetadataObject of a missing object: %v; want ErrObjectNotFound", err)
	}
	for _, bad := range []string{"", "xyz", strings.Repeat("A", 64), strings.Repeat("0", 63)} {
		if _, err := r.ReadMetadataObject(bad, ObjectDirTree); !errors.Is(err, ErrInvalidChecksum) {
			t.Errorf("ReadMetadataObject(%q): %v; want ErrInvalidChecksum", bad, err)
		}
		if _, err := r.HasObject(bad, ObjectDirTree); !errors.Is(err, ErrInvalidChecksum) {
			t.Errorf("HasObject(%q): %v; want ErrInvalidChecksum", bad, err)
		}
		if p := r.ObjectPath(bad, ObjectDirTree); p != "" {
			t.Errorf("ObjectPath(%q) = %q; want \"\"", bad, p)
		}
	}
	if _, err := r.ReadMetadataObject(sum, ObjectFileZ); !errors.Is(err, ErrInvalidObjectType) {
		t.Errorf("ReadMetadataObject of a content type: %v; want ErrInvalidObjectType", err)
	}
	if _, err := r.HasObject(sum, "blob"); !errors.Is(err, ErrInvalidObjectType) {
		t.Errorf("HasObject of an unknown type: %v; want ErrInvalidObjectType", err)
	}

	// Bit flip on disk.
	flipped := bytes.Clone(dm)
	flipped[len(flipped)-1] ^= 1
	if err := os.WriteFile(p, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadMetadataObject(sum, ObjectDirMeta); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadMetadataObject after a bit flip: %v; want ErrCorrupt", err)
	}
}

func TestWrittenTreeChecksOutWithOstree(t *testing.T) {
	testtool.Ostree(t)
	ctx := context.Background()
	r := ostreeRepo(t)
	// A tree of our own around a subtree ostree made: nested dirs, xattrs
	// in the order given (GLib prints a name as b'…' only because it ends
	// in its NUL).
	base := ostreeCommit(t, r, map[string]string{"bin/sh": "sh"}, "-b", "base")
	baseTree, baseMeta := rootChecksums(t, r, base)
	emptyTree, _ := writeEmptyTree(t, r)
	dm, err := EncodeDirMeta(0, 0, 0o40750, []Xattr{{"user.z", []byte("1")}, {"user.a", nil}})
	if err != nil {
		t.Fatal(err)
	}
	meta, err := r.WriteMetadataObject(ctx, ObjectDirMeta, dm)
	if err != nil {
		t.Fatal(err)
	}
	dt, err := EncodeDirTree(nil, []DirTreeDir{{"usr", baseTree, baseMeta}, {"empty", emptyTree, meta}})
	if err != nil {
		t.Fatal(err)
	}
	root, err := r.WriteMetadataObject(ctx, ObjectDirTree, dt)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := r.WriteCommit(ctx, &Commit{Subject: "tree", Timestamp: time.Unix(1, 0), RootTree: root, RootMeta: baseMeta})
	if err != nil {
		t.Fatal(err)
	}
	testtool.RunOstree(t, "fsck", "--repo="+r.Path())
	ls := testtool.RunOstree(t, "ls", "--repo="+r.Path(), "-R", "-X", sum)
	for _, want := range []string{"d00750 0 0      0 { [(b'user.z', [byte 0x31]), (b'user.a', [])] } /empty", "/usr/bin/sh"} {
		if !strings.Contains(ls, want) {
			t.Errorf("ostree ls lacks %q:\n%s", want, ls)
		}
	}
}

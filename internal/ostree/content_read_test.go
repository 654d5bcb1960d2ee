package ostree

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/testtool"
)

// lsEntry is a file line of `ostree ls -R -C`.
type lsEntry struct {
	mode     string // e.g. "-00644", "l00777"
	uid, gid uint32
	size     int64
	checksum string
	path     string
	target   string
}

// lsFiles lists the regular files and symlinks of a commit with the real
// tool.
func lsFiles(t *testing.T, repo, rev string) []lsEntry {
	t.Helper()
	var entries []lsEntry
	for line := range strings.SplitSeq(strings.TrimSpace(testtool.RunOstree(t, "ls", "--repo="+repo, "-R", "-C", rev)), "\n") {
		if strings.HasPrefix(line, "d") {
			continue
		}
		var e lsEntry
		if _, err := fmt.Sscanf(line, "%s %d %d %d %s %s", &e.mode, &e.uid, &e.gid, &e.size, &e.checksum, &e.path); err != nil {
			t.Fatalf("ostree ls line %q: %v", line, err)
		}
		if _, target, ok := strings.Cut(line, " -> "); ok {
			e.target = target
		}
		entries = append(entries, e)
	}
	return entries
}

// TestOpenContentMatchesOstree commits the content fixture with the real
// tool in each mode and reads every content object back: the metadata
// must be what `ostree ls` shows, the bytes those of the fixture, and
// reading to the end must verify the checksum.
func TestOpenContentMatchesOstree(t *testing.T) {
	testtool.Ostree(t)
	fixture := contentFixture(t)
	for _, mode := range []Mode{ModeArchive, ModeBareUser, ModeBareUserOnly, ModeBare} {
		t.Run(string(mode), func(t *testing.T) {
			if mode == ModeBare && os.Geteuid() != 0 {
				t.Skip("bare repositories need root")
			}
			path := ostreeInit(t, string(mode))
			testtool.RunOstree(t, "commit", "--repo="+path, "-b", "t", "--tree=dir="+fixture, "--no-bindings", "-s", "s")
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range lsFiles(t, path, "t") {
				obj, err := r.OpenContent(e.checksum)
				if err != nil {
					t.Fatalf("%s: %v", e.path, err)
				}
				data, err := io.ReadAll(obj)
				obj.Close()
				if err != nil {
					t.Fatalf("%s: read: %v", e.path, err)
				}
				m := obj.Meta
				kind := "-"
				if m.Mode&ModeTypeMask == ModeSymlink {
					kind = "l"
				}
				if got := fmt.Sprintf("%s%05o", kind, m.Mode&ModePermsMask); got != e.mode || m.UID != e.uid || m.GID != e.gid || obj.Size != e.size || m.Symlink != e.target {
					t.Errorf("%s: %s %d:%d size %d target %q, ostree ls says %s %d:%d size %d target %q",
						e.path, got, m.UID, m.GID, obj.Size, m.Symlink, e.mode, e.uid, e.gid, e.size, e.target)
				}
				if kind == "-" {
					if want := readFile(t, filepath.Join(fixture, e.path)); !bytes.Equal(data, want) {
						t.Errorf("%s: %d bytes read, the file has %d", e.path, len(data), len(want))
					}
				}
			}
		})
	}
}

// TestOpenContentCorrupt: a changed byte is ErrCorrupt once read, a
// missing object ErrObjectNotFound, a bad checksum ErrInvalidChecksum.
func TestOpenContentCorrupt(t *testing.T) {
	testtool.Ostree(t)
	path := ostreeInit(t, "bare-user")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("some content\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testtool.RunOstree(t, "commit", "--repo="+path, "-b", "t", "--tree=dir="+src, "-s", "s")
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := lsFiles(t, path, "t")[0].checksum
	p := r.ObjectPath(sum, ObjectFile)
	data := readFile(t, p)
	os.Chmod(p, 0o644)
	data[0] ^= 1
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	obj, err := r.OpenContent(sum)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if _, err := io.ReadAll(obj); !errors.Is(err, ErrCorrupt) {
		t.Errorf("reading a changed object: %v, want ErrCorrupt", err)
	}
	if _, err := r.OpenContent(strings.Repeat("ab", 32)); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("missing object: %v", err)
	}
	if _, err := r.OpenContent("nope"); !errors.Is(err, ErrInvalidChecksum) {
		t.Errorf("bad checksum: %v", err)
	}
}

// TestCheckComplete removes each kind of object a commit reaches in turn:
// the check names it (ErrObjectNotFound); a complete commit passes, and a
// Stage finds what it staged.
func TestCheckComplete(t *testing.T) {
	testtool.Ostree(t)
	ctx := context.Background()
	fixture := contentFixture(t)
	for _, victim := range []string{"", "file", "dirtree", "dirmeta"} {
		t.Run("missing "+victim, func(t *testing.T) {
			r := ostreeRepo(t)
			commit := ostreeCommitDir(t, r, fixture, "-b", "t", "-s", "s")
			if victim != "" {
				ext := map[string]string{"file": "filez", "dirtree": "dirtree", "dirmeta": "dirmeta"}[victim]
				matches, _ := filepath.Glob(filepath.Join(r.Path(), "objects", "*", "*."+ext))
				if len(matches) == 0 {
					t.Fatalf("no .%s objects", ext)
				}
				if err := os.Remove(matches[len(matches)-1]); err != nil {
					t.Fatal(err)
				}
			}
			err := r.CheckCommitComplete(ctx, commit)
			if victim == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrObjectNotFound) {
				t.Fatalf("CheckCommitComplete: %v, want ErrObjectNotFound", err)
			}
			t.Log(err)
		})
	}

	r, err := Create(filepath.Join(t.TempDir(), "repo"), ModeBareUser)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.BeginStage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tree, meta := stageDir(t, s, fixture)
	if err := s.CheckTreeComplete(ctx, tree, meta); err != nil {
		t.Errorf("staged tree: %v", err)
	}
	if err := r.CheckCommitComplete(ctx, strings.Repeat("0", 64)); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("missing commit: %v", err)
	}
}

// TestStageWriteMetadata stages well-formed dirtree and dirmeta bytes and
// refuses others.
func TestStageWriteMetadata(t *testing.T) {
	ctx := context.Background()
	r, err := Create(filepath.Join(t.TempDir(), "repo"), ModeArchive)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.BeginStage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	meta, _ := EncodeDirMeta(0, 0, ModeDir|0o755, nil)
	sum, err := s.WriteMetadata(ctx, ObjectDirMeta, meta)
	if err != nil || sum != sha256Hex(meta) {
		t.Fatalf("WriteMetadata: %s, %v", sum, err)
	}
	if got, err := s.ReadMetadataObject(sum, ObjectDirMeta); err != nil || !bytes.Equal(got, meta) {
		t.Errorf("ReadMetadataObject of a staged object: %x, %v", got, err)
	}
	for _, tc := range []struct {
		t    ObjectType
		data []byte
		want error
	}{
		{ObjectDirTree, meta, ErrCorrupt},
		{ObjectDirMeta, append(meta, 0), ErrCorrupt},
		{ObjectCommit, meta, ErrInvalidObjectType},
	} {
		if _, err := s.WriteMetadata(ctx, tc.t, tc.data); !errors.Is(err, tc.want) {
			t.Errorf("WriteMetadata(%s, %x): %v, want %v", tc.t, tc.data, err, tc.want)
		}
	}
}

// TestXattrsCodec round-trips xattrs in their order (libostree's labelling
// appends security.selinux unsorted) and refuses what OSTree never writes.
func TestXattrsCodec(t *testing.T) {
	in := []Xattr{{Name: "user.b", Value: []byte{0, 1}}, {Name: "security.selinux", Value: []byte("system_u:object_r:bin_t:s0\x00")}}
	data, err := EncodeXattrs(in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := gvariant.Marshal("a(ayay)", []any{[]any{[]byte("user.b\x00"), []byte{0, 1}}, []any{[]byte("security.selinux\x00"), []byte("system_u:object_r:bin_t:s0\x00")}})
	if err != nil || !bytes.Equal(data, want) {
		t.Errorf("EncodeXattrs = %x, want %x (%v)", data, want, err)
	}
	out, err := DecodeXattrs(data)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(in, out, func(a, b Xattr) bool { return a.Name == b.Name && bytes.Equal(a.Value, b.Value) }) {
		t.Errorf("round trip: %q", out)
	}
	if empty, err := EncodeXattrs(nil); err != nil || len(empty) != 0 {
		t.Errorf("no xattrs: %x, %v", empty, err)
	}
	for _, bad := range [][]Xattr{{{Name: "a"}, {Name: "a"}}, {{Name: "a"}, {Name: "b"}, {Name: "a"}}, {{Name: ""}}, {{Name: "a\x00b"}}} {
		if _, err := EncodeXattrs(bad); err == nil {
			t.Errorf("EncodeXattrs(%q) succeeded", bad)
		}
	}
	repeated, err := gvariant.Marshal("a(ayay)", []any{[]any{[]byte("user.b\x00"), []byte{}}, []any{[]byte("user.a\x00"), []byte{}}, []any{[]byte("user.b\x00"), []byte{1}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{repeated, append(data, 1)} {
		if _, err := DecodeXattrs(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeXattrs(%x): %v, want ErrCorrupt", bad, err)
		}
	}
}

// TestMarkCommitComplete removes libostree's partial mark, and is content
// without one.
func TestMarkCommitComplete(t *testing.T) {
	r, err := Create(filepath.Join(t.TempDir(), "repo"), ModeArchive)
	if err != nil {
		t.Fatal(err)
	}
	commit := strings.Repeat("ab", 32)
	p := filepath.Join(r.Path(), "state", commit+".commitpartial")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := r.MarkCommitComplete(commit); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("still marked partial: %v", err)
		}
	}
	if err := r.MarkCommitComplete("../x"); !errors.Is(err, ErrInvalidChecksum) {
		t.Errorf("MarkCommitComplete(../x): %v", err)
	}
}

// TestLabelledByOstree relabels a tree with the real tool's SELinux
// labelling (a tiny policy: only file_contexts and a policy.N are read),
// which appends security.selinux after the other xattrs unsorted: in
// archive and bare-user repositories every object reads back in that
// order and verifies, and a Stage writing the same metadata makes the same
// object. In a bare repository the stored file reads back sorted, so
// libostree's own fsck fails on such an object, and a Stage records the
// sorted order instead.
func TestLabelledByOstree(t *testing.T) {
	testtool.Ostree(t)
	src := t.TempDir()
	for p, content := range map[string]string{
		"usr/etc/selinux/config":                         "SELINUX=permissive\nSELINUXTYPE=t\n",
		"usr/etc/selinux/t/contexts/files/file_contexts": "/.*\tsystem_u:object_r:usr_t:s0\n/usr/bin(/.*)?\tsystem_u:object_r:bin_t:s0\n",
		"usr/etc/selinux/t/policy/policy.1":              "binary policy\n",
		"usr/bin/tool":                                   "tool\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"usr/bin/tool", "usr/bin"} {
		if err := unixSetxattr(filepath.Join(src, p), "user.z", []byte("1")); err != nil {
			t.Skipf("user xattrs unsupported here: %v", err)
		}
	}
	label := []byte("system_u:object_r:bin_t:s0\x00")
	unsorted := []Xattr{{Name: "user.z", Value: []byte("1")}, {Name: "security.selinux", Value: label}}
	for _, mode := range []Mode{ModeArchive, ModeBareUser, ModeBare} {
		t.Run(string(mode), func(t *testing.T) {
			if mode == ModeBare && os.Geteuid() != 0 {
				t.Skip("bare repositories need root")
			}
			path := ostreeInit(t, string(mode))
			testtool.RunOstree(t, "commit", "--repo="+path, "-b", "plain", "--tree=dir="+src, "--no-bindings", "--timestamp=@0")
			testtool.RunOstree(t, "commit", "--repo="+path, "-b", "labelled", "--tree=ref=plain", "--selinux-policy="+src, "--no-bindings", "--timestamp=@0")
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			var tool string
			for _, e := range lsFiles(t, path, "labelled") {
				if e.path == "/usr/bin/tool" {
					tool = e.checksum
				}
			}
			if mode == ModeBare {
				if err := testtool.OstreeCommand(t, "fsck", "--repo="+path).Run(); err == nil {
					t.Error("libostree's fsck passes its unsorted bare object; the Stage's sorting is then needless")
				}
			} else {
				obj, err := r.OpenContent(tool)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadAll(obj); err != nil {
					t.Fatal(err)
				}
				obj.Close()
				if !slices.EqualFunc(obj.Meta.Xattrs, unsorted, func(a, b Xattr) bool { return a.Name == b.Name && bytes.Equal(a.Value, b.Value) }) {
					t.Errorf("xattrs read %q, want %q", obj.Meta.Xattrs, unsorted)
				}
			}
			s, err := r.BeginStage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			sum, err := s.WriteContent(context.Background(), FileMeta{Mode: ModeRegular | 0o644, Xattrs: unsorted}, 5, strings.NewReader("tool\n"))
			if err != nil {
				t.Fatal(err)
			}
			if mode == ModeBare {
				want, _ := newContentHash(FileMeta{Mode: ModeRegular | 0o644, Xattrs: []Xattr{unsorted[1], unsorted[0]}})
				want.Write([]byte("tool\n"))
				if sum == tool || sum != hex.EncodeToString(want.Sum(nil)) {
					t.Errorf("bare: staged %s, libostree %s: want the sorted header's checksum", sum, tool)
				}
				return
			}
			if sum != tool {
				t.Errorf("staged %s, libostree made %s", sum, tool)
			}
			_, meta := dirChecksums(t, r, "labelled", "/usr/bin")
			data, err := r.ReadMetadataObject(meta, ObjectDirMeta)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, x, err := DecodeDirMeta(data); err != nil || !slices.EqualFunc(x, unsorted, func(a, b Xattr) bool { return a.Name == b.Name && bytes.Equal(a.Value, b.Value) }) {
				t.Errorf("usr/bin dirmeta xattrs %q, %v; want %q", x, err, unsorted)
			}
		})
	}
}

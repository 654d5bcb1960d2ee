package ostree

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/testtool"
)

// TestCopyContent copies every content object the real tool made of the
// content fixture, in each mode, once with its own metadata (the same
// object) and once with a label appended to its xattrs: the copy must be
// the object WriteContent makes of the same content and metadata, an
// archive copy must keep the compressed stream byte for byte, and a
// commit of the copies must pass `ostree fsck`.
func TestCopyContent(t *testing.T) {
	testtool.Ostree(t)
	fixture := contentFixture(t)
	label := Xattr{Name: "security.selinux", Value: []byte("system_u:object_r:bin_t:s0\x00")}
	ctx := context.Background()
	for _, mode := range []Mode{ModeArchive, ModeBareUser, ModeBareUserOnly, ModeBare} {
		t.Run(string(mode), func(t *testing.T) {
			if mode == ModeBare && os.Geteuid() != 0 {
				t.Skip("bare repositories need root")
			}
			repoPath := ostreeInit(t, string(mode))
			testtool.RunOstree(t, "commit", "--repo="+repoPath, "-b", "t", "--tree=dir="+fixture, "--no-bindings", "-s", "s")
			r, err := Open(repoPath)
			if err != nil {
				t.Fatal(err)
			}
			s, err := r.BeginStage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var copies []DirTreeFile
			for _, e := range lsFiles(t, repoPath, "t") {
				obj, err := r.OpenContent(e.checksum)
				if err != nil {
					t.Fatal(err)
				}
				same, err := s.CopyContent(ctx, obj, obj.Meta)
				obj.Close()
				if err != nil || same != e.checksum {
					t.Errorf("%s: copied as it is: %s, %v; want %s", e.path, same, err, e.checksum)
				}
				if mode == ModeBareUserOnly {
					continue // stores no xattrs
				}
				obj, err = r.OpenContent(e.checksum)
				if err != nil {
					t.Fatal(err)
				}
				meta := obj.Meta
				meta.Xattrs = append(append([]Xattr(nil), meta.Xattrs...), label)
				labelled, err := s.CopyContent(ctx, obj, meta)
				obj.Close()
				if err != nil {
					t.Fatalf("%s: %v", e.path, err)
				}
				obj, err = r.OpenContent(e.checksum)
				if err != nil {
					t.Fatal(err)
				}
				data, err := io.ReadAll(obj)
				obj.Close()
				if err != nil {
					t.Fatal(err)
				}
				want, err := s.WriteContent(ctx, meta, int64(len(data)), bytes.NewReader(data))
				if err != nil || labelled != want {
					t.Errorf("%s: labelled copy %s, WriteContent %s (%v)", e.path, labelled, want, err)
				}
				copies = append(copies, DirTreeFile{Name: path.Base(e.path) + "-" + labelled[:8], Checksum: labelled})
			}
			if err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if mode == ModeArchive {
				for _, c := range copies {
					orig := lsFileByName(t, repoPath, c.Name)
					_, a := splitRaw(t, readFile(t, r.ObjectPath(orig, ObjectFileZ)))
					_, b := splitRaw(t, readFile(t, r.ObjectPath(c.Checksum, ObjectFileZ)))
					if !bytes.Equal(a, b) {
						t.Errorf("%s: compressed stream differs from the original's", c.Name)
					}
				}
			}
			if len(copies) > 0 {
				commitFiles(t, r, copies)
				testtool.RunOstree(t, "fsck", "--repo="+repoPath)
			}
		})
	}
}

// lsFileByName finds the original of a copy named NAME-CHECKSUM8 in the
// fixture's commit.
func lsFileByName(t *testing.T, repoPath, copyName string) string {
	t.Helper()
	for _, e := range lsFiles(t, repoPath, "t") {
		if path.Base(e.path)+"-" == copyName[:len(copyName)-8] {
			return e.checksum
		}
	}
	t.Fatalf("no original of %s", copyName)
	return ""
}

// splitRaw splits a .filez file into its framed header and its compressed
// stream.
func splitRaw(t *testing.T, data []byte) (header, stream []byte) {
	t.Helper()
	end := 8 + int(binary.BigEndian.Uint32(data))
	return data[:end], data[end:]
}

// commitFiles commits a flat tree of the given files, so fsck reaches them.
func commitFiles(t *testing.T, r *Repo, files []DirTreeFile) string {
	t.Helper()
	ctx := context.Background()
	s, err := r.BeginStage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	root := NewMutableTree("")
	meta, err := s.WriteDirMeta(ctx, FileMeta{Mode: ModeDir | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	root.SetMetaChecksum(meta)
	for _, f := range files {
		if err := root.SetFile(f.Name, f.Checksum, false); err != nil {
			t.Fatal(err)
		}
	}
	tree, err := s.WriteTree(ctx, root)
	if err == nil {
		err = s.Commit(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	commit, err := r.WriteCommit(ctx, &Commit{Timestamp: time.Unix(0, 0), RootTree: tree, RootMeta: meta})
	if err != nil {
		t.Fatal(err)
	}
	return commit
}

// TestCopyContentDamaged: a changed byte in an object's content fails the
// copy with ErrCorrupt and stages nothing; bytes after an archive
// object's compressed stream are left out of the copy; an object already
// read, or metadata of another file type, is refused.
func TestCopyContentDamaged(t *testing.T) {
	testtool.Ostree(t)
	fixture := contentFixture(t)
	ctx := context.Background()
	for _, mode := range []Mode{ModeArchive, ModeBareUser} {
		t.Run(string(mode), func(t *testing.T) {
			repoPath := ostreeInit(t, string(mode))
			testtool.RunOstree(t, "commit", "--repo="+repoPath, "-b", "t", "--tree=dir="+fixture, "--no-bindings", "-s", "s")
			r, err := Open(repoPath)
			if err != nil {
				t.Fatal(err)
			}
			objects := map[string]string{}
			for _, e := range lsFiles(t, repoPath, "t") {
				objects[e.path] = e.checksum
			}
			s, err := r.BeginStage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			label := func(obj *ContentObject) FileMeta {
				m := obj.Meta
				m.Xattrs = append(append([]Xattr(nil), m.Xattrs...), Xattr{Name: "user.new", Value: []byte("1")})
				return m
			}
			// Clean copies first, to compare with.
			clean := map[string]string{}
			for _, name := range []string{"/hello.txt", "/big"} {
				obj, err := r.OpenContent(objects[name])
				if err != nil {
					t.Fatal(err)
				}
				if clean[name], err = s.CopyContent(ctx, obj, label(obj)); err != nil {
					t.Fatal(err)
				}
				obj.Close()
			}
			if err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if mode == ModeArchive {
				for _, name := range []string{"/hello.txt", "/big"} {
					p := r.ObjectPath(objects[name], ObjectFileZ)
					os.WriteFile(p, append(readFile(t, p), "trailing bytes"...), 0o644)
					obj, err := r.OpenContent(objects[name])
					if err != nil {
						t.Fatal(err)
					}
					// Its checksum says it is already there: copy into a
					// fresh repository to see what a copy writes.
					other, err := Create(t.TempDir()+"/repo", ModeArchive)
					if err != nil {
						t.Fatal(err)
					}
					os2, err := other.BeginStage(ctx)
					if err != nil {
						t.Fatal(err)
					}
					sum, err := os2.CopyContent(ctx, obj, label(obj))
					obj.Close()
					if err == nil {
						err = os2.Commit(ctx)
					}
					os2.Close()
					if err != nil || sum != clean[name] {
						t.Fatalf("%s with trailing bytes: %s, %v; want %s", name, sum, err, clean[name])
					}
					if got, want := readFile(t, other.ObjectPath(sum, ObjectFileZ)), readFile(t, r.ObjectPath(clean[name], ObjectFileZ)); !bytes.Equal(got, want) {
						t.Errorf("%s with trailing bytes: copy of %d bytes, the clean copy has %d", name, len(got), len(want))
					}
				}
			}
			before := s.Stats()
			for _, name := range []string{"/hello.txt", "/big"} {
				p := r.ObjectPath(objects[name], r.contentObjectType())
				data := readFile(t, p)
				first := 0 // the content's first byte: the file's, or the stream's
				if mode == ModeArchive {
					header, _ := splitRaw(t, data)
					first = len(header)
				}
				data[first] ^= 0x40
				os.Chmod(p, 0o644)
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatal(err)
				}
				obj, err := r.OpenContent(objects[name])
				if err != nil {
					t.Fatal(err)
				}
				if sum, err := s.CopyContent(ctx, obj, label(obj)); !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s changed: copied as %s, %v; want ErrCorrupt", name, sum, err)
				}
				obj.Close()
			}
			if after := s.Stats(); after != before {
				t.Errorf("damaged objects staged something: %+v, before %+v", after, before)
			}
			obj, err := r.OpenContent(objects["/exec"])
			if err != nil {
				t.Fatal(err)
			}
			defer obj.Close()
			asLink := FileMeta{Mode: ModeSymlink | 0o777, Symlink: "x"}
			if _, err := s.CopyContent(ctx, obj, asLink); !errors.Is(err, ErrInvalidContent) {
				t.Errorf("copy as a symlink: %v, want ErrInvalidContent", err)
			}
			io.ReadFull(obj, make([]byte, 1))
			if _, err := s.CopyContent(ctx, obj, obj.Meta); !errors.Is(err, ErrInvalidContent) {
				t.Errorf("copy of an object read from: %v, want ErrInvalidContent", err)
			}
		})
	}
}

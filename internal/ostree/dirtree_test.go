package ostree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/osimage/updatecache/internal/testtool"
)

// treeFixture stages files "a/b/c/f", "a/x", "z/y/f" and "top" plus their
// directories into a fresh archive repository, commits, and returns the
// repository, the root tree and meta, and the content checksums by path.
func treeFixture(t *testing.T) (r *Repo, tree, meta string, files map[string]string) {
	t.Helper()
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
	dm, err := s.WriteDirMeta(ctx, FileMeta{Mode: ModeDir | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	root := NewMutableTree(dm)
	files = map[string]string{}
	for _, p := range []string{"a/b/c/f", "a/x", "z/y/f", "top"} {
		sum, err := s.WriteContent(ctx, FileMeta{Mode: ModeRegular | 0o644}, int64(len(p)), strings.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		files[p] = sum
		dir := root
		parts := strings.Split(p, "/")
		for _, c := range parts[:len(parts)-1] {
			if dir, err = dir.EnsureDir(c, dm); err != nil {
				t.Fatal(err)
			}
		}
		if err := dir.SetFile(parts[len(parts)-1], sum, false); err != nil {
			t.Fatal(err)
		}
	}
	if tree, err = s.WriteTree(ctx, root); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return r, tree, dm, files
}

// TestMutableTreeLazy opens a stored tree, edits one deep path and writes
// it back: only the directories along the path are read, untouched
// subtrees keep their objects, and the real tool sees the edit.
func TestMutableTreeLazy(t *testing.T) {
	testtool.Ostree(t)
	ctx := context.Background()
	r, tree, meta, files := treeFixture(t)
	root, err := r.OpenMutableTree(tree, meta)
	if err != nil {
		t.Fatal(err)
	}
	// Walk to a/b/c and replace f by top's content.
	dir := root
	for _, c := range []string{"a", "b", "c"} {
		if _, dir, err = dir.Lookup(c); err != nil || dir == nil {
			t.Fatalf("lookup %s: %v", c, err)
		}
	}
	if err := dir.SetFile("f", files["top"], false); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.EnsureDir("new", meta); err != nil {
		t.Fatal(err)
	}
	s, err := r.BeginStage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	newTree, err := s.WriteTree(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	// a/b/c, a/b, a, the root and the empty new directory: five dirtrees.
	if st := s.Stats(); st.MetadataWritten != 5 {
		t.Errorf("stats %+v, want 5 dirtrees written", st)
	}
	if root.dirs["z"].loaded {
		t.Error("z, never looked into, was read")
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := r.WriteCommit(ctx, &Commit{Timestamp: time.Unix(0, 0), RootTree: newTree, RootMeta: meta})
	if err != nil {
		t.Fatal(err)
	}
	out := testtool.RunOstree(t, "ls", "-R", "-C", "--repo="+r.Path(), c)
	if !strings.Contains(out, files["top"]+" /a/b/c/f\n") || !strings.Contains(out, " /a/b/c/new\n") || !strings.Contains(out, files["a/x"]+" /a/x\n") {
		t.Errorf("ostree ls:\n%s", out)
	}
	testtool.RunOstree(t, "fsck", "--repo="+r.Path())
}

// TestMutableTreeOps covers the editing rules and their errors.
func TestMutableTreeOps(t *testing.T) {
	r, tree, meta, files := treeFixture(t)
	sum := files["top"]
	root, err := r.OpenMutableTree(tree, meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.SetFile("a", sum, false); !errors.Is(err, ErrNotDirectory) {
		t.Errorf("file over a directory: %v", err)
	}
	if _, err := root.EnsureDir("top", meta); !errors.Is(err, ErrNotDirectory) {
		t.Errorf("directory over a file: %v", err)
	}
	for _, name := range []string{"", ".", "..", "a/b", "nul\x00"} {
		if err := root.SetFile(name, sum, false); !errors.Is(err, ErrInvalidFilename) {
			t.Errorf("SetFile(%q): %v", name, err)
		}
		if _, err := root.EnsureDir(name, meta); !errors.Is(err, ErrInvalidFilename) {
			t.Errorf("EnsureDir(%q): %v", name, err)
		}
	}
	if err := root.SetFile("bad", "abc", false); !errors.Is(err, ErrInvalidChecksum) {
		t.Errorf("bad checksum: %v", err)
	}
	if _, err := r.OpenMutableTree("abc", meta); !errors.Is(err, ErrInvalidChecksum) {
		t.Errorf("OpenMutableTree bad checksum: %v", err)
	}
	if err := root.SetFile("a", sum, true); err != nil {
		t.Errorf("file over a directory, replacing: %v", err)
	}
	if err := root.SetDir("top", NewMutableTree(meta)); err != nil {
		t.Fatal(err)
	}
	if file, dir, _ := root.Lookup("top"); file != "" || dir == nil {
		t.Errorf("top after SetDir: %q %v", file, dir)
	}
	if ok, err := root.Remove("a"); !ok || err != nil {
		t.Errorf("Remove(a) = %v, %v", ok, err)
	}
	if ok, _ := root.Remove("a"); ok {
		t.Error("Remove(a) twice reported a removal")
	}
	root.Clear()
	if file, dir, _ := root.Lookup("top"); file != "" || dir != nil || root.MetaChecksum() != meta {
		t.Error("Clear left entries or lost the dirmeta")
	}
}

// TestWriteTreeMissingObjects: WriteTree refuses to reference objects that
// are neither staged nor stored, and a stored dirtree that is gone or
// corrupt is reported when a directory is first looked into.
func TestWriteTreeMissingObjects(t *testing.T) {
	ctx := context.Background()
	r, tree, meta, _ := treeFixture(t)
	s, err := r.BeginStage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	absent := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		name string
		tree *MutableTree
	}{
		{"content", func() *MutableTree { m := NewMutableTree(meta); m.SetFile("f", absent, false); return m }()},
		{"dirmeta", NewMutableTree(absent)},
		{"unloaded dirtree", func() *MutableTree { m, _ := r.OpenMutableTree(absent, meta); return m }()},
	} {
		if _, err := s.WriteTree(ctx, tt.tree); !errors.Is(err, ErrObjectNotFound) {
			t.Errorf("%s: WriteTree = %v, want ErrObjectNotFound", tt.name, err)
		}
	}
	if _, err := s.WriteTree(ctx, &MutableTree{loaded: true}); !errors.Is(err, ErrInvalidChecksum) {
		t.Errorf("no dirmeta: %v", err)
	}

	root, _ := r.OpenMutableTree(tree, meta)
	p := r.ObjectPath(tree, ObjectDirTree)
	if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := root.Lookup("a"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("lookup in a corrupt dirtree: %v", err)
	}
	os.Remove(p)
	root, _ = r.OpenMutableTree(tree, meta)
	if _, _, err := root.Lookup("a"); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("lookup in a missing dirtree: %v", err)
	}
}

// TestWriteTreeFileSizeLimit: a metadata object whose write fails part way
// (here RLIMIT_FSIZE; a full disk alike) is an error, and neither a
// truncated object nor an open descriptor is left behind.
func TestWriteTreeFileSizeLimit(t *testing.T) {
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
	dm, err := s.WriteDirMeta(ctx, FileMeta{Mode: ModeDir | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	file, err := s.WriteContent(ctx, FileMeta{Mode: ModeRegular | 0o644}, 1, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	root := NewMutableTree(dm)
	for i := range 4000 { // a dirtree of about 200 KB
		if err := root.SetFile(fmt.Sprintf("file-%06d", i), file, false); err != nil {
			t.Fatal(err)
		}
	}

	const limit = 64 << 10
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	// The Go runtime ignores SIGXFSZ, so an over-long write fails with EFBIG.
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Skipf("cannot limit the file size: %v", err)
	}
	fdsBefore := openFDs(t)
	_, err = s.WriteTree(ctx, root)
	fdsAfter := openFDs(t)
	if rerr := unix.Setrlimit(unix.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, unix.EFBIG) {
		t.Fatalf("WriteTree under a %d-byte file size limit = %v, want EFBIG", limit, err)
	}
	if fdsAfter != fdsBefore {
		t.Errorf("open descriptors %d before, %d after the failed write", fdsBefore, fdsAfter)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(filepath.Join(r.Path(), "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, "."+string(ObjectDirTree)) {
			t.Errorf("a dirtree object was placed: %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

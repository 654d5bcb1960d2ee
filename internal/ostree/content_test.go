package ostree

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/testtool"
	"golang.org/x/sys/unix"
)

// contentFixture makes a directory exercising every kind of content
// object: odd modes and owners, an empty file, one over 1 MiB, xattrs on
// files and directories, symlinks, and identical files. Owners other than
// root need root to create; the caller skips otherwise.
func contentFixture(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "fixture")
	big := make([]byte, 1<<20+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.IntN(16)) // compressible, but not trivially
	}
	type file struct {
		name     string
		data     []byte
		mode     os.FileMode
		uid, gid int
		xattrs   map[string]string
	}
	dirs := []file{
		{name: ".", mode: 0o755},
		{name: "sub", mode: 0o700, uid: 5, gid: 6, xattrs: map[string]string{"user.dx": "1"}},
		{name: "sub/nested", mode: 0o750},
		{name: "sticky", mode: 0o777 | os.ModeSticky},
		{name: "xdir", mode: 0o755, xattrs: map[string]string{"user.z": "zz", "user.a": "", "user.m": "\x00\x01\xff"}},
	}
	files := []file{
		{name: "hello.txt", data: []byte("hello\n"), mode: 0o644},
		{name: "same-as-hello", data: []byte("hello\n"), mode: 0o644},
		{name: "empty", mode: 0o600},
		{name: "exec", data: []byte("#!/bin/sh\n"), mode: 0o755},
		{name: "setuid", data: []byte("s"), mode: 0o755 | os.ModeSetuid},
		{name: "allbits", data: []byte("a"), mode: 0o777 | os.ModeSetuid | os.ModeSetgid | os.ModeSticky},
		{name: "writable", data: []byte("w"), mode: 0o666, uid: 1000, gid: 1000},
		{name: "unreadable", data: []byte("u"), mode: 0o000},
		{name: "big", data: big, mode: 0o644},
		{name: "xattrs", data: []byte("x"), mode: 0o644, xattrs: map[string]string{"user.z": "1", "user.a": "", "user.m": "\x00\x01\xff"}},
		{name: "sub/nested/deep", data: []byte("deep"), mode: 0o640, uid: 7, gid: 8},
	}
	for _, d := range dirs {
		p := filepath.Join(root, d.name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(root, f.name), f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []struct{ name, target string }{{"link", "hello.txt"}, {"dangling", "/nonexistent/target"}, {"sub/up", "../exec"}} {
		if err := os.Symlink(l.target, filepath.Join(root, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	// Deepest first, so a directory's own mode does not stop the work below it.
	all := append(files, dirs...)
	slices.Reverse(all)
	for _, f := range all {
		p := filepath.Join(root, f.name)
		for name, value := range f.xattrs {
			if err := unix.Setxattr(p, name, []byte(value), 0); err != nil {
				t.Skipf("user xattrs unsupported here: %v", err)
			}
		}
		if err := os.Lchown(p, f.uid, f.gid); err != nil {
			t.Skipf("the fixture needs root for its owners: %v", err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// metaOf reads a file's FileMeta from disk as libostree's `commit --tree=dir`
// does: st_mode, owner, symlink target, xattrs sorted by name (leaving out
// those with an empty value, as libostree does when it reads a directory;
// from a tar it keeps them).
func metaOf(t *testing.T, p string) FileMeta {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	m := FileMeta{UID: st.Uid, GID: st.Gid, Mode: st.Mode}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		m.Symlink = target
	}
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatal(err)
	}
	for name := range strings.SplitSeq(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 4096)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatal(err)
		}
		if vn > 0 {
			m.Xattrs = append(m.Xattrs, Xattr{Name: name, Value: v[:vn]})
		}
	}
	SortXattrs(m.Xattrs)
	return m
}

// stageDir writes the directory dir through a Stage, as `ostree commit
// --tree=dir` would (canonical permissions in bare-user-only), and returns
// the root dirtree and dirmeta checksums.
func stageDir(t *testing.T, s *Stage, dir string) (tree, meta string) {
	t.Helper()
	ctx := context.Background()
	canonical := s.repo.Mode() == ModeBareUserOnly
	metaFor := func(p string) FileMeta {
		m := metaOf(t, p)
		if canonical {
			m = m.CanonicalPermissions()
		}
		return m
	}
	var walk func(p string) *MutableTree
	walk = func(p string) *MutableTree {
		dm, err := s.WriteDirMeta(ctx, metaFor(p))
		if err != nil {
			t.Fatal(err)
		}
		mt := NewMutableTree(dm)
		entries, err := os.ReadDir(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			cp := filepath.Join(p, e.Name())
			if e.IsDir() {
				if err := mt.SetDir(e.Name(), walk(cp)); err != nil {
					t.Fatal(err)
				}
				continue
			}
			m := metaFor(cp)
			var sum string
			if e.Type()&fs.ModeSymlink != 0 {
				sum, err = s.WriteContent(ctx, m, 0, nil)
			} else {
				var f *os.File
				if f, err = os.Open(cp); err != nil {
					t.Fatal(err)
				}
				st, _ := f.Stat()
				sum, err = s.WriteContent(ctx, m, st.Size(), f)
				f.Close()
			}
			if err != nil {
				t.Fatalf("WriteContent %s: %v", cp, err)
			}
			if err := mt.SetFile(e.Name(), sum, false); err != nil {
				t.Fatal(err)
			}
		}
		return mt
	}
	root := walk(dir)
	tree, err := s.WriteTree(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	return tree, root.MetaChecksum()
}

// writeAndCommit stages dir into r, commits and sets ref, and returns the
// commit checksum.
func writeAndCommit(t *testing.T, r *Repo, dir, ref string) string {
	t.Helper()
	ctx := context.Background()
	s, err := r.BeginStage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	tree, meta := stageDir(t, s, dir)
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := r.WriteCommit(ctx, &Commit{Subject: "s", Timestamp: time.Unix(0, 0), RootTree: tree, RootMeta: meta})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetRef(ctx, ref, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStageMatchesOstree writes the fixture in every mode libostree can
// write here and requires the same commit as `ostree commit --tree=dir`
// (so the same tree, dirmeta and content checksums), the same object
// files (bytes, permissions, owners, xattrs, mtime; for archive the same
// header and the same content once inflated) and a clean `ostree fsck`.
func TestStageMatchesOstree(t *testing.T) {
	testtool.Ostree(t)
	fixture := contentFixture(t)
	for _, mode := range []Mode{ModeArchive, ModeBareUser, ModeBareUserOnly, ModeBare} {
		t.Run(string(mode), func(t *testing.T) {
			theirs := ostreeInit(t, string(mode))
			args := []string{"commit", "--repo=" + theirs, "-b", "t", "--tree=dir=" + fixture, "--no-bindings", "--timestamp=@0", "-s", "s"}
			want := strings.TrimSpace(testtool.RunOstree(t, args...))
			r, err := Create(filepath.Join(t.TempDir(), "ours"), mode)
			if err != nil {
				t.Fatal(err)
			}
			got := writeAndCommit(t, r, fixture, "t")
			if got != want {
				t.Fatalf("commit %s, ostree made %s\nours:\n%s\ntheirs:\n%s", got, want,
					testtool.RunOstree(t, "ls", "-R", "-X", "-C", "--repo="+r.Path(), "t"),
					testtool.RunOstree(t, "ls", "-R", "-X", "-C", "--repo="+theirs, "t"))
			}
			testtool.RunOstree(t, "fsck", "--repo="+r.Path())
			compareObjects(t, theirs, r.Path(), mode)
			if left, _ := filepath.Glob(filepath.Join(r.Path(), "tmp", "staging-*")); len(left) > 0 {
				t.Errorf("staging left behind: %v", left)
			}
		})
	}
}

// compareObjects requires every content object of repository a to exist in
// b with the same representation.
func compareObjects(t *testing.T, a, b string, mode Mode) {
	t.Helper()
	ext := ".file"
	if mode == ModeArchive {
		ext = ".filez"
	}
	paths, err := filepath.Glob(filepath.Join(a, "objects", "*", "*"+ext))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no content objects in %s: %v", a, err)
	}
	for _, pa := range paths {
		rel, _ := filepath.Rel(a, pa)
		pb := filepath.Join(b, rel)
		sa, sb := lstat(t, pa), lstat(t, pb)
		if sa.Mode != sb.Mode || sa.Uid != sb.Uid || sa.Gid != sb.Gid {
			t.Errorf("%s: mode %#o owner %d:%d, ostree's %#o %d:%d", rel, sb.Mode, sb.Uid, sb.Gid, sa.Mode, sa.Uid, sa.Gid)
		}
		if sa.Mode&unix.S_IFMT == unix.S_IFREG && sa.Mtim != sb.Mtim && mode != ModeArchive {
			t.Errorf("%s: mtime %v, ostree's %v", rel, sb.Mtim, sa.Mtim)
		}
		ma, mb := metaOf(t, pa), metaOf(t, pb)
		if ma.Symlink != mb.Symlink || !equalXattrs(ma.Xattrs, mb.Xattrs) {
			t.Errorf("%s: symlink %q xattrs %q, ostree's %q %q", rel, mb.Symlink, mb.Xattrs, ma.Symlink, ma.Xattrs)
		}
		if sa.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		da, db := readFile(t, pa), readFile(t, pb)
		if mode == ModeArchive {
			// The compressed bytes depend on the zlib implementation; the
			// header and what they inflate to must not.
			ha, ca := splitFilez(t, da)
			hb, cb := splitFilez(t, db)
			if !bytes.Equal(ha, hb) || !bytes.Equal(ca, cb) {
				t.Errorf("%s: header %x content %d bytes, ostree's %x %d bytes", rel, hb, len(cb), ha, len(ca))
			}
		} else if !bytes.Equal(da, db) {
			t.Errorf("%s: content differs from ostree's", rel)
		}
	}
}

func equalXattrs(a, b []Xattr) bool {
	key := func(x Xattr) string { return x.Name + "\x00" + string(x.Value) }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i] = key(a[i])
	}
	for i := range b {
		kb[i] = key(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// splitFilez returns a .filez object's framed header and its inflated
// content.
func splitFilez(t *testing.T, data []byte) (header, content []byte) {
	t.Helper()
	if len(data) < 8 {
		t.Fatalf(".filez of %d bytes", len(data))
	}
	end := 8 + int(binary.BigEndian.Uint32(data))
	if end > len(data) {
		t.Fatalf(".filez header length %d beyond %d bytes", end, len(data))
	}
	if end == len(data) {
		return data[:end], nil
	}
	content, err := io.ReadAll(flate.NewReader(bytes.NewReader(data[end:])))
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return data[:end], content
}

// TestStageRejects covers content a Stage must refuse: each case is an
// error wrapping ErrInvalidContent and leaves nothing staged.
func TestContentObjectType(t *testing.T) {
	tests := []struct {
		mode Mode
		want ObjectType
	}{
		{ModeArchive, ObjectFileZ},
		{"archive", ObjectFileZ}, // the alias, normalised on create and open
		{ModeBare, ObjectFile},
		{ModeBareUser, ObjectFile},
		{ModeBareUserOnly, ObjectFile},
		{ModeBareSplitXattrs, ObjectFile},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			r, err := Create(filepath.Join(t.TempDir(), "repo"), tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.contentObjectType(); got != tt.want {
				t.Errorf("contentObjectType() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStageRejects(t *testing.T) {
	reg := func(mode uint32) FileMeta { return FileMeta{Mode: ModeRegular | mode} }
	tests := []struct {
		name    string
		mode    Mode
		meta    FileMeta
		size    int64
		content string
		wantEOF bool
	}{
		{name: "short content", mode: ModeArchive, meta: reg(0o644), size: 10, content: "12345", wantEOF: true},
		{name: "long content", mode: ModeArchive, meta: reg(0o644), size: 3, content: "12345"},
		{name: "negative size", mode: ModeBareUser, meta: reg(0o644), size: -1},
		{name: "directory mode", mode: ModeBareUser, meta: FileMeta{Mode: ModeDir | 0o755}},
		{name: "device mode", mode: ModeBareUser, meta: FileMeta{Mode: 0o020000 | 0o644}},
		{name: "stray high bits", mode: ModeArchive, meta: reg(0o1000000 | 0o644)},
		{name: "regular with target", mode: ModeArchive, meta: FileMeta{Mode: ModeRegular | 0o644, Symlink: "x"}},
		{name: "symlink without target", mode: ModeArchive, meta: FileMeta{Mode: ModeSymlink | 0o777}},
		{name: "symlink target with NUL", mode: ModeArchive, meta: FileMeta{Mode: ModeSymlink | 0o777, Symlink: "a\x00b"}},
		{name: "symlink target not UTF-8", mode: ModeArchive, meta: FileMeta{Mode: ModeSymlink | 0o777, Symlink: "\xff"}},
		{name: "symlink target too long", mode: ModeArchive, meta: FileMeta{Mode: ModeSymlink | 0o777, Symlink: strings.Repeat("a", 4096)}},
		{name: "symlink with content", mode: ModeArchive, meta: FileMeta{Mode: ModeSymlink | 0o777, Symlink: "x"}, size: 1, content: "x"},
		{name: "empty xattr name", mode: ModeBareUser, meta: FileMeta{Mode: ModeRegular | 0o644, Xattrs: []Xattr{{Name: ""}}}},
		{name: "duplicate xattr", mode: ModeBareUser, meta: FileMeta{Mode: ModeRegular | 0o644, Xattrs: []Xattr{{Name: "user.a"}, {Name: "user.a"}}}},
		{name: "bare uid 4294967295", mode: ModeBare, meta: FileMeta{UID: math.MaxUint32, Mode: ModeRegular | 0o644}},
		{name: "bare symlink gid 4294967295", mode: ModeBare, meta: FileMeta{GID: math.MaxUint32, Mode: ModeSymlink | 0o777, Symlink: "x"}},
		{name: "bare-user-only owner", mode: ModeBareUserOnly, meta: FileMeta{UID: 1, Mode: ModeRegular | 0o644}},
		{name: "bare-user-only xattr", mode: ModeBareUserOnly, meta: FileMeta{Mode: ModeRegular | 0o644, Xattrs: []Xattr{{Name: "user.a"}}}},
		{name: "bare-user-only setuid", mode: ModeBareUserOnly, meta: reg(0o4755)},
		{name: "bare-user-only world-writable", mode: ModeBareUserOnly, meta: reg(0o666)},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Create(filepath.Join(t.TempDir(), "repo"), tt.mode)
			if err != nil {
				t.Fatal(err)
			}
			s, err := r.BeginStage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.WriteContent(ctx, tt.meta, tt.size, strings.NewReader(tt.content))
			if !errors.Is(err, ErrInvalidContent) || tt.wantEOF != errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("WriteContent error = %v, want ErrInvalidContent (unexpected EOF: %v)", err, tt.wantEOF)
			}
			if left, _ := os.ReadDir(s.dir); len(left) > 0 {
				t.Errorf("staging directory holds %v", left)
			}
			if err := s.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if objs, _ := filepath.Glob(filepath.Join(r.Path(), "objects", "*", "*")); len(objs) > 0 {
				t.Errorf("objects written: %v", objs)
			}
		})
	}
}

// TestStageLifecycle checks the staging directory's name and lock, that
// objects reach objects/ only at Commit, that an object already present is
// neither rewritten nor counted as written, and that Close cleans up.
func TestStageLifecycle(t *testing.T) {
	ctx := context.Background()
	r, err := Create(filepath.Join(t.TempDir(), "repo"), ModeArchive)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.BeginStage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skip("no boot id")
	}
	prefix := filepath.Join(r.Path(), "tmp", "staging-"+strings.TrimSpace(string(boot))+"-")
	if !strings.HasPrefix(s.dir, prefix) || len(s.dir) != len(prefix)+6 {
		t.Errorf("staging directory %s, want %sXXXXXX", s.dir, prefix)
	}
	// libostree skips a staging directory whose lock it cannot take.
	lf, err := os.OpenFile(s.dir+"-lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = unix.FcntlFlock(lf.Fd(), unix.F_OFD_SETLK, &unix.Flock_t{Type: unix.F_WRLCK})
	lf.Close()
	if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
		t.Errorf("staging lock not held: F_OFD_SETLK gave %v", err)
	}
	// A shared repository lock is held: an exclusive one (prune's) times out.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if unlock, err := r.Lock(cctx, LockExclusive); err == nil {
		unlock()
		t.Error("exclusive repository lock taken while a stage is open")
	}
	cancel()

	meta := FileMeta{Mode: ModeRegular | 0o644}
	sum, err := s.WriteContent(ctx, meta, 6, strings.NewReader("hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.HasObject(sum, ObjectFileZ); ok {
		t.Error("object in objects/ before Commit")
	}
	if again, err := s.WriteContent(ctx, meta, 6, strings.NewReader("hello\n")); err != nil || again != sum {
		t.Fatalf("second write: %s, %v", again, err)
	}
	if st := s.Stats(); st.ContentWritten != 1 || st.ContentPresent != 1 || st.ContentBytes != 6 {
		t.Errorf("stats %+v", st)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	p := r.ObjectPath(sum, ObjectFileZ)
	before := lstat(t, p)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("staging directory still there: %v", err)
	}
	if _, err := os.Lstat(s.dir + "-lock"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("staging lock file still there: %v", err)
	}

	s2, err := r.BeginStage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.WriteContent(ctx, meta, 6, strings.NewReader("hello\n")); err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.ContentWritten != 0 || st.ContentPresent != 1 {
		t.Errorf("rewrite stats %+v", st)
	}
	if err := s2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if after := lstat(t, p); after.Ino != before.Ino || after.Mtim != before.Mtim {
		t.Error("existing object rewritten")
	}
}

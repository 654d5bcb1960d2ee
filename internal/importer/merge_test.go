package importer

import (
	"archive/tar"
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/testtool"
)

// mergeLayers are three layers exercising whiteouts: plain and opaque,
// re-adding a whited-out name, type changes, a directory's metadata
// changing, AUFS bookkeeping names and whiteouts of absent names.
func mergeLayers() [][]ent {
	return [][]ent{{
		dir("usr/", 0o755),
		dir("usr/bin/", 0o755),
		reg("usr/bin/a", 0o755, "a, first"),
		hardlink("usr/bin/a2", "usr/bin/a"),
		reg("usr/bin/b", 0o750, "b"),
		hardlink("usr/bin/b2", "usr/bin/b"),
		reg("usr/lib/keep", 0o644, "keep, first"),
		reg("usr/lib/gone/x", 0o644, "x"),
		reg("usr/lib/gone/sub/y", 0o644, "y"),
		reg("usr/share/opq/old", 0o644, "old"),
		reg("usr/share/opq/sub/old2", 0o644, "old2"),
		dir("usr/share/meta/", 0o755),
		reg("etc/conf", 0o640, "conf"),
		symlink("usr/lib/l", "keep"),
		symlink("usr/lib/stays", "../bin/b"),
		{name: "usr/lib/xa", mode: 0o644, body: "xa", xattrs: map[string]string{"user.x": "1"}},
		reg("usr/lib/becomes-dir", 0o644, "file"),
		reg("usr/lib/becomes-file/inner", 0o644, "inner"),
	}, {
		reg("usr/lib/.wh.keep", 0o644, ""),
		reg("usr/lib/.wh.gone", 0o644, ""),
		reg("usr/lib/.wh.not-there", 0o644, ""),
		reg("usr/share/opq/.wh..wh..opq", 0o644, ""),
		reg("usr/share/opq/new", 0o644, "new"),
		reg("usr/bin/a", 0o755, "a, second"),
		reg("usr/new/f", 0o600, "f"),
		{name: "usr/share/meta/", typ: tar.TypeDir, mode: 0o700, uid: 5, gid: 6},
		reg("usr/lib/becomes-dir/inner", 0o644, "now a dir"),
		reg("usr/lib/becomes-file", 0o644, "now a file"),
		reg("usr/.wh..wh.plnk", 0o644, ""),
	}, {
		reg("usr/lib/keep", 0o644, "keep, third"),
		reg("usr/lib/.wh.l", 0o644, ""),
	}}
}

// node is an expected checkout entry.
type node struct {
	kind    fs.FileMode // 0 file, fs.ModeDir, fs.ModeSymlink
	perm    fs.FileMode
	content string // file content or symlink target
	uid     uint32
	xattrs  map[string]string
}

// mergedTree is what the merge of mergeLayers must check out to.
func mergedTree() map[string]node {
	d := func(perm fs.FileMode) node { return node{kind: fs.ModeDir, perm: perm} }
	f := func(perm fs.FileMode, content string) node { return node{perm: perm, content: content} }
	return map[string]node{
		"usr":                       d(0o755),
		"usr/bin":                   d(0o755),
		"usr/bin/a":                 f(0o755, "a, second"),
		"usr/bin/a2":                f(0o755, "a, first"),
		"usr/bin/b":                 f(0o750, "b"),
		"usr/bin/b2":                f(0o750, "b"),
		"usr/lib":                   d(0o755),
		"usr/lib/keep":              f(0o644, "keep, third"),
		"usr/lib/stays":             {kind: fs.ModeSymlink, content: "../bin/b"},
		"usr/lib/xa":                {perm: 0o644, content: "xa", xattrs: map[string]string{"user.x": "1"}},
		"usr/lib/becomes-dir":       d(0o755),
		"usr/lib/becomes-dir/inner": f(0o644, "now a dir"),
		"usr/lib/becomes-file":      f(0o644, "now a file"),
		"usr/share":                 d(0o755),
		"usr/share/opq":             d(0o755),
		"usr/share/opq/new":         f(0o644, "new"),
		"usr/share/meta":            {kind: fs.ModeDir, perm: 0o755}, // the lowest layer's
		"usr/new":                   d(0o755),
		"usr/new/f":                 f(0o600, "f"),
		"usr/etc":                   d(0o755),
		"usr/etc/conf":              f(0o640, "conf"),
	}
}

// mergeTree writes the merge commit of plain layers (as a plain image's
// pull does) under ref "merged" and returns its root dirtree and dirmeta.
func mergeTree(t *testing.T, r *ostree.Repo, layers []string) (tree, meta string, err error) {
	t.Helper()
	commit, err := WriteImageMergeCommit(context.Background(), r, "merged", ImageMergeOptions{Layers: layers})
	if err != nil {
		return "", "", err
	}
	c, err := r.ReadCommit(commit)
	if err != nil {
		t.Fatal(err)
	}
	return c.RootTree, c.RootMeta, nil
}

// importLayers imports each layer and returns the layer commits.
func importLayers(t *testing.T, r *ostree.Repo, layers [][]ent) []string {
	t.Helper()
	var commits []string
	for _, l := range layers {
		commits = append(commits, importEntries(t, r, l).Commit)
	}
	return commits
}

// TestMergeCheckout merges the layers with WriteImageMergeCommit in each mode,
// requires a clean fsck, checks the ref, and requires `ostree checkout` of
// the merge commit to give exactly mergedTree: contents, modes, symlink
// targets, hard links sharing an inode (bare modes), owners and xattrs
// (bare, checked out as root).
func TestMergeCheckout(t *testing.T) {
	testtool.Ostree(t)
	for _, mode := range []ostree.Mode{ostree.ModeArchive, ostree.ModeBareUser, ostree.ModeBare} {
		t.Run(string(mode), func(t *testing.T) {
			asRoot := mode == ostree.ModeBare
			if asRoot && os.Geteuid() != 0 {
				t.Skip("bare repositories need root")
			}
			r := newRepo(t, mode)
			layers := importLayers(t, r, mergeLayers())
			md := gvariant.VarDict{{Key: "ostree.manifest-digest", Value: gvariant.NewString("sha256:" + strings.Repeat("a", 64))}}
			ts := time.Unix(1700000000, 0)
			const ref = "ostree/container/image/test"
			commit, err := WriteImageMergeCommit(context.Background(), r, ref, ImageMergeOptions{Layers: layers, Metadata: md, Timestamp: ts})
			if err != nil {
				t.Fatal(err)
			}
			testtool.RunOstree(t, "fsck", "--repo="+r.Path())
			if got, err := r.ResolveRef(ref); err != nil || got != commit {
				t.Fatalf("ref %s = %s, %v; want %s", ref, got, err, commit)
			}
			c, err := r.ReadCommit(commit)
			if err != nil {
				t.Fatal(err)
			}
			if c.Parent != "" || !c.Timestamp.Equal(ts) || len(c.Metadata) != 1 {
				t.Errorf("commit %+v", c)
			}
			out := filepath.Join(t.TempDir(), "co")
			args := []string{"checkout", "--repo=" + r.Path(), commit, out}
			if !asRoot {
				args = append(args, "-U")
			}
			testtool.RunOstree(t, args...)
			checkTree(t, out, mergedTree(), asRoot)
			if mode != ostree.ModeArchive {
				// Checkouts of bare repositories hard-link objects, so the
				// links of a hard-linked pair share an inode.
				if ino(t, out, "usr/bin/b") != ino(t, out, "usr/bin/b2") {
					t.Error("usr/bin/b and usr/bin/b2 are not hard links")
				}
			}
		})
	}
}

// TestMergeLikeOstreeWhiteouts compares the merge with libostree's own
// whiteout processing: `ostree checkout --union --whiteouts` of each layer
// in turn (how ostree-ext merges) must give the same paths, contents and
// symlink targets. (A layer replacing a file by a directory is left out:
// libostree's union checkout fails on it.)
func TestMergeLikeOstreeWhiteouts(t *testing.T) {
	testtool.Ostree(t)
	var input [][]ent
	for _, l := range mergeLayers() {
		input = append(input, slices.DeleteFunc(l, func(e ent) bool { return strings.Contains(e.name, "becomes-") }))
	}
	compareWithLibostree(t, input)
}

// TestMergeRemappedWhiteouts: whiteouts go through the same path rules as
// every entry (etc to usr/etc, var to usr/share/factory/var, other top
// levels dropped), so what they delete is what they delete in ostree-ext,
// whose layer import applies those rules and whose merge is libostree's
// union checkout with whiteouts.
func TestMergeRemappedWhiteouts(t *testing.T) {
	testtool.Ostree(t)
	base := []ent{
		reg("usr/bin/a", 0o755, "a"), reg("etc/passwd", 0o644, "root"), reg("etc/group", 0o644, "root"),
		reg("etc/ssh/sshd_config", 0o600, "x"), reg("var/lib/x", 0o644, "x"), reg("var/log/y", 0o644, "y"),
	}
	for _, tt := range []struct {
		name  string
		layer []ent
	}{
		{"etc/.wh.passwd deletes /etc/passwd", []ent{reg("etc/.wh.passwd", 0o644, "")}},
		{"etc/ssh/.wh..wh..opq empties /etc/ssh", []ent{reg("etc/ssh/.wh..wh..opq", 0o644, ""), reg("etc/ssh/new", 0o644, "n")}},
		{"usr/.wh.etc deletes all of /etc", []ent{reg("usr/.wh.etc", 0o644, "")}},
		{"var/.wh.lib deletes /var/lib", []ent{reg("var/.wh.lib", 0o644, "")}},
		{"usr/.wh..wh..opq empties usr, /etc and /var", []ent{reg("usr/.wh..wh..opq", 0o644, ""), reg("usr/bin/b", 0o755, "b")}},
		{"top-level whiteouts are dropped", []ent{reg(".wh.etc", 0o644, ""), reg(".wh.usr", 0o644, ""), reg(".wh..wh..opq", 0o644, "")}},
	} {
		t.Run(tt.name, func(t *testing.T) { compareWithLibostree(t, [][]ent{base, tt.layer}) })
	}
}

// compareWithLibostree imports the layers, merges them, and requires the
// merge commit's checkout to equal libostree's union checkout of the layer
// commits with whiteouts.
func compareWithLibostree(t *testing.T, input [][]ent) {
	t.Helper()
	r := newRepo(t, ostree.ModeBareUser)
	layers := importLayers(t, r, input)
	commit, err := WriteImageMergeCommit(context.Background(), r, "merged", ImageMergeOptions{Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(t.TempDir(), "ours")
	testtool.RunOstree(t, "checkout", "-U", "--repo="+r.Path(), commit, ours)
	theirs := filepath.Join(t.TempDir(), "theirs")
	for i, l := range layers {
		args := []string{"checkout", "-U", "--union", "--repo=" + r.Path(), l, theirs}
		if i > 0 {
			args = append(args, "--whiteouts")
		}
		testtool.RunOstree(t, args...)
	}
	a, b := snapshot(t, ours), snapshot(t, theirs)
	if !maps.Equal(a, b) {
		for _, p := range slices.Sorted(maps.Keys(a)) {
			if a[p] != b[p] {
				t.Errorf("%s: ours %q, libostree's %q", p, a[p], b[p])
			}
		}
		for p := range b {
			if _, ok := a[p]; !ok {
				t.Errorf("%s: only in libostree's (%q)", p, b[p])
			}
		}
	}
}

// TestMergeLowerDirMeta: a directory keeps the lowest layer's metadata, as
// ostree-ext's union checkout does (overlayfs would show the highest's).
func TestMergeLowerDirMeta(t *testing.T) {
	r := newRepo(t, ostree.ModeBareUser)
	tree, meta, err := mergeTree(t, r, importLayers(t, r, mergeLayers()))
	if err != nil {
		t.Fatal(err)
	}
	root, err := r.OpenMutableTree(tree, meta)
	if err != nil {
		t.Fatal(err)
	}
	d := root
	for _, name := range []string{"usr", "share", "meta"} {
		if _, d, err = d.Lookup(name); err != nil || d == nil {
			t.Fatalf("lookup %s: %v", name, err)
		}
	}
	data, err := r.ReadMetadataObject(d.MetaChecksum(), ostree.ObjectDirMeta)
	if err != nil {
		t.Fatal(err)
	}
	uid, _, mode, _, err := ostree.DecodeDirMeta(data)
	if err != nil || mode != ostree.ModeDir|0o755 || uid != 0 {
		t.Errorf("usr/share/meta mode %#o uid %d (%v), want the lowest layer's 0755 and 0", mode, uid, err)
	}
}

// TestMergeReusesUnchangedTrees: a layer merged over nothing, with no
// whiteouts, is its own tree; merging the same layers twice writes no new
// object.
func TestMergeReusesUnchangedTrees(t *testing.T) {
	r := newRepo(t, ostree.ModeArchive)
	layers := importLayers(t, r, mergeLayers())
	c, err := r.ReadCommit(layers[0])
	if err != nil {
		t.Fatal(err)
	}
	tree, meta, err := mergeTree(t, r, layers[:1])
	if err != nil || tree != c.RootTree || meta != c.RootMeta {
		t.Errorf("single clean layer merged to %s %s (%v), want its own %s %s", tree, meta, err, c.RootTree, c.RootMeta)
	}
	first, _, err := mergeTree(t, r, layers)
	if err != nil {
		t.Fatal(err)
	}
	before := objectFiles(t, r)
	second, _, err := mergeTree(t, r, layers)
	if err != nil || second != first {
		t.Fatalf("second merge %s (%v), first %s", second, err, first)
	}
	if after := objectFiles(t, r); !maps.Equal(before, after) {
		t.Error("second merge wrote objects")
	}
}

// TestMergeErrors: bad inputs give typed errors and set no ref.
func TestMergeErrors(t *testing.T) {
	r := newRepo(t, ostree.ModeArchive)
	layers := importLayers(t, r, mergeLayers()[:1])
	ctx := context.Background()
	tests := []struct {
		name   string
		layers []string
		want   error
	}{
		{"no layers", nil, ErrInvalidOptions},
		{"unknown ref", []string{"no/such/ref"}, ostree.ErrRefNotFound},
		{"missing commit", []string{strings.Repeat("ab", 32)}, ostree.ErrRefNotFound},
		{"missing second layer", []string{layers[0], strings.Repeat("cd", 32)}, ostree.ErrRefNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := WriteImageMergeCommit(ctx, r, "merged", ImageMergeOptions{Layers: tt.layers})
			if !errors.Is(err, tt.want) {
				t.Fatalf("WriteImageMergeCommit: %v, want %v", err, tt.want)
			}
			if _, err := r.ResolveRef("merged"); !errors.Is(err, ostree.ErrRefNotFound) {
				t.Errorf("ref set after a failed merge: %v", err)
			}
		})
	}
	// A dirtree gone from the repository is reported, not papered over.
	c, _ := r.ReadCommit(layers[0])
	if err := os.Remove(r.ObjectPath(c.RootTree, ostree.ObjectDirTree)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mergeTree(t, r, layers); !errors.Is(err, ostree.ErrObjectNotFound) {
		t.Errorf("merge over a missing dirtree: %v", err)
	}
}

// checkTree requires the directory out to hold exactly want.
func checkTree(t *testing.T, out string, want map[string]node, owners bool) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == out {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		seen[rel] = true
		w, ok := want[rel]
		if !ok {
			t.Errorf("unexpected %s in the checkout", rel)
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if info.Mode().Type() != w.kind {
			t.Errorf("%s: type %v, want %v", rel, info.Mode().Type(), w.kind)
			return nil
		}
		switch w.kind {
		case fs.ModeSymlink:
			if target, _ := os.Readlink(p); target != w.content {
				t.Errorf("%s: target %q, want %q", rel, target, w.content)
			}
			return nil
		case 0:
			if data, _ := os.ReadFile(p); string(data) != w.content {
				t.Errorf("%s: content %q, want %q", rel, data, w.content)
			}
		}
		if info.Mode().Perm() != w.perm {
			t.Errorf("%s: mode %v, want %v", rel, info.Mode().Perm(), w.perm)
		}
		if owners {
			var st unix.Stat_t
			unix.Lstat(p, &st)
			if st.Uid != w.uid {
				t.Errorf("%s: uid %d, want %d", rel, st.Uid, w.uid)
			}
			for name, value := range w.xattrs {
				buf := make([]byte, 256)
				n, err := unix.Lgetxattr(p, name, buf)
				if err != nil || string(buf[:n]) != value {
					t.Errorf("%s: xattr %s = %q (%v), want %q", rel, name, buf[:max(n, 0)], err, value)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("%s missing from the checkout", p)
		}
	}
}

func ino(t *testing.T, root, rel string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, rel), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// snapshot maps each path under root to its type and content or target.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.IsDir():
			m[rel] = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			m[rel] = "-> " + target
		default:
			data, _ := os.ReadFile(p)
			m[rel] = string(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

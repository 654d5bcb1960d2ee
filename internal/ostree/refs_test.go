package ostree

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/osimage/updatecache/internal/testtool"
)

func TestRefsInteropWithOstree(t *testing.T) {
	ctx := context.Background()
	r := ostreeRepo(t)
	c1 := ostreeCommit(t, r, map[string]string{"a": "1"}, "-b", "foo/bar")
	c2 := ostreeCommit(t, r, map[string]string{"a": "2"}, "-b", "baz")
	testtool.RunOstree(t, "refs", "--repo="+r.Path(), "--alias", "--create=x/al", "foo/bar")

	imageRef, err := ImageRefName("docker://quay.io/fedora/fedora-coreos:stable")
	if err != nil {
		t.Fatal(err)
	}
	for ref, sum := range map[string]string{
		"mine":          c2,
		"origin:stable": c1,
		"origin:a/b":    c2,
		imageRef:        c1,
		"foo/bar":       c2, // replaces ostree's ref
	} {
		if err := r.SetRef(ctx, ref, sum); err != nil {
			t.Fatalf("SetRef(%q): %v", ref, err)
		}
		if got := revParse(t, r, ref); got != sum {
			t.Errorf("ostree rev-parse %q = %s after SetRef to %s", ref, got, sum)
		}
	}

	resolve := []struct{ ref, want string }{
		{"baz", c2},
		{"foo/bar", c2},
		{"x/al", c2}, // alias follows its target
		{"origin:stable", c1},
		{"origin/stable", c1}, // libostree falls back to refs/remotes
		{imageRef, c1},
		{c1, c1}, // an existing commit checksum resolves to itself
	}
	for _, tc := range resolve {
		got, err := r.ResolveRef(tc.ref)
		if err != nil || got != tc.want {
			t.Errorf("ResolveRef(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
		}
		if theirs := revParse(t, r, tc.ref); theirs != tc.want {
			t.Errorf("ostree rev-parse %q = %q; want %q", tc.ref, theirs, tc.want)
		}
	}

	list := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"baz", "foo/bar", "mine", imageRef, "x/al"}},
		{"foo", []string{"foo/bar"}},
		{"fo", []string{"foo/bar"}},
		{"foo/", []string{"foo/bar"}},
		{"foo/b", []string{"foo/bar"}},
		{"ostree/container/image/", []string{imageRef}},
		{"m", []string{"mine"}},
		{"nothing", nil},
		{"no/such/dir/", nil},
		{"baz/", nil}, // a ref, not a directory
	}
	for _, tc := range list {
		got, err := r.ListRefs(tc.prefix)
		if err != nil {
			t.Fatalf("ListRefs(%q): %v", tc.prefix, err)
		}
		if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, tc.want) {
			t.Errorf("ListRefs(%q) = %v; want %v", tc.prefix, names, tc.want)
		}
	}
	all, _ := r.ListRefs("")
	// ostree lists the same local refs (it prints remote refs too, ours don't).
	var theirs []string
	for _, l := range strings.Fields(testtool.RunOstree(t, "refs", "--repo="+r.Path())) {
		if !strings.Contains(l, ":") {
			theirs = append(theirs, l)
		}
	}
	slices.Sort(theirs)
	if ours := slices.Sorted(maps.Keys(all)); !slices.Equal(ours, theirs) {
		t.Errorf("ListRefs = %v; ostree refs = %v", ours, theirs)
	}
	for name, sum := range all {
		if theirs := revParse(t, r, name); theirs != sum {
			t.Errorf("ListRefs[%q] = %s; ostree rev-parse says %s", name, sum, theirs)
		}
	}

	// SetRef leaves "checksum\n", 0644, and no temporary file.
	p := filepath.Join(r.Path(), "refs", "heads", "mine")
	if data, err := os.ReadFile(p); err != nil || string(data) != c2+"\n" {
		t.Errorf("ref file = %q, %v", data, err)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("ref file mode: %v, %v", st, err)
	}
	assertNoTempFiles(t, r.Path())

	// Deleting, with ostree seeing the result.
	for _, ref := range []string{"mine", "origin:stable"} {
		if err := r.DeleteRef(ctx, ref); err != nil {
			t.Fatalf("DeleteRef(%q): %v", ref, err)
		}
		if _, err := r.ResolveRef(ref); !errors.Is(err, ErrRefNotFound) {
			t.Errorf("ResolveRef(%q) after delete: %v; want ErrRefNotFound", ref, err)
		}
		if err := testtool.OstreeCommand(t, "rev-parse", "--repo="+r.Path(), ref).Run(); err == nil {
			t.Errorf("ostree rev-parse %q succeeds after DeleteRef", ref)
		}
		if err := r.DeleteRef(ctx, ref); !errors.Is(err, ErrRefNotFound) {
			t.Errorf("second DeleteRef(%q): %v; want ErrRefNotFound", ref, err)
		}
	}
	// A ref cannot live where a directory of refs is, nor below a ref.
	if err := r.SetRef(ctx, "foo", c1); !errors.Is(err, ErrInvalidRef) {
		t.Errorf("SetRef over a ref directory: %v; want ErrInvalidRef", err)
	}
	if err := r.SetRef(ctx, "baz/sub", c1); err == nil {
		t.Error("SetRef below an existing ref succeeded")
	}
	if got, err := r.ResolveRef("baz"); err != nil || got != c2 {
		t.Errorf("baz after the refused SetRef = %s, %v", got, err)
	}
	// A long ref component (up to NAME_MAX) works, as with libostree.
	long := "l/" + strings.Repeat("x", 255)
	if err := r.SetRef(ctx, long, c1); err != nil {
		t.Errorf("SetRef with a 255-byte component: %v", err)
	} else if got := revParse(t, r, long); got != c1 {
		t.Errorf("ostree rev-parse of the long ref = %s", got)
	}
	if err := r.DeleteRef(ctx, "foo"); !errors.Is(err, ErrRefNotFound) {
		t.Errorf("DeleteRef of a ref directory: %v; want ErrRefNotFound", err)
	}
}

func assertNoTempFiles(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

func TestRefErrors(t *testing.T) {
	ctx := context.Background()
	r, err := Create(filepath.Join(t.TempDir(), "repo"), ModeArchive)
	if err != nil {
		t.Fatal(err)
	}
	missing := strings.Repeat("ab", 32)
	for _, ref := range []string{"", "/a", "a/", "a//b", "..", "a/../b", "a/./b", ".", "a b", "é", "rem ote:x", ":x", "x:", "a:b:c", "-r:x", "a\x00b", "../../etc/passwd"} {
		if _, err := r.ResolveRef(ref); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("ResolveRef(%q): %v; want ErrInvalidRef", ref, err)
		}
		if err := r.SetRef(ctx, ref, missing); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("SetRef(%q): %v; want ErrInvalidRef", ref, err)
		}
		if err := r.DeleteRef(ctx, ref); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("DeleteRef(%q): %v; want ErrInvalidRef", ref, err)
		}
	}
	for _, ref := range []string{"nope", "origin:nope", missing} {
		if _, err := r.ResolveRef(ref); !errors.Is(err, ErrRefNotFound) {
			t.Errorf("ResolveRef(%q): %v; want ErrRefNotFound", ref, err)
		}
	}
	if err := r.SetRef(ctx, "x", missing); !errors.Is(err, ErrObjectNotFound) {
		t.Errorf("SetRef to a missing commit: %v; want ErrObjectNotFound", err)
	}
	for _, sum := range []string{"", "abc", strings.ToUpper(missing), missing + "0"} {
		if err := r.SetRef(ctx, "x", sum); !errors.Is(err, ErrInvalidChecksum) {
			t.Errorf("SetRef(x, %q): %v; want ErrInvalidChecksum", sum, err)
		}
	}
	for _, prefix := range []string{"../", "../../etc/", "a//", "/"} {
		if _, err := r.ListRefs(prefix); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("ListRefs(%q): %v; want ErrInvalidRef", prefix, err)
		}
	}
}

func TestRefFileCorruption(t *testing.T) {
	r, err := Create(filepath.Join(t.TempDir(), "repo"), ModeArchive)
	if err != nil {
		t.Fatal(err)
	}
	heads := filepath.Join(r.Path(), "refs", "heads")
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte(strings.Repeat("ab", 32)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func(p string) error
	}{
		{"not a checksum", func(p string) error { return os.WriteFile(p, []byte("hello\n"), 0o644) }},
		{"upper-case checksum", func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("AB", 32)+"\n"), 0o644) }},
		{"too long", func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("a", 4096)), 0o644) }},
		{"alias escaping refs/heads", func(p string) error { return os.Symlink("../../../../../"+outside, p) }},
		{"absolute alias", func(p string) error { return os.Symlink(outside, p) }},
		{"alias loop", func(p string) error { return os.Symlink("bad", p) }},
		{"fifo", func(p string) error { return mkfifo(p) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(heads, "bad")
			os.Remove(p)
			if err := tc.setup(p); err != nil {
				t.Fatal(err)
			}
			if _, err := r.ResolveRef("bad"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("ResolveRef: %v; want ErrCorrupt", err)
			}
			if _, err := r.ListRefs(""); !errors.Is(err, ErrCorrupt) {
				t.Errorf("ListRefs: %v; want ErrCorrupt", err)
			}
		})
	}
}

// TestRefDirectorySymlinks: a ref directory that is a symbolic link (to a
// directory outside the repository, say) is refused for reading, listing,
// writing and deleting refs, and nothing is written through it.
func TestRefDirectorySymlinks(t *testing.T) {
	ctx := context.Background()
	for _, dir := range []string{"ostree", "ostree/container/blob"} {
		t.Run(dir, func(t *testing.T) {
			r := ostreeRepo(t)
			sum := ostreeCommit(t, r, map[string]string{"a": "1"}, "-b", "kept")
			outside := t.TempDir()
			// What the link leads to holds a ref, so reading through it would succeed.
			if err := os.MkdirAll(filepath.Join(outside, "container/blob"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "container/blob/x"), []byte(sum+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "x"), []byte(sum+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(r.Path(), "refs/heads", dir)
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			target := outside
			if dir != "ostree" {
				target = filepath.Join(outside, "container/blob")
			}
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			before := treeContents(t, outside)

			if _, err := r.ResolveRef("ostree/container/blob/x"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("ResolveRef through the link: %v, want ErrCorrupt", err)
			}
			if _, err := r.ListRefs("ostree/container/"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("ListRefs through the link: %v, want ErrCorrupt", err)
			}
			if err := r.SetRef(ctx, "ostree/container/blob/new", sum); !errors.Is(err, ErrCorrupt) {
				t.Errorf("SetRef through the link: %v, want ErrCorrupt", err)
			}
			if err := r.DeleteRef(ctx, "ostree/container/blob/x"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("DeleteRef through the link: %v, want ErrCorrupt", err)
			}
			if _, err := r.Prune(ctx, PruneOptions{DryRun: true}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Prune: %v, want ErrCorrupt", err)
			}
			if after := treeContents(t, outside); !slices.Equal(before, after) {
				t.Errorf("the directory the link leads to changed:\n%v\n%v", before, after)
			}
		})
	}
}

// treeContents lists the files below dir with their contents.
func treeContents(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		out = append(out, p+"="+string(data))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

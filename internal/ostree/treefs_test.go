package ostree

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/osimage/updatecache/internal/testtool"
)

// TestTreeFS commits a directory with the real tool and reads the commit
// through TreeFS: fstest.TestFS finds it consistent, files read as in the
// directory, and symbolic links resolve within the tree (relative, absolute
// from the tree's root, through directories, ".." stopping at the root),
// with ENOTDIR through a file, ELOOP for a loop and ErrNotExist for a
// dangling link.
func TestTreeFS(t *testing.T) {
	testtool.Ostree(t)
	src := t.TempDir()
	for p, content := range map[string]string{
		"usr/etc/selinux/config":      "SELINUX=enforcing\n",
		"usr/etc/selinux/t/policy.33": "policy",
		"usr/bin/tool":                "tool\n",
		"usr/lib/os-release":          "NAME=x\n",
		"top":                         "top\n",
	} {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(src, "usr/bin/tool"), 0o755|fs.ModeSetuid)
	links := func(links map[string]string) {
		for link, target := range links {
			if err := os.Symlink(target, filepath.Join(src, link)); err != nil {
				t.Fatal(err)
			}
		}
	}
	links(map[string]string{
		"etc":                   "usr/etc",           // a relative link to a directory
		"usr/etc/os-release":    "../lib/os-release", // up, then down
		"usr/bin/abs":           "/usr/lib/os-release",
		"usr/bin/escape":        "../../../../top", // ".." stops at the root
		"usr/lib/etc-via-abs":   "/etc/selinux",
		"usr/lib/dot-slashes":   ".//./os-release",
		"usr/lib/to-root":       "/",
		"usr/etc/selinux/again": "../../../etc/selinux/config",
	})
	r := ostreeRepo(t)
	treeFS := func(commit string) fs.FS {
		c, err := r.ReadCommit(commit)
		if err != nil {
			t.Fatal(err)
		}
		root, err := r.OpenMutableTree(c.RootTree, c.RootMeta)
		if err != nil {
			t.Fatal(err)
		}
		return r.TreeFS(root)
	}
	// TestFS opens every entry (the broken links come next).
	if err := fstest.TestFS(treeFS(ostreeCommitDir(t, r, src, "--orphan", "-s", "s")),
		"usr/etc/selinux/config", "usr/bin/tool", "usr/lib/os-release", "top", "empty", "etc"); err != nil {
		t.Fatal(err)
	}
	links(map[string]string{
		"usr/bin/dangling":     "/nonexistent",
		"usr/bin/loop":         "loop",
		"usr/lib/through-file": "/top/x",
	})
	fsys := treeFS(ostreeCommitDir(t, r, src, "--orphan", "-s", "s"))
	for name, want := range map[string]string{
		"etc/selinux/config":          "SELINUX=enforcing\n",
		"usr/etc/os-release":          "NAME=x\n",
		"usr/bin/abs":                 "NAME=x\n",
		"usr/bin/escape":              "top\n",
		"usr/lib/etc-via-abs/config":  "SELINUX=enforcing\n",
		"usr/lib/dot-slashes":         "NAME=x\n",
		"usr/lib/to-root/top":         "top\n",
		"usr/etc/selinux/again":       "SELINUX=enforcing\n",
		"etc/selinux/t/policy.33":     "policy",
		"usr/lib/to-root/usr/bin/abs": "NAME=x\n",
	} {
		data, err := fs.ReadFile(fsys, name)
		if err != nil || string(data) != want {
			t.Errorf("ReadFile(%s) = %q, %v; want %q", name, data, err, want)
		}
	}
	for name, want := range map[string]error{
		"usr/bin/dangling":     fs.ErrNotExist,
		"usr/bin/loop":         syscall.ELOOP,
		"usr/lib/through-file": syscall.ENOTDIR,
		"top/x":                syscall.ENOTDIR,
		"missing":              fs.ErrNotExist,
		"/top":                 fs.ErrInvalid,
		"usr/../top":           fs.ErrInvalid,
	} {
		if _, err := fsys.Open(name); !errors.Is(err, want) {
			t.Errorf("Open(%s): %v, want %v", name, err, want)
		}
	}
	for name, want := range map[string]fs.FileMode{
		"usr/bin/tool":    0o755 | fs.ModeSetuid,
		"empty":           fs.ModeDir | 0o700,
		"etc":             fs.ModeDir | 0o755,
		"usr/etc/selinux": fs.ModeDir | 0o755,
	} {
		if info, err := fs.Stat(fsys, name); err != nil || info.Mode() != want {
			t.Errorf("Stat(%s): %v, %v; want mode %v", name, info, err, want)
		}
	}
	if info, err := fs.Lstat(fsys, "etc"); err != nil || info.Mode().Type() != fs.ModeSymlink {
		t.Errorf("Lstat(etc): %v, %v; want a symlink", info, err)
	}
	if target, err := fs.ReadLink(fsys, "usr/bin/escape"); err != nil || target != "../../../../top" {
		t.Errorf("ReadLink(usr/bin/escape) = %q, %v", target, err)
	}
	if _, err := fs.ReadLink(fsys, "top"); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("ReadLink of a file: %v", err)
	}
	if _, err := fs.ReadFile(fsys, "usr"); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("ReadFile of a directory: %v", err)
	}
}

package ostree

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/testtool"
)

// roRepoEnv names the read-only repository when this test binary runs
// itself inside a mount namespace.
const roRepoEnv = "UPDATECACHE_OSTREE_TEST_RO_REPO"

// TestReadOnlyRepository checks that every write to a read-only repository
// fails with ErrReadOnly and changes nothing, while reads work. As root
// (where permissions do not stop writes) the repository is made read-only
// with a read-only bind mount in a private mount namespace, re-running this
// test there; otherwise its directories are made unwritable.
func TestReadOnlyRepository(t *testing.T) {
	if dir := os.Getenv(roRepoEnv); dir != "" {
		checkReadOnly(t, dir, true)
		return
	}
	r := ostreeRepo(t)
	ostreeCommit(t, r, map[string]string{"a": "1"}, "-b", "main", "--add-detached-metadata-string=k=v")
	if os.Geteuid() != 0 {
		// Owned by this user: only its mode makes it unwritable.
		if err := os.Chmod(filepath.Join(r.Path(), ".lock"), 0o444); err != nil {
			t.Fatal(err)
		}
		setWritable(t, r.Path(), false)
		defer setWritable(t, r.Path(), true)
		checkReadOnly(t, r.Path(), false)
		return
	}
	unshare := testtool.Need(t, "unshare", "util-linux")
	mountRO := `mount --bind -o ro "$1" "$1"`
	if out, err := exec.Command(unshare, "-m", "--propagation", "private", "sh", "-c", mountRO, "sh", r.Path()).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot make a read-only bind mount here (%v: %s); the read-only behaviour is then untested", err, out)
	}
	cmd := exec.Command(unshare, "-m", "--propagation", "private", "sh", "-c",
		mountRO+` && exec "$2" -test.run='^TestReadOnlyRepository$' -test.count=1 -test.v`, "sh", r.Path(), os.Args[0])
	cmd.Env = append(os.Environ(), roRepoEnv+"="+r.Path())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestReadOnlyRepository") {
		t.Fatalf("read-only run in a mount namespace: %v\n%s", err, out)
	}
}

// setWritable adds or removes write permission on every directory under
// root.
func setWritable(t *testing.T, root string, writable bool) {
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			mode := os.FileMode(0o555)
			if writable {
				mode = 0o755
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Error(err)
			}
		}
		return nil
	})
}

func checkReadOnly(t *testing.T, dir string, mounted bool) {
	ctx := context.Background()
	before := listTree(t, dir)
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.lockTimeout = 100 * time.Millisecond
	sum, err := r.ResolveRef("main")
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.ReadCommit(sum)
	if err != nil {
		t.Fatal(err)
	}
	if md, ok, err := r.ReadDetachedMetadata(sum); err != nil || !ok || len(md) != 1 {
		t.Errorf("ReadDetachedMetadata = %v, %v, %v", md, ok, err)
	}
	if refs, err := r.ListRefs(""); err != nil || refs["main"] != sum {
		t.Errorf("ListRefs = %v, %v", refs, err)
	}
	// A shared lock needs only read access, so a reader holding it (a dry
	// run of prune) works.
	if unlock, err := r.Lock(ctx, LockShared); err != nil {
		t.Errorf("Lock(Shared): %v", err)
	} else {
		unlock()
	}
	if st, err := r.Prune(ctx, PruneOptions{DryRun: true}); err != nil || st.ObjectsKept == 0 {
		t.Errorf("Prune(DryRun) = %v, %v", st, err)
	}

	dt, _ := EncodeDirTree([]DirTreeFile{{"new", strings.Repeat("ab", 32)}}, nil)
	set := func(md gvariant.VarDict) (gvariant.VarDict, error) {
		md.Set("new", gvariant.NewString("x"))
		return md, nil
	}
	writes := map[string]func() error{
		"Lock(Exclusive)": func() error { _, err := r.Lock(ctx, LockExclusive); return err },
		"SetRef":          func() error { return r.SetRef(ctx, "other", sum) },
		"DeleteRef":       func() error { return r.DeleteRef(ctx, "main") },
		"WriteMetadataObject": func() error {
			_, err := r.WriteMetadataObject(ctx, ObjectDirTree, dt)
			return err
		},
		"WriteCommit": func() error {
			_, err := r.WriteCommit(ctx, &Commit{Subject: "x", Timestamp: time.Unix(9, 0), RootTree: c.RootTree, RootMeta: c.RootMeta})
			return err
		},
		"WriteDetachedMetadata":  func() error { return r.WriteDetachedMetadata(ctx, sum, nil) },
		"Prune":                  func() error { _, err := r.Prune(ctx, PruneOptions{}); return err },
		"UpdateDetachedMetadata": func() error { _, err := r.UpdateDetachedMetadata(ctx, sum, set); return err },
		"Create": func() error {
			_, err := Create(filepath.Join(dir, "sub"), ModeArchive)
			return err
		},
	}
	for name, write := range writes {
		err := write()
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s: %v; want ErrReadOnly", name, err)
		}
		if mounted && !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v; want it to wrap EROFS", name, err)
		}
	}
	if after := listTree(t, dir); after != before {
		t.Errorf("the read-only repository changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

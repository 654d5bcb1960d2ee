package ostree

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/testtool"
)

// blobRef is an ostree-ext-style layer ref, nested like the real ones.
const blobRef = "ostree/container/blob/sha256_3A_0123abcd"

// pruneFixture is a repository made by the real tool holding: main with
// two commits (main1 is main2's parent), a remote ref, a layer ref, a ref
// "other" sharing content with main, an unreferenced commit with detached
// metadata (orphan) and the commit of a deleted ref (gone, also with
// detached metadata). Content "shared" is in every commit.
type pruneFixture struct {
	r                                               *Repo
	main1, main2, remote, blob, other, orphan, gone string
}

func newPruneFixture(t *testing.T, mode string) *pruneFixture {
	t.Helper()
	r, err := Open(ostreeInit(t, mode))
	if err != nil {
		t.Fatal(err)
	}
	const shared = "shared by every commit"
	f := &pruneFixture{r: r}
	f.main1 = ostreeCommit(t, r, map[string]string{"shared": shared, "dir/same": "in main's history", "main1-only": "1"}, "-b", "main", "-s", "main1")
	f.main2 = ostreeCommit(t, r, map[string]string{"shared": shared, "dir/same": "in main's history", "main2-only": "2"}, "-b", "main", "-s", "main2")
	f.remote = ostreeCommit(t, r, map[string]string{"remote-only": "r"}, "--orphan", "-s", "remote")
	testtool.RunOstree(t, "refs", "--repo="+r.Path(), "--create=origin:main", f.remote)
	f.blob = ostreeCommit(t, r, map[string]string{"shared": shared, "layer/file": "layer"}, "-b", blobRef, "-s", "blob")
	f.other = ostreeCommit(t, r, map[string]string{"shared": shared, "dir/same": "in main's history", "other-only": "o"}, "-b", "other", "-s", "other")
	f.orphan = ostreeCommit(t, r, map[string]string{"shared": shared, "orphan-only": "x"}, "--orphan", "-s", "orphan", "--add-detached-metadata-string=k=v")
	f.gone = ostreeCommit(t, r, map[string]string{"shared": shared, "gone-only": "g", "gonedir/deep/f": "deep"}, "-b", "gone", "-s", "gone", "--add-detached-metadata-string=k=v")
	testtool.RunOstree(t, "refs", "--repo="+r.Path(), "--delete", "gone")
	return f
}

// lsObjects lists, with the real tool, every object a commit needs: the
// commit, its .commitmeta if any, and the dirtrees, dirmetas and content
// objects `ostree ls -R -C` names, as paths relative to the repository.
func lsObjects(t *testing.T, r *Repo, commits ...string) map[string]bool {
	t.Helper()
	content := ObjectFile
	if r.Mode() == ModeArchive {
		content = ObjectFileZ
	}
	rel := func(sum string, typ ObjectType) string {
		p, err := filepath.Rel(r.Path(), r.ObjectPath(sum, typ))
		if err != nil || p == "" {
			t.Fatalf("object path of %q: %v", sum, err)
		}
		return p
	}
	objs := map[string]bool{}
	for _, c := range commits {
		objs[rel(c, ObjectCommit)] = true
		if _, ok, err := r.ReadDetachedMetadata(c); err != nil {
			t.Fatal(err)
		} else if ok {
			objs[rel(c, ObjectCommitMeta)] = true
		}
		for _, line := range strings.Split(strings.TrimSpace(testtool.RunOstree(t, "ls", "--repo="+r.Path(), "-R", "-C", c)), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 6 {
				t.Fatalf("ostree ls line %q", line)
			}
			if fields[0][0] == 'd' {
				objs[rel(fields[4], ObjectDirTree)] = true
				objs[rel(fields[5], ObjectDirMeta)] = true
			} else {
				objs[rel(fields[4], content)] = true
			}
		}
	}
	return objs
}

// objectFiles maps every file under objects/ to its size.
func objectFiles(t *testing.T, repo string) map[string]int64 {
	t.Helper()
	files := map[string]int64{}
	err := filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		files[rel] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// repoSnapshot records every directory and file under the repository's
// objects/, refs/ and state/ (mode, size, content hash or link target),
// for byte-for-byte comparisons.
func repoSnapshot(t *testing.T, repo string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	for _, sub := range []string{"objects", "refs", "state"} {
		err := filepath.WalkDir(filepath.Join(repo, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			desc := info.Mode().String()
			switch {
			case info.Mode().IsRegular():
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				desc += fmt.Sprintf(" %d %x", len(data), sha256.Sum256(data))
			case info.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				desc += " -> " + target
			}
			rel, _ := filepath.Rel(repo, p)
			snap[rel] = desc
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

func checkSnapshot(t *testing.T, repo string, before map[string]string, what string) {
	t.Helper()
	after := repoSnapshot(t, repo)
	for p, d := range before {
		if after[p] != d {
			t.Errorf("%s: %s changed: %q -> %q", what, p, d, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s appeared", what, p)
		}
	}
}

// checkObjectSet compares the object files in the repository with want.
func checkObjectSet(t *testing.T, repo string, want map[string]bool) {
	t.Helper()
	have := objectFiles(t, repo)
	for p := range want {
		if _, ok := have[p]; !ok {
			t.Errorf("needed object %s is missing", p)
		}
	}
	for p := range have {
		if !want[p] {
			t.Errorf("unneeded object %s is still there", p)
		}
	}
}

var (
	totalRe   = regexp.MustCompile(`(?m)^Total objects: (\d+)$`)
	deletedRe = regexp.MustCompile(`(?m)^(?:Deleted|Would delete:) (\d+) objects`)
)

// libostreePrune runs `ostree prune --refs-only` (with --no-prune when
// dryRun) and returns the totals it prints: "Total objects: N", then
// "No unreachable objects", "Deleted N objects, ..." or "Would delete: N
// objects, ...".
func libostreePrune(t *testing.T, repo string, dryRun bool) (total, pruned int) {
	t.Helper()
	args := []string{"prune", "--repo=" + repo, "--refs-only"}
	if dryRun {
		args = append(args, "--no-prune")
	}
	out := testtool.RunOstree(t, args...)
	m := totalRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ostree prune printed no total:\n%s", out)
	}
	total, _ = strconv.Atoi(m[1])
	if m := deletedRe.FindStringSubmatch(out); m != nil {
		pruned, _ = strconv.Atoi(m[1])
	} else if !strings.Contains(out, "No unreachable objects") {
		t.Fatalf("unexpected ostree prune output:\n%s", out)
	}
	return total, pruned
}

func copyRepo(t *testing.T, repo string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	// -a keeps bare-user's user.ostreemeta xattrs.
	if out, err := exec.Command("cp", "-a", repo, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	return dst
}

func mustPrune(t *testing.T, r *Repo, opts PruneOptions) *PruneStats {
	t.Helper()
	stats, err := r.Prune(context.Background(), opts)
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	return stats
}

func TestPruneMatchesLibostree(t *testing.T) {
	for _, mode := range []string{"archive", "bare-user"} {
		t.Run(mode, func(t *testing.T) {
			f := newPruneFixture(t, mode)
			r := f.r
			keep := lsObjects(t, r, f.main2, f.main1, f.remote, f.blob, f.other)
			before := objectFiles(t, r.Path())
			theirs := copyRepo(t, r.Path())

			stats := mustPrune(t, r, PruneOptions{})
			checkObjectSet(t, r.Path(), keep)
			testtool.RunOstree(t, "fsck", "--repo="+r.Path())

			content := ObjectFile
			if r.Mode() == ModeArchive {
				content = ObjectFileZ
			}
			// orphan and gone: both commits and their .commitmeta; their
			// root dirtrees, gonedir and gonedir/deep; orphan-only,
			// gone-only and gonedir/deep/f. Dirmetas are all shared.
			wantByType := map[ObjectType]int{ObjectCommit: 2, ObjectCommitMeta: 2, ObjectDirTree: 4, content: 3}
			if !maps.Equal(stats.ByType, wantByType) {
				t.Errorf("ByType = %v, want %v", stats.ByType, wantByType)
			}
			after := objectFiles(t, r.Path())
			var freed int64
			for p, size := range before {
				if _, ok := after[p]; !ok {
					freed += size
				}
			}
			if stats.ObjectsDeleted != len(before)-len(after) || stats.BytesFreed != freed || len(stats.RefsDeleted) != 0 {
				t.Errorf("stats = %+v; %d files and %d bytes went", stats, len(before)-len(after), freed)
			}
			for _, c := range []string{f.orphan, f.gone} {
				if ok, _ := r.HasObject(c, ObjectCommit); ok {
					t.Errorf("commit %s survived", c)
				}
				if _, ok, err := r.ReadDetachedMetadata(c); ok || err != nil {
					t.Errorf("detached metadata of %s: exists %v, %v", c, ok, err)
				}
			}

			// libostree, on a copy, deletes exactly the same files and
			// counts the same (it leaves .commitmeta out of its count).
			total, pruned := libostreePrune(t, theirs, false)
			if want := stats.ObjectsDeleted - stats.ByType[ObjectCommitMeta]; pruned != want {
				t.Errorf("ostree prune deleted %d objects, we %d besides .commitmeta", pruned, want)
			}
			if total != stats.ObjectsKept+pruned {
				t.Errorf("ostree prune saw %d objects; we kept %d and deleted %d", total, stats.ObjectsKept, pruned)
			}
			if theirsAfter := objectFiles(t, theirs); !slices.Equal(slices.Sorted(maps.Keys(theirsAfter)), slices.Sorted(maps.Keys(after))) {
				t.Errorf("object files differ from libostree's prune:\nours:   %v\ntheirs: %v", slices.Sorted(maps.Keys(after)), slices.Sorted(maps.Keys(theirsAfter)))
			}
			// And after us, libostree finds nothing left to delete.
			if total, pruned := libostreePrune(t, r.Path(), true); pruned != 0 || total != stats.ObjectsKept {
				t.Errorf("ostree prune after ours: total %d, would delete %d; want %d, 0", total, pruned, stats.ObjectsKept)
			}
			// A second run has nothing to do.
			if again := mustPrune(t, r, PruneOptions{}); again.ObjectsDeleted != 0 || again.ObjectsKept != stats.ObjectsKept {
				t.Errorf("second Prune: %+v", again)
			}
		})
	}
}

func TestPruneDryRun(t *testing.T) {
	f := newPruneFixture(t, "archive")
	r := f.r
	opts := PruneOptions{DryRun: true, SelectRefs: func(map[string]string) ([]string, error) {
		return []string{"other", blobRef}, nil
	}}
	snap := repoSnapshot(t, r.Path())
	before := objectFiles(t, r.Path())
	dry := mustPrune(t, r, opts)
	checkSnapshot(t, r.Path(), snap, "dry run")

	opts.DryRun = false
	real := mustPrune(t, r, opts)
	if !reflect.DeepEqual(dry, real) {
		t.Errorf("dry run reported %+v, the real run %+v", dry, real)
	}
	after := objectFiles(t, r.Path())
	var freed int64
	for p, size := range before {
		if _, ok := after[p]; !ok {
			freed += size
		}
	}
	if real.ObjectsDeleted != len(before)-len(after) || real.BytesFreed != freed {
		t.Errorf("stats %+v; %d files, %d bytes went", real, len(before)-len(after), freed)
	}
	if want := []string{blobRef, "other"}; !slices.Equal(real.RefsDeleted, want) {
		t.Errorf("RefsDeleted = %q, want %q", real.RefsDeleted, want)
	}
	if real.ObjectsDeleted == 0 || real.ObjectsKept == 0 {
		t.Errorf("stats %+v: the fixture should have both", real)
	}
}

func TestPruneSelectRefs(t *testing.T) {
	f := newPruneFixture(t, "archive")
	r := f.r
	// A mirror ref (a collection ref) and a ref alias are roots too; only
	// the alias can be named.
	mirrored := ostreeCommit(t, r, map[string]string{"mirror-only": "m"}, "--orphan", "-s", "mirror")
	mirrorDir := filepath.Join(r.Path(), "refs", "mirrors", "org.example.Os", "os")
	if err := os.MkdirAll(mirrorDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mirrorDir, "stable"), []byte(mirrored+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testtool.RunOstree(t, "refs", "--repo="+r.Path(), "--alias", "--create=stable", "main")

	var offered map[string]string
	stats := mustPrune(t, r, PruneOptions{SelectRefs: func(refs map[string]string) ([]string, error) {
		offered = refs
		return []string{"other", "other"}, nil
	}})
	want := map[string]string{"main": f.main2, "stable": f.main2, "origin:main": f.remote, blobRef: f.blob, "other": f.other}
	if !maps.Equal(offered, want) {
		t.Errorf("SelectRefs got %v, want %v", offered, want)
	}
	if !slices.Equal(stats.RefsDeleted, []string{"other"}) {
		t.Errorf("RefsDeleted = %q", stats.RefsDeleted)
	}
	// other's unique objects (its commit, root dirtree, other-only) went;
	// what it shares with main stayed.
	checkObjectSet(t, r.Path(), lsObjects(t, r, f.main2, f.main1, f.remote, f.blob, mirrored))
	if stats.ByType[ObjectCommit] != 3 || stats.ByType[ObjectDirTree] != 5 || stats.ByType[ObjectFileZ] != 4 {
		t.Errorf("ByType = %v", stats.ByType)
	}
	if _, err := r.ResolveRef("other"); !errors.Is(err, ErrRefNotFound) {
		t.Errorf("ResolveRef(other) after deletion: %v", err)
	}
	if refs := testtool.RunOstree(t, "refs", "--repo="+r.Path()); strings.Contains(refs, "other") || !strings.Contains(refs, blobRef) {
		t.Errorf("ostree refs after pruning:\n%s", refs)
	}
	testtool.RunOstree(t, "fsck", "--repo="+r.Path())

	errSelect := errors.New("no thanks")
	for name, tc := range map[string]struct {
		sel      []string
		err      error
		wantErr  error
		wantRefs []string // deleted by a dry run, when wantErr is nil
	}{
		"unknown ref":            {sel: []string{"main", "nope"}, wantErr: ErrRefNotFound},
		"mirror not offered":     {sel: []string{"org.example.Os/os/stable"}, wantErr: ErrRefNotFound},
		"heads form of remote":   {sel: []string{"origin/main"}, wantErr: ErrRefNotFound},
		"callback error":         {err: errSelect, wantErr: errSelect},
		"target of a kept alias": {sel: []string{"main"}, wantErr: ErrInvalidRef},
		"alias alone":            {sel: []string{"stable"}, wantRefs: []string{"stable"}},
		"alias and target":       {sel: []string{"stable", "main"}, wantRefs: []string{"main", "stable"}},
		"remote and layer refs":  {sel: []string{blobRef, "origin:main"}, wantRefs: []string{"origin:main", blobRef}},
	} {
		t.Run(name, func(t *testing.T) {
			snap := repoSnapshot(t, r.Path())
			stats, err := r.Prune(context.Background(), PruneOptions{DryRun: true, SelectRefs: func(map[string]string) ([]string, error) {
				return tc.sel, tc.err
			}})
			if tc.wantErr != nil && (!errors.Is(err, tc.wantErr) || stats != nil) {
				t.Errorf("Prune = %v, %v; want %v", stats, err, tc.wantErr)
			}
			if tc.wantErr == nil && (err != nil || !slices.Equal(stats.RefsDeleted, tc.wantRefs)) {
				t.Errorf("Prune = %+v, %v; want refs %q deleted", stats, err, tc.wantRefs)
			}
			checkSnapshot(t, r.Path(), snap, name)
		})
	}
}

// startFifoCommit starts `ostree commit --tree=tar=FIFO`, which holds the
// repository lock shared for its transaction while it waits for the tar
// stream; finish sends a one-file tar and waits for the commit.
func startFifoCommit(t *testing.T, r *Repo, ref string) (finish func()) {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "tar.fifo")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	// O_RDWR opens a FIFO without waiting for the reader.
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := testtool.OstreeCommand(t, "commit", "--repo="+r.Path(), "-b", ref, "--tar-autocreate-parents", "--tree=tar="+fifo)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); cmd.Process.Kill(); cmd.Wait() })
	waitHeld(t, r)
	return func() {
		t.Helper()
		tw := tar.NewWriter(w)
		if err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: 4, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte("fifo")); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("ostree commit: %v\n%s", err, out.String())
		}
	}
}

func TestPruneWaitsForTransactions(t *testing.T) {
	f := newPruneFixture(t, "archive")
	r := f.r
	finish := startFifoCommit(t, r, "fifo")

	short := *r
	short.lockTimeout = 300 * time.Millisecond
	snap := repoSnapshot(t, r.Path())
	stats, err := short.Prune(context.Background(), PruneOptions{})
	if !errors.Is(err, ErrLockTimeout) || stats != nil {
		t.Fatalf("Prune during an ostree transaction: %v, %v; want ErrLockTimeout", stats, err)
	}
	checkSnapshot(t, r.Path(), snap, "timed-out prune")

	type result struct {
		stats *PruneStats
		err   error
	}
	done := make(chan result, 1)
	go func() {
		stats, err := r.Prune(context.Background(), PruneOptions{})
		done <- result{stats, err}
	}()
	select {
	case res := <-done:
		t.Fatalf("Prune did not wait for the transaction: %+v, %v", res.stats, res.err)
	case <-time.After(300 * time.Millisecond):
	}
	finish()
	res := <-done
	if res.err != nil {
		t.Fatalf("Prune after the transaction: %v", res.err)
	}
	// The transaction's commit landed before the walk, so it is kept.
	fifo, err := r.ResolveRef("fifo")
	if err != nil {
		t.Fatal(err)
	}
	checkObjectSet(t, r.Path(), lsObjects(t, r, f.main2, f.main1, f.remote, f.blob, f.other, fifo))
	testtool.RunOstree(t, "fsck", "--repo="+r.Path())
}

func TestPruneExcludesWriters(t *testing.T) {
	f := newPruneFixture(t, "archive")
	r := setLockTimeout(t, f.r, "1")
	ctx := context.Background()
	src := t.TempDir()
	called := false
	mustPrune(t, r, PruneOptions{SelectRefs: func(map[string]string) ([]string, error) {
		called = true
		// Prune holds the lock exclusive while this runs.
		start := time.Now()
		out, err := runOstree(t, "commit", "--repo="+r.Path(), "-b", "late", "--tree=dir="+src)
		if err == nil || !strings.Contains(out, "Locking repo shared failed") {
			t.Errorf("ostree commit during Prune: %v\n%s", err, out)
		}
		if d := time.Since(start); d < time.Second {
			t.Errorf("ostree commit gave up after %v, before its 1 s lock timeout", d)
		}
		ours := *r
		ours.lockTimeout = 100 * time.Millisecond
		if err := ours.SetRef(ctx, "late", f.main2); !errors.Is(err, ErrLockTimeout) {
			t.Errorf("SetRef during Prune: %v; want ErrLockTimeout", err)
		}
		return nil, nil
	}})
	if !called {
		t.Fatal("SelectRefs was not called")
	}
	if _, err := r.ResolveRef("late"); !errors.Is(err, ErrRefNotFound) {
		t.Errorf("a writer got through during Prune: %v", err)
	}
}

func TestPruneCancelled(t *testing.T) {
	f := newPruneFixture(t, "archive")
	snap := repoSnapshot(t, f.r.Path())
	ctx, cancel := context.WithCancel(context.Background())
	stats, err := f.r.Prune(ctx, PruneOptions{SelectRefs: func(map[string]string) ([]string, error) {
		cancel()
		return []string{"other"}, nil
	}})
	if !errors.Is(err, context.Canceled) || stats != nil {
		t.Errorf("Prune with a context cancelled before the walk: %v, %v", stats, err)
	}
	checkSnapshot(t, f.r.Path(), snap, "cancelled prune")
}

// lsChecksum returns the checksum `ostree ls -C` prints first for a path in a
// commit: the content object's, or a directory's dirtree.
func lsChecksum(t *testing.T, r *Repo, rev, path string) string {
	t.Helper()
	fields := strings.Fields(testtool.RunOstree(t, "ls", "--repo="+r.Path(), "-d", "-C", rev, path))
	if len(fields) < 6 {
		t.Fatalf("ostree ls %s %s: %q", rev, path, fields)
	}
	return fields[4]
}

func flipLastByte(t *testing.T, p string) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 1
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// plantMalformedTree makes "bad" a ref to a commit whose root lists a
// subdirectory tree that does not parse although its name is its
// checksum.
func plantMalformedTree(t *testing.T, f *pruneFixture) {
	t.Helper()
	ctx := context.Background()
	garbage := []byte("not a dirtree at all")
	garbageSum := sha256Hex(garbage)
	writeFile(t, f.r.ObjectPath(garbageSum, ObjectDirTree), string(garbage))
	c, err := f.r.ReadCommit(f.main2)
	if err != nil {
		t.Fatal(err)
	}
	root, err := EncodeDirTree(nil, []DirTreeDir{{Name: "sub", TreeChecksum: garbageSum, MetaChecksum: c.RootMeta}})
	if err != nil {
		t.Fatal(err)
	}
	rootSum, err := f.r.WriteMetadataObject(ctx, ObjectDirTree, root)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := f.r.WriteCommit(ctx, &Commit{Subject: "bad", Timestamp: time.Unix(1, 0), RootTree: rootSum, RootMeta: c.RootMeta})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.r.SetRef(ctx, "bad", sum); err != nil {
		t.Fatal(err)
	}
}

func TestPruneRefusesDamage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, f *pruneFixture)
		wantErr error
	}{
		{"corrupt parent commit", func(t *testing.T, f *pruneFixture) {
			flipLastByte(t, f.r.ObjectPath(f.main1, ObjectCommit))
		}, ErrCorrupt},
		{"truncated ref head commit", func(t *testing.T, f *pruneFixture) {
			p := f.r.ObjectPath(f.main2, ObjectCommit)
			data, _ := os.ReadFile(p)
			writeFile(t, p, string(data[:len(data)/2]))
		}, ErrCorrupt},
		{"corrupt dirtree", func(t *testing.T, f *pruneFixture) {
			flipLastByte(t, f.r.ObjectPath(lsChecksum(t, f.r, f.blob, "/layer"), ObjectDirTree))
		}, ErrCorrupt},
		{"malformed dirtree matching its checksum", plantMalformedTree, ErrCorrupt},
		{"missing dirtree", func(t *testing.T, f *pruneFixture) {
			os.Remove(f.r.ObjectPath(lsChecksum(t, f.r, f.blob, "/layer"), ObjectDirTree))
		}, ErrObjectNotFound},
		{"dangling ref", func(t *testing.T, f *pruneFixture) {
			writeFile(t, filepath.Join(f.r.Path(), "refs", "heads", "dangling"), strings.Repeat("ab", 32)+"\n")
		}, ErrDanglingRef},
		{"dangling remote ref", func(t *testing.T, f *pruneFixture) {
			writeFile(t, filepath.Join(f.r.Path(), "refs", "remotes", "origin", "x"), strings.Repeat("cd", 32)+"\n")
		}, ErrDanglingRef},
		{"malformed ref", func(t *testing.T, f *pruneFixture) {
			writeFile(t, filepath.Join(f.r.Path(), "refs", "heads", "bad"), "nonsense\n")
		}, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newPruneFixture(t, "archive")
			tc.damage(t, f)
			snap := repoSnapshot(t, f.r.Path())
			for _, dry := range []bool{true, false} {
				stats, err := f.r.Prune(context.Background(), PruneOptions{DryRun: dry})
				if !errors.Is(err, tc.wantErr) || stats != nil {
					t.Errorf("Prune(DryRun %v) = %+v, %v; want %v", dry, stats, err, tc.wantErr)
				}
			}
			checkSnapshot(t, f.r.Path(), snap, tc.name)
		})
	}
}

func TestPruneTolerates(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, f *pruneFixture) (sel []string)
		check  func(t *testing.T, f *pruneFixture, stats *PruneStats)
	}{
		{"missing dirtree below a partial commit", func(t *testing.T, f *pruneFixture) []string {
			os.Remove(f.r.ObjectPath(lsChecksum(t, f.r, f.blob, "/layer"), ObjectDirTree))
			writeFile(t, filepath.Join(f.r.Path(), "state", f.blob+".commitpartial"), "")
			return nil
		}, func(t *testing.T, f *pruneFixture, stats *PruneStats) {
			// Nothing lists layer/file any more.
			if ok, _ := f.r.HasObject(f.blob, ObjectCommit); !ok {
				t.Error("the partial commit was deleted")
			}
			if _, err := os.Stat(filepath.Join(f.r.Path(), "state", f.blob+".commitpartial")); err != nil {
				t.Errorf("the kept commit's commitpartial: %v", err)
			}
		}},
		{"dangling ref selected for deletion", func(t *testing.T, f *pruneFixture) []string {
			writeFile(t, filepath.Join(f.r.Path(), "refs", "heads", "dangling"), strings.Repeat("ab", 32)+"\n")
			return []string{"dangling"}
		}, func(t *testing.T, f *pruneFixture, stats *PruneStats) {
			if _, err := f.r.ResolveRef("dangling"); !errors.Is(err, ErrRefNotFound) {
				t.Errorf("dangling ref after Prune: %v", err)
			}
		}},
		{"corrupt unreachable commit", func(t *testing.T, f *pruneFixture) []string {
			flipLastByte(t, f.r.ObjectPath(f.orphan, ObjectCommit))
			return nil
		}, func(t *testing.T, f *pruneFixture, stats *PruneStats) {
			if ok, _ := f.r.HasObject(f.orphan, ObjectCommit); ok {
				t.Error("the corrupt unreachable commit survived")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newPruneFixture(t, "archive")
			sel := tc.damage(t, f)
			stats := mustPrune(t, f.r, PruneOptions{SelectRefs: func(map[string]string) ([]string, error) { return sel, nil }})
			tc.check(t, f, stats)
			testtool.RunOstree(t, "fsck", "--repo="+f.r.Path())
		})
	}
}

// TestPruneBeyondLibostree covers what libostree's prune leaves: an orphaned
// .commitmeta goes; and what nobody's prune touches: tombstones, temporary
// files, other modes' content, tmp/.
func TestPruneBeyondLibostree(t *testing.T) {
	r := ostreeRepo(t)
	kept := ostreeCommit(t, r, map[string]string{"a": "kept"}, "-b", "main")
	orphan := ostreeCommit(t, r, map[string]string{"a": "orphan"}, "--orphan")
	sum := func(s string) string { return sha256Hex([]byte(s)) }
	path := func(rel string) string { return filepath.Join(r.Path(), rel) }
	planted := map[string]bool{ // path -> whether Prune removes it
		r.ObjectPath(sum("no commit"), ObjectCommitMeta):        true,
		"state/" + orphan + ".commitpartial":                    true,
		"state/" + kept + ".commitpartial":                      false,
		r.ObjectPath(sum("tomb"), ObjectTombstoneCommit):        false,
		r.ObjectPath(sum("bare content"), ObjectFile):           false,
		"objects/" + kept[:2] + "/.tmp-123":                     false,
		"objects/" + kept[:2] + "/" + kept[2:] + ".commit.orig": false,
		"objects/AB/" + kept[2:] + ".commit":                    false,
		"tmp/leftover":                                          false,
	}
	for p := range planted {
		if !filepath.IsAbs(p) {
			p = path(p)
		}
		writeFile(t, p, "x")
	}
	stats := mustPrune(t, r, PruneOptions{})
	for p, gone := range planted {
		if !filepath.IsAbs(p) {
			p = path(p)
		}
		if _, err := os.Lstat(p); gone != errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: removed %v, want %v (%v)", p, !gone, gone, err)
		}
	}
	if want := map[ObjectType]int{ObjectCommit: 1, ObjectCommitMeta: 1, ObjectDirTree: 1, ObjectFileZ: 1}; !maps.Equal(stats.ByType, want) {
		t.Errorf("ByType = %v, want %v", stats.ByType, want)
	}
}

// pruneBenchRepo makes an archive repository holding one commit of
// dirs*files distinct small files on ref "big", with the real tool.
func pruneBenchRepo(b *testing.B, dirs, files int) string {
	b.Helper()
	testtool.Ostree(b)
	root := b.TempDir()
	src := filepath.Join(root, "src")
	for d := range dirs {
		dir := filepath.Join(src, fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for i := range files {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte(fmt.Sprintf("file %d of %d\n", i, d)), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	repo := filepath.Join(root, "repo")
	testtool.RunOstree(b, "init", "--repo="+repo, "--mode=archive")
	testtool.RunOstree(b, "commit", "--repo="+repo, "-b", "big", "--tree=dir="+src)
	return repo
}

// BenchmarkPrune walks a repository of about 10k objects: keep (the ref
// stays: walk and scan, nothing deleted) and delete (the ref is selected:
// all of it deleted, fsyncs included; the repository is copied afresh
// outside the timer).
func BenchmarkPrune(b *testing.B) {
	template := pruneBenchRepo(b, 100, 100)
	ctx := context.Background()
	b.Run("keep", func(b *testing.B) {
		r, err := Open(template)
		if err != nil {
			b.Fatal(err)
		}
		var kept int
		for b.Loop() {
			stats, err := r.Prune(ctx, PruneOptions{})
			if err != nil || stats.ObjectsDeleted != 0 {
				b.Fatalf("Prune = %+v, %v", stats, err)
			}
			kept = stats.ObjectsKept
		}
		b.ReportMetric(float64(kept), "objects")
		b.ReportMetric(float64(kept)*float64(b.N)/b.Elapsed().Seconds(), "objects/s")
	})
	b.Run("delete", func(b *testing.B) {
		var deleted int
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dst := filepath.Join(b.TempDir(), "repo")
			if out, err := exec.Command("cp", "-a", template, dst).CombinedOutput(); err != nil {
				b.Fatalf("cp: %v\n%s", err, out)
			}
			r, err := Open(dst)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			stats, err := r.Prune(ctx, PruneOptions{SelectRefs: func(map[string]string) ([]string, error) { return []string{"big"}, nil }})
			if err != nil || stats.ObjectsKept != 0 {
				b.Fatalf("Prune = %+v, %v", stats, err)
			}
			deleted = stats.ObjectsDeleted
		}
		b.ReportMetric(float64(deleted), "objects")
		b.ReportMetric(float64(deleted)*float64(b.N)/b.Elapsed().Seconds(), "objects/s")
	})
}

// TestPruneExpendable: a ref whose tree is damaged fails the prune, unless
// Expendable says it may go: then it is deleted like a selected ref, and
// the rest of the repository is pruned as usual. Damage elsewhere still
// fails.
func TestPruneExpendable(t *testing.T) {
	ctx := context.Background()
	for _, dry := range []bool{true, false} {
		f := newPruneFixture(t, "archive")
		flipLastByte(t, f.r.ObjectPath(lsChecksum(t, f.r, f.blob, "/layer"), ObjectDirTree))
		snap := repoSnapshot(t, f.r.Path())
		never := func(string) bool { return false }
		if _, err := f.r.Prune(ctx, PruneOptions{DryRun: dry, Expendable: never}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Prune with nothing expendable = %v, want ErrCorrupt", err)
		}
		checkSnapshot(t, f.r.Path(), snap, "nothing expendable")
		stats, err := f.r.Prune(ctx, PruneOptions{DryRun: dry, Expendable: func(ref string) bool { return ref == blobRef }})
		if err != nil {
			t.Fatalf("Prune with the damaged ref expendable: %v", err)
		}
		if !slices.Equal(stats.RefsDeleted, []string{blobRef}) {
			t.Errorf("refs deleted %v, want %s", stats.RefsDeleted, blobRef)
		}
		if dry {
			checkSnapshot(t, f.r.Path(), snap, "dry run")
			continue
		}
		if _, err := f.r.ResolveRef(blobRef); !errors.Is(err, ErrRefNotFound) {
			t.Errorf("the expendable ref is still there: %v", err)
		}
		for _, ref := range []string{"main", "origin:main", "other"} {
			if _, err := f.r.ResolveRef(ref); err != nil {
				t.Errorf("%s: %v", ref, err)
			}
		}
		testtool.RunOstree(t, "fsck", "--repo="+f.r.Path())
	}
}

// TestDryRunPruneIsAReader: during a libostree transaction (the repository
// lock held shared) a dry run completes at once, while a real prune waits
// for the exclusive lock until its timeout.
func TestDryRunPruneIsAReader(t *testing.T) {
	r := ostreeRepo(t)
	r.lockTimeout = 300 * time.Millisecond
	ostreeCommit(t, r, map[string]string{"a": "1"}, "-b", "main")
	testtool.HoldTransaction(t, r.Path())
	if st, err := r.Prune(context.Background(), PruneOptions{DryRun: true}); err != nil || st.ObjectsKept == 0 {
		t.Errorf("dry run during a libostree transaction: %v, %v", st, err)
	}
	if _, err := r.Prune(context.Background(), PruneOptions{}); !errors.Is(err, ErrLockTimeout) {
		t.Errorf("prune during a libostree transaction: %v; want ErrLockTimeout", err)
	}
}

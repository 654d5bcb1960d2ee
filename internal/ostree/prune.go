package ostree

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// ErrDanglingRef: a ref names a commit that is not in the repository.
// Prune refuses to run while one is kept (libostree 2022.7 would silently
// treat it as empty history); a caller can select it for deletion instead.
var ErrDanglingRef = errors.New("ostree: ref points to a missing commit")

// PruneOptions controls Prune.
type PruneOptions struct {
	// DryRun deletes nothing: the refs SelectRefs returns are treated as
	// deleted and the report says what a real run would do.
	DryRun bool
	// SelectRefs, if not nil, runs under the exclusive lock before the
	// reachability walk with every ref under refs/heads and refs/remotes
	// (name -> checksum, named as ResolveRef accepts them: "name",
	// "remote:name"; the map is the callback's to keep) and returns the
	// refs to delete. Names not in the map are an error (ErrRefNotFound),
	// and so, as in libostree, is a ref that a ref alias staying behind
	// points at (ErrInvalidRef). Refs under refs/mirrors, and ref files
	// whose names are not valid refs, are never offered: they stay and
	// keep their commits.
	SelectRefs func(refs map[string]string) ([]string, error)
	// Expendable, if not nil, is asked (after SelectRefs) about a kept
	// named ref whose commit cannot be walked because an object below it
	// is corrupt (ErrCorrupt: it does not parse, fails its checksum or is
	// over its size cap): true deletes the ref, as if selected, instead of
	// failing the prune; the walk is done again without it, so what only
	// it reached (the damage included) is deleted.
	Expendable func(ref string) bool
}

// PruneStats reports what Prune deleted, or in a dry run would delete.
type PruneStats struct {
	RefsDeleted []string // sorted
	// ObjectsDeleted counts every file removed from objects/, .commitmeta
	// files included; ByType splits it by type. libostree's "Deleted N
	// objects" leaves .commitmeta out.
	ObjectsDeleted int
	ByType         map[ObjectType]int
	// BytesFreed is the sum of the removed files' sizes (st_size).
	BytesFreed int64
	// ObjectsKept counts the commit, dirtree, dirmeta and content objects
	// left, which is what a later `ostree prune --refs-only` reports as
	// "Total objects".
	ObjectsKept int
}

func (s *PruneStats) count(v pruneVictim) {
	s.ObjectsDeleted++
	s.ByType[v.t]++
	s.BytesFreed += v.size
}

// Prune deletes the refs opts.SelectRefs selects and then every loose
// object no remaining ref reaches, like `ostree prune --refs-only` of
// libostree 2022.7 (no depth or age options):
//
//   - It holds the repository lock exclusive throughout, so libostree
//     transactions and this package's writers wait (and Prune waits for
//     them, until LockTimeout: ErrLockTimeout). A dry run deletes nothing
//     and holds it shared, as a reader: it runs beside transactions (its
//     report is as of its walk) and needs no write access.
//   - The roots are all refs (heads, remotes and mirrors, aliases
//     resolved) except the selected ones. From each root commit it follows
//     the parent chain while the parent exists and, for every commit, the
//     root dirtree and dirmeta and recursively everything they list;
//     content objects are .filez in archive repositories and .file in the
//     bare modes.
//   - Every other commit, dirtree, dirmeta and content object is deleted,
//     a commit's .commitmeta just before it (as libostree does), its
//     state/<checksum>.commitpartial after it (as libostree does, so a
//     commit written again later is not taken for a partial one), and
//     .commitmeta files whose commit is missing. Tombstones, payload links,
//     unknown files, state/ otherwise and tmp/ are left alone.
//
// Nothing is deleted, not even a selected ref, unless the whole walk
// succeeds. It fails, wrapping ErrCorrupt, on a reachable commit or
// dirtree that does not match its checksum or does not parse (the walk
// never guesses what a damaged object referenced); wrapping ErrDanglingRef
// on a kept ref whose commit is missing; wrapping ErrObjectNotFound on a
// dirtree missing below a commit that is not marked partial (a
// state/<checksum>.commitpartial file makes missing dirtrees below that
// commit acceptable, as in libostree). Dirmeta and content objects are not
// opened, only kept.
//
// Deletion order keeps the repository consistent at every point: the refs
// go first and their directories are fsynced; then the unreachable commits
// (with their .commitmeta), fsynced; then everything else, fsynced. A
// crash or a cancelled ctx during deletion leaves only unreachable objects
// behind, which the next Prune removes. On an error once deletion has
// begun, the stats returned with it say what was deleted; on an earlier
// error they are nil.
//
// core.tombstone-commits is not honoured: no tombstones are written.
func (r *Repo) Prune(ctx context.Context, opts PruneOptions) (*PruneStats, error) {
	mode := LockExclusive
	if opts.DryRun {
		mode = LockShared
	}
	unlock, err := r.Lock(ctx, mode)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	defer unlock()

	refs, err := r.pruneRoots()
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	var drop []string
	if opts.SelectRefs != nil {
		selected, err := opts.SelectRefs(maps.Clone(refs.named))
		if err != nil {
			return nil, fmt.Errorf("prune: select refs: %w", err)
		}
		if drop, err = refs.checkSelection(selected); err != nil {
			return nil, fmt.Errorf("prune: select refs: %w", err)
		}
	}

	w, drop, err := r.walkRoots(ctx, refs, drop, opts.Expendable)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	victims, kept, err := r.unreachableObjects(ctx, w.set)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}

	stats := &PruneStats{RefsDeleted: []string{}, ByType: map[ObjectType]int{}, ObjectsKept: kept}
	if opts.DryRun {
		stats.RefsDeleted = append(stats.RefsDeleted, drop...)
		for _, v := range victims {
			stats.count(v)
		}
		return stats, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	if err := r.removeRefs(drop, stats); err != nil {
		return stats, fmt.Errorf("prune: %w", err)
	}
	if err := r.deleteObjects(ctx, victims, stats); err != nil {
		return stats, fmt.Errorf("prune: %w", err)
	}
	return stats, nil
}

// rootRef is a ref the walk starts from; name is for error messages.
type rootRef struct{ name, checksum string }

// pruneRefs is every ref in the repository.
type pruneRefs struct {
	// named are the refs SelectRefs may choose from (refs/heads and
	// refs/remotes, as "name" and "remote:name"), refspec -> checksum.
	named map[string]string
	// aliases maps each named ref that is an alias (a symlink) to the
	// refspec it points at.
	aliases map[string]string
	// pinned are the ones it cannot name (refs/mirrors, whose collection
	// refs this package does not otherwise handle, and ref files with
	// names that are not valid refs), which libostree's prune treats as
	// roots too.
	pinned []rootRef
}

// pruneRoots lists every ref, aliases resolved.
func (r *Repo) pruneRoots() (*pruneRefs, error) {
	refs := &pruneRefs{named: map[string]string{}, aliases: map[string]string{}}
	for _, base := range []string{"refs/heads", "refs/remotes", "refs/mirrors"} {
		err := r.walkRefFiles(base, "", nil, func(name string, d fs.DirEntry) error {
			sum, err := r.readRef(refLocation{base: base, name: name})
			if err != nil {
				return err
			}
			spec := refspecOf(base, name)
			if spec == "" {
				refs.pinned = append(refs.pinned, rootRef{base + "/" + name, sum})
				return nil
			}
			refs.named[spec] = sum
			if d.Type()&fs.ModeSymlink != 0 {
				// readRef has checked the link stays within base.
				p := filepath.Join(r.path, base, filepath.FromSlash(name))
				target, err := os.Readlink(p)
				if err != nil {
					return readError("read ref alias", p, err)
				}
				refs.aliases[spec] = refspecOf(base, path.Join(path.Dir(name), target))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list refs: %w", err)
		}
	}
	return refs, nil
}

// checkSelection validates the refs SelectRefs returned and returns them
// sorted and without repeats. Each must be a named ref (ErrRefNotFound),
// and none may be the target of an alias that stays (ErrInvalidRef), which
// libostree refuses to delete too: the alias would dangle.
func (refs *pruneRefs) checkSelection(selected []string) ([]string, error) {
	drop := slices.Compact(slices.Sorted(slices.Values(selected)))
	for _, ref := range drop {
		if _, ok := refs.named[ref]; !ok {
			return nil, fmt.Errorf("%w: %q", ErrRefNotFound, ref)
		}
	}
	for alias, target := range refs.aliases {
		_, aliasGoes := slices.BinarySearch(drop, alias)
		if _, targetGoes := slices.BinarySearch(drop, target); targetGoes && !aliasGoes {
			return nil, fmt.Errorf("%w: ref %q has an alias, %q, that is not deleted with it", ErrInvalidRef, target, alias)
		}
	}
	return drop, nil
}

// refspecOf returns the refspec ResolveRef accepts for a ref file at
// base/name, or "" when there is none.
func refspecOf(base, name string) string {
	switch base {
	case "refs/heads":
		if validRefName(name) {
			return name
		}
	case "refs/remotes":
		remote, rest, ok := strings.Cut(name, "/")
		if ok && validRemoteName(remote) && validRefName(rest) {
			return remote + ":" + rest
		}
	}
	return ""
}

// removeRefs deletes refs without locking (Prune holds the lock
// exclusive), recording them in stats, and fsyncs their directories, so
// that no ref can come back after a crash and name the objects deleted
// next.
func (r *Repo) removeRefs(refs []string, stats *PruneStats) error {
	dirs := map[string]bool{}
	var err error
	for _, ref := range refs {
		var dir string
		if dir, err = r.removeRef(ref); err != nil {
			break
		}
		stats.RefsDeleted = append(stats.RefsDeleted, ref)
		dirs[dir] = true
	}
	return syncDirs(dirs, err)
}

// syncDirs fsyncs the directories in dirs (also after a failure, for what
// was done before it) and returns err, or else the first fsync error.
func syncDirs(dirs map[string]bool, err error) error {
	for dir := range dirs {
		if serr := syncDir(dir); serr != nil && err == nil {
			err = serr
		}
	}
	return err
}

// walkRoots marks everything the refs not in drop (sorted) reach. A named
// ref that expendable accepts and whose tree is damaged joins drop, and
// the walk starts again without it, so that nothing reached only through
// it is kept: the damaged objects are then unreachable and go. It returns
// the walk and drop, sorted.
func (r *Repo) walkRoots(ctx context.Context, refs *pruneRefs, drop []string, expendable func(string) bool) (*reachWalk, []string, error) {
walk:
	for {
		w := &reachWalk{repo: r, set: reachSet{}}
		roots := refs.pinned
		for _, name := range slices.Sorted(maps.Keys(refs.named)) {
			if _, found := slices.BinarySearch(drop, name); !found {
				roots = append(roots, rootRef{name, refs.named[name]})
			}
		}
		for _, root := range roots {
			err := w.fromRef(ctx, root)
			if err != nil && errors.Is(err, ErrCorrupt) && expendable != nil && refs.named[root.name] != "" && expendable(root.name) {
				drop = append(drop, root.name)
				slices.Sort(drop)
				continue walk
			}
			if err != nil {
				return nil, nil, err
			}
		}
		return w, drop, nil
	}
}

// reachSet holds the reachable objects: per checksum a bit per object
// type, 33 bytes of key and value instead of a hex string per object.
type reachSet map[[sha256.Size]byte]uint8

const (
	reachCommit uint8 = 1 << iota
	reachDirTree
	reachDirMeta
	reachContent
)

// add marks an object and reports whether it was new.
func (s reachSet) add(sum [sha256.Size]byte, bit uint8) bool {
	old := s[sum]
	s[sum] = old | bit
	return old&bit == 0
}

func (s reachSet) has(sum [sha256.Size]byte, bit uint8) bool { return s[sum]&bit != 0 }

// reachBit maps a loose object's type to its bit; 0 for types the walk
// does not track.
func reachBit(t ObjectType) uint8 {
	switch t {
	case ObjectCommit:
		return reachCommit
	case ObjectDirTree:
		return reachDirTree
	case ObjectDirMeta:
		return reachDirMeta
	case ObjectFile, ObjectFileZ:
		return reachContent
	}
	return 0
}

// sumOf converts a checksum already validated by a decoder.
func sumOf(checksum string) (sum [sha256.Size]byte) {
	hex.Decode(sum[:], []byte(checksum))
	return sum
}

// reachWalk marks everything reachable from the roots.
type reachWalk struct {
	repo  *Repo
	set   reachSet
	trees []string // the dirtrees still to read: an explicit stack, not recursion
	steps int
}

// ctxCheckInterval is how many objects are handled between context checks.
const ctxCheckInterval = 256

func (w *reachWalk) step(ctx context.Context) error {
	w.steps++
	if w.steps%ctxCheckInterval == 0 {
		return ctx.Err()
	}
	return nil
}

// fromRef marks a ref's commit, its existing ancestors, and their trees.
func (w *reachWalk) fromRef(ctx context.Context, root rootRef) error {
	for sum, head := root.checksum, true; sum != ""; head = false {
		key := sumOf(sum)
		if w.set.has(key, reachCommit) {
			return nil // it and its ancestors are done
		}
		c, err := w.repo.ReadCommit(sum)
		if errors.Is(err, ErrObjectNotFound) {
			if head {
				return fmt.Errorf("%w: ref %s: commit %s", ErrDanglingRef, root.name, sum)
			}
			return nil // history ends where the repository's does
		}
		if err != nil {
			return fmt.Errorf("ref %s: %w", root.name, err)
		}
		w.set.add(key, reachCommit)
		partial, err := w.repo.commitPartial(sum)
		if err != nil {
			return err
		}
		if err := w.tree(ctx, sum, c.RootTree, c.RootMeta, partial); err != nil {
			return fmt.Errorf("ref %s: %w", root.name, err)
		}
		sum = c.Parent
	}
	return nil
}

// tree marks a commit's root dirmeta and dirtree and everything below.
func (w *reachWalk) tree(ctx context.Context, commit, rootTree, rootMeta string, partial bool) error {
	w.set.add(sumOf(rootMeta), reachDirMeta)
	w.trees = append(w.trees[:0], rootTree)
	for len(w.trees) > 0 {
		sum := w.trees[len(w.trees)-1]
		w.trees = w.trees[:len(w.trees)-1]
		if !w.set.add(sumOf(sum), reachDirTree) {
			continue
		}
		if err := w.step(ctx); err != nil {
			return err
		}
		data, err := w.repo.ReadMetadataObject(sum, ObjectDirTree)
		if errors.Is(err, ErrObjectNotFound) && partial {
			continue
		}
		if err != nil {
			return fmt.Errorf("commit %s: %w", commit, err)
		}
		files, dirs, err := DecodeDirTree(data)
		if err != nil {
			return fmt.Errorf("commit %s: %w", commit, corrupt(w.repo.ObjectPath(sum, ObjectDirTree), err))
		}
		for _, f := range files {
			w.set.add(sumOf(f.Checksum), reachContent)
		}
		for _, d := range dirs {
			w.set.add(sumOf(d.MetaChecksum), reachDirMeta)
			w.trees = append(w.trees, d.TreeChecksum)
		}
	}
	return nil
}

// commitPartialPath is libostree's marker for a commit whose objects are
// not all there yet (an interrupted pull).
func (r *Repo) commitPartialPath(checksum string) string {
	return filepath.Join(r.path, "state", checksum+".commitpartial")
}

func (r *Repo) commitPartial(checksum string) (bool, error) {
	_, err := os.Lstat(r.commitPartialPath(checksum))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("commit %s: %w", checksum, err)
}

// pruneVictim is a loose object file to delete.
type pruneVictim struct {
	sum  [sha256.Size]byte
	t    ObjectType
	size int64
}

func (v pruneVictim) path(r *Repo) string { return r.ObjectPath(hex.EncodeToString(v.sum[:]), v.t) }

// unreachableObjects lists the loose objects the walk did not reach, and
// counts the kept ones. Only files named <62 hex>.<type> in objects/<2 hex>
// directories are objects; anything else there (temporary files, other
// modes' content, tombstones, payload links) is left alone.
func (r *Repo) unreachableObjects(ctx context.Context, set reachSet) (victims []pruneVictim, kept int, err error) {
	content := r.contentObjectType()
	objects := filepath.Join(r.path, "objects")
	prefixes, err := os.ReadDir(objects)
	if err != nil {
		return nil, 0, readError("list", objects, err)
	}
	for _, p := range prefixes {
		prefix := p.Name()
		if !p.IsDir() || len(prefix) != 2 || !isLowerHex(prefix) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		dir := filepath.Join(objects, prefix)
		entries, err := readDirUnsorted(dir)
		if err != nil {
			return nil, 0, readError("list", dir, err)
		}
		for _, e := range entries {
			sum, t, ok := parseObjectName(prefix, e.Name())
			if !ok || (t == ObjectFile || t == ObjectFileZ) && t != content ||
				!e.Type().IsRegular() && e.Type() != fs.ModeSymlink {
				continue
			}
			var keep bool
			switch t {
			case ObjectCommitMeta:
				keep = set.has(sum, reachCommit)
			case ObjectCommit, ObjectDirTree, ObjectDirMeta, content:
				keep = set.has(sum, reachBit(t))
				if keep {
					kept++
				}
			default:
				continue
			}
			if keep {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, 0, readError("stat", filepath.Join(dir, e.Name()), err)
			}
			victims = append(victims, pruneVictim{sum: sum, t: t, size: info.Size()})
		}
	}
	return victims, kept, nil
}

// readDirUnsorted lists a directory in the kernel's order; sorting
// thousands of names per directory would be wasted work.
func readDirUnsorted(dir string) ([]fs.DirEntry, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// parseObjectName parses "<62 hex>.<type>" in directory prefix.
func parseObjectName(prefix, name string) (sum [sha256.Size]byte, t ObjectType, ok bool) {
	rest, ext, found := strings.Cut(name, ".")
	if !found || len(rest) != 62 || !isLowerHex(rest) {
		return sum, "", false
	}
	t = ObjectType(ext)
	if !t.valid() {
		return sum, "", false
	}
	hex.Decode(sum[:1], []byte(prefix))
	hex.Decode(sum[1:], []byte(rest))
	return sum, t, true
}

// deleteObjects removes the victims: first the commits (each one's
// .commitmeta before it and its commitpartial marker after) and orphaned
// .commitmeta files, with an fsync of their directories, so that no commit
// can outlive, after a crash, the objects it needs; then the rest, fsynced
// too. It checks ctx between objects and counts what it removed into stats.
func (r *Repo) deleteObjects(ctx context.Context, victims []pruneVictim, stats *PruneStats) error {
	var commits, rest []pruneVictim
	for _, v := range victims {
		if v.t == ObjectCommit || v.t == ObjectCommitMeta {
			commits = append(commits, v)
		} else {
			rest = append(rest, v)
		}
	}
	// A .commitmeta goes just before its commit.
	slices.SortFunc(commits, func(a, b pruneVictim) int {
		if c := slices.Compare(a.sum[:], b.sum[:]); c != 0 {
			return c
		}
		return strings.Compare(string(b.t), string(a.t)) // "commitmeta" > "commit"
	})
	for _, batch := range [][]pruneVictim{commits, rest} {
		dirs := map[string]bool{}
		var err error
		for i, v := range batch {
			if i%ctxCheckInterval == 0 {
				if err = ctx.Err(); err != nil {
					break
				}
			}
			var removed bool
			removed, err = r.deleteObject(v, dirs)
			if removed {
				stats.count(v)
			}
			if err != nil {
				break
			}
		}
		if err := syncDirs(dirs, err); err != nil {
			return err
		}
	}
	return nil
}

// deleteObject unlinks one object file (and, for a commit, its
// commitpartial marker), adding the directories it changed to dirs. An
// object already gone is not an error: removed is false.
func (r *Repo) deleteObject(v pruneVictim, dirs map[string]bool) (removed bool, err error) {
	p := v.path(r)
	if err := syscall.Unlink(p); errors.Is(err, syscall.ENOENT) {
		return false, nil
	} else if err != nil {
		return false, writeError("delete", p, err)
	}
	dirs[filepath.Dir(p)] = true
	if v.t != ObjectCommit {
		return true, nil
	}
	partial := r.commitPartialPath(hex.EncodeToString(v.sum[:]))
	if err := syscall.Unlink(partial); err == nil {
		dirs[filepath.Dir(partial)] = true
	} else if !errors.Is(err, syscall.ENOENT) {
		return true, writeError("delete", partial, err)
	}
	return true, nil
}

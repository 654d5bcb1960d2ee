package ostree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// isRefFragmentChar is libostree's ref fragment class [-._\w\d] (ASCII).
func isRefFragmentChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'
}

// maxRefFragment is NAME_MAX: a longer ref component cannot be a file name.
const maxRefFragment = 255

// validRefName reports whether name matches libostree's ref regexp
// (fragment ("/" fragment)*) and additionally has no "." or ".."
// component, so that refs/heads/<name> can never leave refs/heads, and no
// component longer than a file name can be.
func validRefName(name string) bool {
	if name == "" {
		return false
	}
	for _, frag := range strings.Split(name, "/") {
		if frag == "" || frag == "." || frag == ".." || len(frag) > maxRefFragment {
			return false
		}
		for i := 0; i < len(frag); i++ {
			if !isRefFragmentChar(frag[i]) {
				return false
			}
		}
	}
	return true
}

// validRemoteName is libostree's remote name regexp [\w\d][-._\w\d]*.
func validRemoteName(s string) bool {
	if s == "" || s[0] == '-' || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isRefFragmentChar(s[i]) {
			return false
		}
	}
	return true
}

// refLocation is where a refspec lives: base is the directory below the
// repository ("refs/heads" or "refs/remotes/<remote>"), name the ref path
// inside it.
type refLocation struct{ base, name string }

// parseRefspec splits "remote:name" or "name" into its on-disk location.
func parseRefspec(ref string) (refLocation, error) {
	remote, name, hasRemote := strings.Cut(ref, ":")
	if !hasRemote {
		remote, name = "", ref
	}
	if hasRemote && !validRemoteName(remote) || !validRefName(name) {
		return refLocation{}, fmt.Errorf("%w: %q", ErrInvalidRef, ref)
	}
	if hasRemote {
		return refLocation{base: "refs/remotes/" + remote, name: name}, nil
	}
	return refLocation{base: "refs/heads", name: name}, nil
}

// maxAliasDepth bounds how many ref aliases (symlinks) are followed.
const maxAliasDepth = 8

// readRef returns the checksum a ref file holds, following ref aliases
// (relative symlinks that `ostree refs --alias` makes) only while they stay
// within base. A missing ref wraps ErrRefNotFound; a malformed one
// ErrCorrupt.
func (r *Repo) readRef(loc refLocation) (string, error) {
	for depth := 0; ; depth++ {
		if err := r.checkRefDirs(loc.base, path.Dir(loc.name)); err != nil {
			return "", err
		}
		p := filepath.Join(r.path, loc.base, filepath.FromSlash(loc.name))
		data, err := readFileCapped(p, maxRefFileSize, syscall.O_NOFOLLOW)
		switch {
		case err == nil:
			sum := strings.TrimSuffix(string(data), "\n")
			if !ValidChecksum(sum) {
				return "", corrupt(p, fmt.Errorf("%w: ref content %q", ErrInvalidChecksum, data))
			}
			return sum, nil
		case errors.Is(err, syscall.ELOOP):
			if depth == maxAliasDepth {
				return "", corrupt(p, errors.New("too many levels of ref aliases"))
			}
			target, lerr := os.Readlink(p)
			if lerr != nil {
				return "", readError("read ref alias", p, lerr)
			}
			next := path.Join(path.Dir(loc.name), target)
			if path.IsAbs(target) || !validRefName(next) {
				return "", corrupt(p, fmt.Errorf("ref alias target %q leaves %s", target, loc.base))
			}
			loc.name = next
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
			return "", fmt.Errorf("%w: %s:%s", ErrRefNotFound, loc.base, loc.name)
		case errors.Is(err, ErrCorrupt):
			if st, serr := os.Stat(p); serr == nil && st.IsDir() {
				// A directory is a ref prefix, not a ref.
				return "", fmt.Errorf("%w: %s:%s is a directory", ErrRefNotFound, loc.base, loc.name)
			}
			return "", err
		default:
			return "", readError("read ref", p, err)
		}
	}
}

// checkRefDirs checks that the directories from the repository down to
// base/dir (slash-separated; dir may be "" or ".") are real directories,
// not symbolic links: ref files are read and written through them, and a
// link could lead out of the repository. Libostree's ref aliases are
// symlinks to ref files, never directories, so none is refused. A link is
// ErrCorrupt; a component missing ends the check (writes create real
// directories).
func (r *Repo) checkRefDirs(base, dir string) error {
	p := r.path
	for _, c := range strings.Split(path.Join(base, dir), "/") {
		if c == "." || c == "" {
			continue
		}
		p = filepath.Join(p, c)
		st, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
			return nil
		case err != nil:
			return readError("stat", p, err)
		case st.Mode()&fs.ModeSymlink != 0:
			return corrupt(p, errors.New("a ref directory is a symbolic link"))
		}
	}
	return nil
}

// ResolveRef resolves a refspec to a commit checksum with libostree's
// rules: a 64-hex checksum resolves to itself when that commit exists;
// "remote:name" reads refs/remotes/remote/name; "name" reads
// refs/heads/name, then refs/remotes/name (so "remote/name" works too).
// Ref aliases are followed. Unresolvable: ErrRefNotFound; malformed:
// ErrInvalidRef.
func (r *Repo) ResolveRef(ref string) (string, error) {
	if ValidChecksum(ref) {
		ok, err := r.HasObject(ref, ObjectCommit)
		if err != nil {
			return "", err
		}
		if ok {
			return ref, nil
		}
	}
	loc, err := parseRefspec(ref)
	if err != nil {
		return "", err
	}
	sum, err := r.readRef(loc)
	if errors.Is(err, ErrRefNotFound) && loc.base == "refs/heads" {
		sum, err = r.readRef(refLocation{base: "refs/remotes", name: loc.name})
	}
	if errors.Is(err, ErrRefNotFound) {
		return "", fmt.Errorf("%w: %q", ErrRefNotFound, ref)
	}
	return sum, err
}

// ListRefs returns the refs under refs/heads whose names start with prefix
// ("" for all), name -> checksum, aliases resolved. Unlike `ostree refs
// PREFIX`, the prefix is a plain string prefix of the full name. The part
// of prefix before its last "/" must be a valid ref name (ErrInvalidRef),
// so the walk never leaves refs/heads.
func (r *Repo) ListRefs(prefix string) (map[string]string, error) {
	sub := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		if !validRefName(prefix[:i]) {
			return nil, fmt.Errorf("%w: prefix %q", ErrInvalidRef, prefix)
		}
		sub = prefix[:i]
	}
	refs := map[string]string{}
	// Only subtrees that can hold a match are entered.
	descend := func(dir string) bool {
		return strings.HasPrefix(dir+"/", prefix) || strings.HasPrefix(prefix, dir+"/")
	}
	err := r.walkRefFiles("refs/heads", sub, descend, func(name string, _ fs.DirEntry) error {
		if !strings.HasPrefix(name, prefix) || !validRefName(name) {
			return nil
		}
		sum, err := r.readRef(refLocation{base: "refs/heads", name: name})
		if err != nil {
			return err
		}
		refs[name] = sum
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list refs %q: %w", prefix, err)
	}
	return refs, nil
}

// walkRefFiles calls fn with the name (slash-separated, relative to base)
// and directory entry of every file below base/sub, where base is a refs directory such as
// "refs/heads" and sub a directory inside it ("" for all of it). Like
// libostree it skips names starting with a dot, which also hides our own
// temporary files left by a crash. Directories for which descend returns
// false are not entered (nil descends everywhere). A missing base/sub is
// empty.
func (r *Repo) walkRefFiles(base, sub string, descend func(dir string) bool, fn func(name string, d fs.DirEntry) error) error {
	if err := r.checkRefDirs(base, sub); err != nil {
		return err
	}
	root := filepath.Join(r.path, base)
	start := filepath.Join(root, filepath.FromSlash(sub))
	return filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) {
				return filepath.SkipAll
			}
			return readError("list refs in", p, err)
		}
		if p == start {
			if !d.IsDir() {
				return filepath.SkipAll
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			if descend != nil && !descend(name) {
				return filepath.SkipDir
			}
			return nil
		}
		return fn(name, d)
	})
}

// SetRef points ref ("name" or "remote:name") at checksum, replacing the
// ref file atomically (temp file, fsync, rename, fsync of the directory)
// and making parent directories, under the shared repository lock. The
// commit must exist (ErrObjectNotFound): a dangling ref makes libostree's
// prune fail.
func (r *Repo) SetRef(ctx context.Context, ref, checksum string) error {
	loc, err := parseRefspec(ref)
	if err != nil {
		return err
	}
	if !ValidChecksum(checksum) {
		return fmt.Errorf("set ref %q: %w: %q", ref, ErrInvalidChecksum, checksum)
	}
	unlock, err := r.Lock(ctx, LockShared)
	if err != nil {
		return fmt.Errorf("set ref %q: %w", ref, err)
	}
	defer unlock()
	ok, err := r.HasObject(checksum, ObjectCommit)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("set ref %q: %w: commit %s", ref, ErrObjectNotFound, checksum)
	}
	if err := r.checkRefDirs(loc.base, path.Dir(loc.name)); err != nil {
		return err
	}
	p := filepath.Join(r.path, loc.base, filepath.FromSlash(loc.name))
	if st, err := os.Lstat(p); err == nil && st.IsDir() {
		return fmt.Errorf("set ref %q: %w: %s is a directory of other refs", ref, ErrInvalidRef, p)
	}
	dir, file := filepath.Split(p)
	if err := mkdirAll(dir); err != nil {
		return err
	}
	return writeFileAtomic(r.tmpDir(), dir, file, []byte(checksum+"\n"), 0o644)
}

// DeleteRef removes ref ("name" or "remote:name"), under the shared
// repository lock; a missing ref wraps ErrRefNotFound. Emptied parent
// directories are left, as libostree leaves them.
func (r *Repo) DeleteRef(ctx context.Context, ref string) error {
	if _, err := parseRefspec(ref); err != nil {
		return err
	}
	unlock, err := r.Lock(ctx, LockShared)
	if err != nil {
		return fmt.Errorf("delete ref %q: %w", ref, err)
	}
	defer unlock()
	dir, err := r.removeRef(ref)
	if err != nil {
		return err
	}
	return syncDir(dir)
}

// removeRef unlinks a ref's file and returns its directory, which the
// caller fsyncs (once for many refs); it takes no lock, so callers hold
// one.
func (r *Repo) removeRef(ref string) (dir string, err error) {
	loc, err := parseRefspec(ref)
	if err != nil {
		return "", err
	}
	if err := r.checkRefDirs(loc.base, path.Dir(loc.name)); err != nil {
		return "", err
	}
	p := filepath.Join(r.path, loc.base, filepath.FromSlash(loc.name))
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || err == nil && st.IsDir() {
		return "", fmt.Errorf("%w: %q", ErrRefNotFound, ref)
	}
	if err != nil {
		return "", readError("stat ref", p, err)
	}
	if err := os.Remove(p); err != nil {
		return "", writeError("delete ref", p, err)
	}
	return filepath.Dir(p), nil
}

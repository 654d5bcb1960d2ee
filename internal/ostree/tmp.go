package ostree

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// defaultTmpExpiry is libostree's default core.tmp-expiry-secs: a day.
const defaultTmpExpiry = 24 * time.Hour

// stagingPrefix starts the name of every transaction's staging directory
// in tmp/, libostree's and ours.
const stagingPrefix = "staging-"

// TmpStats reports what ExpireTmp removed, or in a dry run would remove.
type TmpStats struct {
	Removed []string // names in tmp/, in directory order
	Bytes   int64    // the sum of the sizes of the files they held
}

// ExpireTmp removes what interrupted writers left in tmp/, by libostree's
// rules for its cleanup of tmp/ at the end of each transaction:
//
//   - A staging directory (staging-<boot id>-…) goes when its lock,
//     <dir>-lock, can be taken, so no process is using it; the lock is held
//     until the directory and the lock file are gone. libostree keeps an
//     unlocked one of the current boot to reuse in its next transaction;
//     this package never reuses one, so that directory would stay until the
//     next reboot (a killed pull's can hold a gigabyte), and it goes too:
//     libostree then stages afresh, as it does when short of space.
//   - A lock file whose staging directory is gone goes, once taken.
//   - Any other entry goes once its mtime is older than
//     core.tmp-expiry-secs (default a day): the temporary file of a killed
//     write, say. Entries dated in the future stay, as does tmp/cache.
//
// Entries whose lock cannot even be opened (a read-only user) stay. With
// dryRun nothing is removed and the stats say what would be. A missing
// tmp/ is empty.
func (r *Repo) ExpireTmp(ctx context.Context, dryRun bool) (*TmpStats, error) {
	stats := &TmpStats{}
	tmp := r.tmpDir()
	entries, err := os.ReadDir(tmp)
	if errors.Is(err, fs.ErrNotExist) {
		return stats, nil
	}
	if err != nil {
		return nil, readError("list", tmp, err)
	}
	now := time.Now()
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return stats, err
		}
		name := e.Name()
		if name == "cache" {
			continue
		}
		path := filepath.Join(tmp, name)
		info, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) { // removed meanwhile
			continue
		}
		if err != nil {
			errs = append(errs, readError("stat", path, err))
			continue
		}
		var expired bool
		var release func() error
		switch dir, isLock := strings.CutSuffix(name, "-lock"); {
		case strings.HasPrefix(name, stagingPrefix) && info.IsDir():
			expired, release = tryLockTmp(ctx, path, dryRun)
		case strings.HasPrefix(name, stagingPrefix) && isLock && !exists(filepath.Join(tmp, dir)):
			expired, release = tryLockTmp(ctx, filepath.Join(tmp, dir), dryRun)
		default:
			expired = info.ModTime().Before(now) && now.Sub(info.ModTime()) > r.tmpExpiry
		}
		if !expired {
			continue
		}
		size, err := treeSize(path)
		if err == nil && !dryRun {
			err = removeTmp(path, release)
		}
		if release != nil {
			release()
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		stats.Removed = append(stats.Removed, name)
		stats.Bytes += size
	}
	return stats, errors.Join(errs...)
}

// tryLockTmp takes the lock of the staging directory dir without waiting,
// as libostree does before it removes or reuses one. It reports false when
// another process holds the lock or the lock cannot be opened. A dry run
// creates no lock file: a directory without one is nobody's.
func tryLockTmp(ctx context.Context, dir string, dryRun bool) (bool, func() error) {
	if dryRun && !exists(dir+"-lock") {
		return true, nil
	}
	unlock, err := lockFile(ctx, dir+"-lock", LockExclusive, 0)
	if err != nil {
		return false, nil
	}
	return true, unlock
}

// removeTmp removes a tmp/ entry; for a staging directory (whose lock
// release closes) also its lock file, while the lock is still held, as
// libostree does.
func removeTmp(path string, release func() error) error {
	if err := os.RemoveAll(path); err != nil {
		return writeError("remove", path, err)
	}
	if release == nil {
		return nil
	}
	lock := strings.TrimSuffix(path, "-lock") + "-lock"
	if err := os.Remove(lock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return writeError("remove", lock, err)
	}
	return nil
}

// treeSize sums the sizes of the files at and below path.
func treeSize(path string) (int64, error) {
	var size int64
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return readError("walk", p, err)
		}
		if info, err := d.Info(); err == nil && !d.IsDir() {
			size += info.Size()
		}
		return nil
	})
	return size, err
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

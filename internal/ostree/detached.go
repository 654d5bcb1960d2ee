package ostree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/osimage/updatecache/internal/gvariant"
)

// updateLockName is the lock file that serialises this package's own
// detached-metadata writes. libostree takes no lock for .commitmeta, and
// the shared repository lock (which keeps prune away) does not exclude
// other shared holders, so two read-modify-writes need a lock of their
// own. It is a separate file libostree never touches or deletes. Order:
// repository lock first, then this one.
const updateLockName = ".updatecache-lock"

// readDetached returns the raw .commitmeta bytes and whether the file
// exists, after checking the checksum.
func (r *Repo) readDetached(checksum string) (path string, data []byte, exists bool, err error) {
	if !ValidChecksum(checksum) {
		return "", nil, false, fmt.Errorf("%w: %q", ErrInvalidChecksum, checksum)
	}
	path = r.ObjectPath(checksum, ObjectCommitMeta)
	data, err = readFileCapped(path, maxDetachedMetadataSize, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return path, nil, false, nil
	case err != nil:
		return path, nil, false, fmt.Errorf("read detached metadata: %w", err)
	}
	return path, data, true, nil
}

// decodeDetached parses .commitmeta bytes: a normal-form a{sv}, where 0
// bytes (what libostree leaves for "no metadata") is the empty dictionary.
func decodeDetached(path string, data []byte) (gvariant.VarDict, error) {
	md, err := gvariant.UnmarshalVarDict(data)
	if err != nil {
		return nil, corrupt(path, err)
	}
	return md, nil
}

// ReadDetachedMetadata returns a commit's detached metadata. A missing file
// gives (nil, false, nil); a 0-byte file an empty dictionary; a malformed
// or oversized (over 64 MiB) one a *CorruptError wrapping ErrCorrupt.
func (r *Repo) ReadDetachedMetadata(checksum string) (md gvariant.VarDict, exists bool, err error) {
	path, data, exists, err := r.readDetached(checksum)
	if err != nil || !exists {
		return nil, false, err
	}
	if md, err = decodeDetached(path, data); err != nil {
		return nil, false, err
	}
	return md, true, nil
}

// WriteDetachedMetadata replaces a commit's detached metadata with md, in
// normal form (an empty md leaves a 0-byte file, as libostree does). The
// commit must exist (ErrObjectNotFound). The replace is atomic (temp file,
// fsync, rename, directory fsync) and done under the locks described at
// UpdateDetachedMetadata.
func (r *Repo) WriteDetachedMetadata(ctx context.Context, checksum string, md gvariant.VarDict) error {
	data, err := encodeDetached(md)
	if err != nil {
		return err
	}
	return r.withDetachedLocks(ctx, checksum, func(path string) error {
		return writeFileAtomic(r.tmpDir(), filepath.Dir(path), filepath.Base(path), data, 0o644)
	})
}

// UpdateDetachedMetadata does a read-modify-write of a commit's detached
// metadata. update gets the current dictionary (empty if there is none)
// and returns the new one; entries it leaves alone are written back byte
// for byte. When the result serialises to what is on disk (or is empty and
// there was no file), nothing is written, the file and its mtime stay, and
// changed is false. A corrupt existing file returns its ErrCorrupt error
// and nothing is written; so does an error from update.
//
// Locking: the repository lock is held shared for the whole operation, so
// libostree's prune (exclusive) cannot delete the commit and its
// .commitmeta underneath; and <repo>/.updatecache-lock is held exclusive,
// so concurrent read-modify-writes through this package (from any process)
// do not lose each other's changes.
func (r *Repo) UpdateDetachedMetadata(ctx context.Context, checksum string,
	update func(md gvariant.VarDict) (gvariant.VarDict, error)) (changed bool, err error) {
	err = r.withDetachedLocks(ctx, checksum, func(path string) error {
		_, old, exists, err := r.readDetached(checksum)
		if err != nil {
			return err
		}
		md, err := decodeDetached(path, old)
		if err != nil {
			return err
		}
		md, err = update(md)
		if err != nil {
			return err
		}
		data, err := encodeDetached(md)
		if err != nil {
			return err
		}
		if bytes.Equal(data, old) && (exists || len(data) == 0) {
			return nil
		}
		if err := writeFileAtomic(r.tmpDir(), filepath.Dir(path), filepath.Base(path), data, 0o644); err != nil {
			return err
		}
		changed = true
		return nil
	})
	return changed, err
}

// encodeDetached serialises detached metadata, refusing (ErrTooLarge) what
// readers would refuse: nothing is written that cannot be read back.
func encodeDetached(md gvariant.VarDict) ([]byte, error) {
	data, err := md.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode detached metadata: %w", err)
	}
	if len(data) > maxDetachedMetadataSize {
		return nil, fmt.Errorf("%w: detached metadata of %d bytes, limit %d", ErrTooLarge, len(data), maxDetachedMetadataSize)
	}
	return data, nil
}

// withDetachedLocks runs fn(path of the .commitmeta) holding the update
// lock exclusive and the repository lock shared, after checking that the
// commit exists.
func (r *Repo) withDetachedLocks(ctx context.Context, checksum string, fn func(path string) error) error {
	if !ValidChecksum(checksum) {
		return fmt.Errorf("%w: %q", ErrInvalidChecksum, checksum)
	}
	// Our lock first, the repository lock second: writers queue on ours,
	// and only the one writing holds the repository lock (shared), briefly.
	// The other order had queued writers hold it shared back to back, and
	// libostree's prune, polling for it exclusive, timed out again and
	// again. No holder of the repository lock waits for ours, so this order
	// cannot deadlock.
	unlockOurs, err := lockFile(ctx, filepath.Join(r.path, updateLockName), LockExclusive, r.lockTimeout)
	if err != nil {
		return fmt.Errorf("detached metadata of %s: %w", checksum, err)
	}
	defer unlockOurs()
	unlockRepo, err := r.Lock(ctx, LockShared)
	if err != nil {
		return fmt.Errorf("detached metadata of %s: %w", checksum, err)
	}
	defer unlockRepo()
	// Checked under the repository lock: prune cannot remove it from here on.
	ok, err := r.HasObject(checksum, ObjectCommit)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("detached metadata: %w: commit %s", ErrObjectNotFound, checksum)
	}
	return fn(r.ObjectPath(checksum, ObjectCommitMeta))
}

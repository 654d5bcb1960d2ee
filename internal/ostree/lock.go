package ostree

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// LockMode selects a shared or an exclusive repository lock.
type LockMode int

const (
	// LockShared is what libostree holds during a transaction (writing
	// objects, commits and refs); holders do not exclude each other.
	LockShared LockMode = iota
	// LockExclusive is what libostree holds while pruning; it excludes
	// every other holder.
	LockExclusive
)

func (m LockMode) String() string {
	switch m {
	case LockShared:
		return "shared"
	case LockExclusive:
		return "exclusive"
	}
	return fmt.Sprintf("LockMode(%d)", int(m))
}

// lockRetryInterval is how often a busy lock is retried. libostree polls
// about once a second; polling faster costs one fcntl per try and gets the
// lock sooner after it is released.
const lockRetryInterval = 50 * time.Millisecond

// Lock takes the repository lock, interoperating with libostree: an OFD
// record lock (F_RDLCK shared, F_WRLCK exclusive) over the whole of
// <repo>/.lock, falling back to flock() only where the kernel refuses OFD
// locks with EINVAL. A busy lock is retried until ctx is done or
// LockTimeout elapses (a negative LockTimeout waits for ctx alone), which
// returns an error wrapping ErrLockTimeout. An exclusive lock on a
// repository whose lock file cannot be opened for writing returns
// ErrReadOnly; a shared one needs only to read it (see openLockFile).
//
// Each call opens its own descriptor, so locks are not reentrant: holding
// LockExclusive and then calling a method that takes the lock itself (any
// write) waits for the timeout. Holding LockShared across many writes is
// fine, as shared locks do not exclude each other.
//
// The returned unlock closes the descriptor, which releases the lock; it
// may be called more than once.
func (r *Repo) Lock(ctx context.Context, mode LockMode) (unlock func() error, err error) {
	return lockFile(ctx, filepath.Join(r.path, ".lock"), mode, r.lockTimeout)
}

// lockFile takes an OFD lock on path, creating the file (0660, as
// libostree does) if needed.
func lockFile(ctx context.Context, path string, mode LockMode, timeout time.Duration) (func() error, error) {
	var ofdType int16
	var flockHow int
	switch mode {
	case LockShared:
		ofdType, flockHow = unix.F_RDLCK, unix.LOCK_SH
	case LockExclusive:
		ofdType, flockHow = unix.F_WRLCK, unix.LOCK_EX
	default:
		return nil, fmt.Errorf("%w: lock %s: invalid mode %v", ErrIO, path, mode)
	}
	f, err := openLockFile(path, mode)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return noUnlock, nil
	}
	if timeout >= 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	start := time.Now()
	useFlock := false
	var timer *time.Timer
	for {
		if useFlock {
			err = unix.Flock(int(f.Fd()), flockHow|unix.LOCK_NB)
		} else {
			err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &unix.Flock_t{Type: ofdType, Whence: 0, Start: 0, Len: 0})
			if errors.Is(err, unix.EINVAL) {
				useFlock = true
				continue
			}
		}
		if err == nil && unlinked(f) {
			// Locked after its remover unlocked it (as libglnx does, a
			// staging lock is removed while held): lock the file now at path.
			f.Close()
			if f, err = openLockFile(path, mode); err != nil {
				return nil, err
			}
			if f == nil {
				return noUnlock, nil
			}
			continue
		}
		if err == nil {
			// Closing the descriptor releases the lock; OnceValue makes a
			// repeated unlock harmless.
			return sync.OnceValue(f.Close), nil
		}
		// A held lock is EAGAIN or EACCES from fcntl, EWOULDBLOCK (== EAGAIN)
		// from flock.
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			f.Close()
			return nil, fmt.Errorf("%w: %s lock on %s: %w", ErrIO, mode, path, err)
		}
		if timer == nil {
			timer = time.NewTimer(lockRetryInterval)
			defer timer.Stop()
		} else {
			timer.Reset(lockRetryInterval)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%w: %s lock on %s not acquired after %v: %w",
				ErrLockTimeout, mode, path, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-timer.C:
		}
	}
}

// openLockFile opens the lock file at path, creating it (0660, as libostree
// does) if needed. A shared lock needs only read access (F_RDLCK), so a
// user who may not write the repository still holds one where the file is
// readable, and a reader such as a dry-run prune waits for an exclusive
// holder as it should. Where it is not, the shared lock is not taken at all
// (a nil file): libostree takes no lock on a repository the user cannot
// write, and nor could any writer of this user's.
func openLockFile(path string, mode LockMode) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o660)
	if err != nil && mode == LockShared && isReadOnlyErr(err) {
		ro, roErr := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
		switch {
		case roErr == nil:
			return ro, nil
		case isReadOnlyErr(roErr) || errors.Is(roErr, fs.ErrNotExist):
			return nil, nil
		}
		return nil, readError("open lock file", path, roErr)
	}
	if err != nil {
		return nil, writeError("open lock file", path, err)
	}
	return f, nil
}

// noUnlock releases a lock that was not taken.
func noUnlock() error { return nil }

// unlinked reports whether the open file f has no name left.
func unlinked(f *os.File) bool {
	var st unix.Stat_t
	return unix.Fstat(int(f.Fd()), &st) == nil && st.Nlink == 0
}

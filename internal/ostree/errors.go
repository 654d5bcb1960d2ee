package ostree

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Sentinel errors. Every error this package returns for a condition below
// wraps the matching sentinel, so callers test with errors.Is.
var (
	// ErrNotRepository: the directory has no objects/ (libostree's mark of an
	// initialised repository) or does not exist.
	ErrNotRepository = errors.New("ostree: not a repository")
	// ErrRepositoryExists: Create was pointed at an existing repository.
	ErrRepositoryExists = errors.New("ostree: repository already exists")
	// ErrUnsupportedRepoVersion: core.repo_version is not 1.
	ErrUnsupportedRepoVersion = errors.New("ostree: unsupported repository version")
	// ErrUnsupportedMode: core.mode is not one libostree 2022.7 knows.
	ErrUnsupportedMode = errors.New("ostree: unsupported repository mode")
	// ErrRefNotFound: a ref (or checksum) does not resolve.
	ErrRefNotFound = errors.New("ostree: ref not found")
	// ErrObjectNotFound: an object the operation needs is absent.
	ErrObjectNotFound = errors.New("ostree: object not found")
	// ErrCorrupt: something read from the repository is malformed, does not
	// match its checksum, or is over the size cap for its kind.
	ErrCorrupt = errors.New("ostree: repository data corrupt")
	// ErrTooLarge: data is over the size cap for its kind. Read errors
	// wrapping it also wrap ErrCorrupt, since a repository never
	// legitimately holds such a file.
	ErrTooLarge = errors.New("ostree: file too large")
	// ErrLockTimeout: the repository lock was not acquired in time.
	ErrLockTimeout = errors.New("ostree: timed out waiting for repository lock")
	// ErrReadOnly: a write failed because the repository is not writable
	// (EROFS, EACCES or EPERM); the os error is wrapped too.
	ErrReadOnly = errors.New("ostree: repository is read-only")
	// ErrIO: a file system operation on the repository failed otherwise (a
	// full disk, a file size limit, an I/O error); the os error is wrapped
	// too, so errors.Is(err, syscall.ENOSPC) works.
	ErrIO = errors.New("ostree: repository I/O failed")
	// ErrInvalidObject: an object to be written cannot be represented (a
	// commit time before 1970, a dirmeta that is not a directory's, a tree
	// deeper than libostree reads).
	ErrInvalidObject = errors.New("ostree: invalid object")
	// ErrInvalidRef: a ref name, refspec or escaped ref is not well formed.
	ErrInvalidRef = errors.New("ostree: invalid ref")
	// ErrInvalidChecksum: a string is not 64 lower-case hex digits, or
	// serialized bytes carry a checksum field of the wrong length.
	ErrInvalidChecksum = errors.New("ostree: invalid checksum")
	// ErrInvalidObjectType: an ObjectType this package does not handle.
	ErrInvalidObjectType = errors.New("ostree: invalid object type")
)

// CorruptError reports malformed repository data at Path. It unwraps to
// ErrCorrupt and to the underlying cause (for example a gvariant error or
// ErrTooLarge).
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%v: %s: %v", ErrCorrupt, e.Path, e.Err)
}

// Unwrap lets errors.Is match both ErrCorrupt and the cause.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

func corrupt(path string, err error) error { return &CorruptError{Path: path, Err: err} }

// writeError wraps an error from a write path: permission and
// read-only-filesystem failures match ErrReadOnly, others ErrIO.
func writeError(op, path string, err error) error {
	err = bareCause(path, err)
	if isReadOnlyErr(err) {
		return fmt.Errorf("%w: %s %s: %w", ErrReadOnly, op, path, err)
	}
	return fmt.Errorf("%w: %s %s: %w", ErrIO, op, path, err)
}

// readError wraps an error from a read path so that it matches ErrIO (and
// still fs.ErrNotExist where the file is missing).
func readError(op, path string, err error) error {
	return fmt.Errorf("%w: %s %s: %w", ErrIO, op, path, bareCause(path, err))
}

// bareCause drops an *os.PathError naming path, which the message names
// already.
func bareCause(path string, err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok && pe.Path == path {
		return pe.Err
	}
	return err
}

func isReadOnlyErr(err error) bool {
	return errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}

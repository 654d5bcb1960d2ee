package importer

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns for one of these
// conditions wraps the sentinel, so callers can test with errors.Is.
var (
	// ErrInvalidOptions: the options are incomplete or malformed (a missing
	// or malformed digest, an empty layer list).
	ErrInvalidOptions = errors.New("importer: invalid options")
	// ErrUnsupportedMediaType: the layer's media type names a compression
	// (or no layer type) this package does not read.
	ErrUnsupportedMediaType = errors.New("importer: unsupported layer media type")
	// ErrInvalidTar: the layer is not a well-formed tar stream, including a
	// stream that ends early (the error also wraps io.ErrUnexpectedEOF then).
	ErrInvalidTar = errors.New("importer: malformed layer tar stream")
	// ErrInvalidPath: an entry name has a ".." component, is not UTF-8,
	// holds a NUL, or exceeds NAME_MAX/PATH_MAX.
	ErrInvalidPath = errors.New("importer: invalid path in layer")
	// ErrInvalidEntry: an entry's header cannot be represented in OSTree
	// (an id beyond 32 bits, an empty or over-long symlink target, an
	// unknown entry type, a root entry that is not a directory).
	ErrInvalidEntry = errors.New("importer: invalid layer entry")
	// ErrNotDirectory: an entry's parent chain runs through something that
	// is not a directory (for example a symlink named earlier in the layer).
	ErrNotDirectory = errors.New("importer: path through a non-directory")
	// ErrTypeConflict: an entry would replace a directory by a non-directory
	// or the reverse; libostree refuses this too.
	ErrTypeConflict = errors.New("importer: entry replaces a directory by a non-directory or the reverse")
	// ErrHardlink: a hard link's target is missing from the layer so far,
	// was filtered out, or is a directory.
	ErrHardlink = errors.New("importer: invalid hard link")
	// ErrDigestMismatch: the compressed blob or the uncompressed tar does
	// not hash to the expected digest, or has the wrong size.
	ErrDigestMismatch = errors.New("importer: layer digest mismatch")

	// Errors of encapsulated images (ImportCommitLayer,
	// ImportObjectSetLayer, VerifyLayerCommit).

	// ErrInvalidObject: an entry naming an OSTree object is malformed: a
	// bad object path, the wrong entry type, bytes that do not decode or
	// exceed the size cap, xattrs missing or naming another object.
	ErrInvalidObject = errors.New("importer: invalid object in layer")
	// ErrObjectChecksum: an object does not hash to the checksum its entry
	// names.
	ErrObjectChecksum = errors.New("importer: object does not match its checksum")
	// ErrCommitMismatch: the commit layer holds (or a blob ref names)
	// another commit than the image's ostree.commit label.
	ErrCommitMismatch = errors.New("importer: commit is not the image's")
	// ErrUnexpectedObject: an object where it does not belong: anything
	// before the commit in the commit layer, a second commit, a
	// .commitmeta not right after its commit, a metadata object in a chunk
	// layer, an object kind the format does not use.
	ErrUnexpectedObject = errors.New("importer: unexpected object in layer")
	// ErrIncompleteCommit: an object the commit reaches is in neither the
	// layer nor the repository (chunk layers are imported before the
	// commit layer).
	ErrIncompleteCommit = errors.New("importer: commit is incomplete")
	// ErrLayerCommitKind: an existing layer commit is not what importing
	// its kind of layer makes (VerifyLayerCommit).
	ErrLayerCommitKind = errors.New("importer: layer commit does not match its layer's kind")
)

// EntryError is an error about one tar entry. It unwraps to the cause,
// which wraps one of the sentinels.
type EntryError struct {
	Name string // the entry's name as it appears in the tar
	Err  error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("importer: layer entry %q: %v", e.Name, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// DigestError reports a layer whose content does not match what the caller
// expected. It unwraps to ErrDigestMismatch.
type DigestError struct {
	What     string // "digest", "diff_id" or "size"
	Expected string
	Actual   string
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("importer: layer %s mismatch: expected %s, got %s", e.What, e.Expected, e.Actual)
}

func (e *DigestError) Unwrap() error { return ErrDigestMismatch }

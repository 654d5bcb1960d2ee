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
	// ErrDigestMismatch: the uncompressed tar does not hash to the expected
	// diff_id.
	ErrDigestMismatch = errors.New("importer: layer digest mismatch")
	// ErrInvalidLayer: the layer cannot be imported. Each of the errors
	// below wraps it, so one test covers every kind.
	ErrInvalidLayer = errors.New("importer: invalid layer")
)

// Kinds of ErrInvalidLayer.
var (
	// ErrUnsupportedMediaType: the layer's media type names a compression
	// (or no layer type) this package does not read.
	ErrUnsupportedMediaType = invalidLayer("unsupported media type")
	// ErrInvalidTar: the layer is not a well-formed tar stream, including a
	// stream that ends early (the error also wraps io.ErrUnexpectedEOF then).
	ErrInvalidTar = invalidLayer("malformed tar stream")
	// ErrInvalidPath: an entry name has a ".." component, is not UTF-8,
	// holds a NUL, or exceeds NAME_MAX/PATH_MAX.
	ErrInvalidPath = invalidLayer("invalid path")
	// ErrInvalidEntry: an entry's header cannot be represented in OSTree
	// (an id beyond 32 bits, an empty or over-long symlink target, an
	// unknown entry type, a root entry that is not a directory).
	ErrInvalidEntry = invalidLayer("invalid entry")
	// ErrNotDirectory: an entry's parent chain runs through something that
	// is not a directory (for example a symlink named earlier in the layer).
	ErrNotDirectory = invalidLayer("path through a non-directory")
	// ErrTypeConflict: an entry would replace a directory by a non-directory
	// or the reverse; libostree refuses this too.
	ErrTypeConflict = invalidLayer("entry replaces a directory by a non-directory or the reverse")
	// ErrHardlink: a hard link's target is missing from the layer so far,
	// was filtered out, or is a directory.
	ErrHardlink = invalidLayer("invalid hard link")
	// ErrTooManyEntries: a directory of the layer has more than
	// MaxDirEntries entries, or the layer more than MaxLayerEntries.
	ErrTooManyEntries = invalidLayer("directory with too many entries")
	// ErrLayerTooLarge: the uncompressed layer exceeds LayerOptions.MaxSize.
	ErrLayerTooLarge = invalidLayer("uncompressed layer over the size cap")
	// ErrSELinuxPolicy: the image's tree enables an SELinux policy that
	// cannot be used to label it (its type missing, a malformed or
	// unsupported file_contexts, no binary policy). The selinux package's
	// sentinel is wrapped too.
	ErrSELinuxPolicy = invalidLayer("unusable SELinux policy")

	// Kinds of errors of encapsulated images (ImportCommitLayer,
	// ImportObjectSetLayer).

	// ErrInvalidObject: an entry naming an OSTree object is malformed: a
	// bad object path, the wrong entry type, bytes that do not decode or
	// exceed the size cap, xattrs missing or naming another object.
	ErrInvalidObject = invalidLayer("invalid object")
	// ErrObjectChecksum: an object does not hash to the checksum its entry
	// names.
	ErrObjectChecksum = invalidLayer("object does not match its checksum")
	// ErrCommitMismatch: the commit layer holds (or a blob ref names)
	// another commit than the image's ostree.commit label.
	ErrCommitMismatch = invalidLayer("commit is not the image's")
	// ErrUnexpectedObject: an object where it does not belong: anything
	// before the commit in the commit layer, a second commit, a
	// .commitmeta not right after its commit, a metadata object in a chunk
	// layer, an object kind the format does not use.
	ErrUnexpectedObject = invalidLayer("unexpected object")
)

// What VerifyLayerCommit finds wrong with a layer commit already in the
// repository: the layer is to be imported again.
var (
	// ErrIncompleteCommit: an object the commit reaches is in neither the
	// layer nor the repository (chunk layers are imported before the
	// commit layer).
	ErrIncompleteCommit = errors.New("importer: commit is incomplete")
	// ErrLayerCommitKind: an existing layer commit is not what importing
	// its kind of layer makes.
	ErrLayerCommitKind = errors.New("importer: layer commit does not match its layer's kind")
)

func invalidLayer(kind string) error { return fmt.Errorf("%w: %s", ErrInvalidLayer, kind) }

// EntryError is an error about one tar entry. It unwraps to the cause,
// which wraps one of the sentinels.
type EntryError struct {
	Name string // the entry's name as it appears in the tar
	Err  error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("layer entry %q: %v", e.Name, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// DigestError reports a layer whose content does not match what the caller
// expected. It unwraps to ErrDigestMismatch.
type DigestError struct {
	What     string // "diff_id"
	Expected string
	Actual   string
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("importer: layer %s mismatch: expected %s, got %s", e.What, e.Expected, e.Actual)
}

func (e *DigestError) Unwrap() error { return ErrDigestMismatch }

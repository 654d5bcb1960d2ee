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
	// ErrLayerTooLarge: the uncompressed layer exceeds LayerOptions.MaxSize.
	ErrLayerTooLarge = invalidLayer("uncompressed layer over the size cap")
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

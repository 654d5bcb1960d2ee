package gvariant

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidType reports a string that is not one complete definite
	// GVariant type.
	ErrInvalidType = errors.New("gvariant: invalid type string")
	// ErrTypeMismatch reports a Go value that Marshal cannot write as the
	// requested type: a Go type other than the mapped one, or content the
	// type cannot hold (a string with a NUL, a bad object path, a tuple
	// with the wrong number of members).
	ErrTypeMismatch = errors.New("gvariant: value does not match type")
	// ErrMalformed reports data that is not a normal-form serialisation of
	// the requested type. Unmarshal returns it as a *DecodeError.
	ErrMalformed = errors.New("gvariant: malformed data")
	// ErrTooDeep reports a value for Marshal that nests more containers
	// (counting variants) than MaxDepth allows.
	ErrTooDeep = errors.New("gvariant: value nested too deeply")
)

// DecodeError describes where and why data is not normal form. It unwraps to
// ErrMalformed.
type DecodeError struct {
	Type   string // type of the offending value
	Offset int    // byte offset in the input of the offending value or byte
	Reason string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("gvariant: malformed %s at offset %d: %s", e.Type, e.Offset, e.Reason)
}

func (e *DecodeError) Unwrap() error { return ErrMalformed }

func malformed(t *typeNode, off int, format string, args ...any) error {
	return &DecodeError{Type: t.str, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

func mismatch(t *typeNode, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrTypeMismatch, t.str, fmt.Sprintf(format, args...))
}

func wrongGoType(t *typeNode, v any) error {
	return mismatch(t, "cannot marshal Go value of type %T", v)
}

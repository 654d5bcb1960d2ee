package selinux

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns wraps one of them, so
// callers test with errors.Is.
var (
	// ErrSyntax: a file_contexts line is malformed (too few fields, an
	// unknown file-type qualifier, a non-ASCII field, a regular expression
	// PCRE2 refuses too). Wrapped in a *SyntaxError naming file and line.
	ErrSyntax = errors.New("selinux: malformed file contexts")
	// ErrUnsupportedPattern: PCRE2 accepts the regular expression but Go's
	// regexp cannot express its meaning exactly (a backreference, a
	// lookaround, a possessive quantifier, ...). Wrapped in a *SyntaxError.
	ErrUnsupportedPattern = errors.New("selinux: unsupported regular expression")
	// ErrPolicyNotFound: the policy the configuration names, or a file
	// it needs (file_contexts, the binary policy), is missing.
	ErrPolicyNotFound = errors.New("selinux: policy not found")
	// ErrBadConfig: the tree's selinux/config enables SELinux but cannot be
	// used (no SELINUXTYPE, a type that is no path, invalid UTF-8).
	ErrBadConfig = errors.New("selinux: bad SELinux configuration")
	// ErrInvalidPolicy: the policy loads but is unusable: "/" gets no
	// label, a policy file is over the size cap, a binary policy's name
	// carries no usable version.
	ErrInvalidPolicy = errors.New("selinux: invalid policy")
	// ErrInvalidPath: a lookup path is empty or holds a NUL byte (neither
	// can reach libselinux).
	ErrInvalidPath = errors.New("selinux: invalid path")
)

// SyntaxError locates a problem in a policy file. Err wraps ErrSyntax or
// ErrUnsupportedPattern.
type SyntaxError struct {
	File string // the file's path in the fs.FS it was loaded from
	Line int    // 1-based
	Err  error
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *SyntaxError) Unwrap() error { return e.Err }

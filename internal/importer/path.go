package importer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds on entry names. Linux cannot create a longer component or resolve
// a longer path, so an image holding one could never be checked out; they
// also bound the memory every tree entry costs.
const (
	maxNameLen = 255  // NAME_MAX
	maxPathLen = 4096 // PATH_MAX
)

// pathFilter applies ostree-ext's rules for where the entries of a plain
// image layer land in the OSTree tree.
type pathFilter struct {
	keepVar     bool
	allowNonUsr bool
}

// apply normalises a tar entry name and maps it by ostree-ext's top-level
// rules. It returns the entry's path relative to the tree root, components
// separated by single slashes ("" is the root itself), or, when the rules
// drop the entry, the top-level name it was dropped under. A name with a
// ".." component, invalid UTF-8, a NUL, or over the length bounds is an
// error wrapping ErrInvalidPath.
func (f pathFilter) apply(name string) (path, dropped string, err error) {
	p, err := normalizePath(name)
	if err != nil {
		return "", "", err
	}
	if p == "" {
		return "", "", nil
	}
	top, _, hasRest := strings.Cut(p, "/")
	switch top {
	case "usr":
	case "etc":
		p = "usr/" + p
	case "var":
		if !f.keepVar {
			p = "usr/share/factory/" + p
		}
	case "run", "tmp", "proc", "sys", "dev":
		// The mount points themselves belong in the image; what a build
		// left below them does not.
		if hasRest {
			return "", top, nil
		}
	default:
		if !f.allowNonUsr {
			return "", top, nil
		}
	}
	if len(p) > maxPathLen {
		return "", "", fmt.Errorf("%w: %q is longer than %d bytes once mapped to %q", ErrInvalidPath, name, maxPathLen, p)
	}
	return p, "", nil
}

// normalizePath makes a tar entry name relative and canonical: leading
// slashes, empty and "." components are dropped; ".." is refused rather
// than resolved, since a layer has no business naming its parent.
func normalizePath(name string) (string, error) {
	if !utf8.ValidString(name) {
		// OSTree stores names as GVariant strings, which must be UTF-8.
		return "", fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidPath, name)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: %q contains NUL", ErrInvalidPath, name)
	}
	if len(name) > maxPathLen {
		return "", fmt.Errorf("%w: %.64q... is longer than %d bytes", ErrInvalidPath, name, maxPathLen)
	}
	var b strings.Builder
	b.Grow(len(name))
	for c := range strings.SplitSeq(name, "/") {
		switch {
		case c == "" || c == ".":
			continue
		case c == "..":
			return "", fmt.Errorf("%w: %q has a \"..\" component", ErrInvalidPath, name)
		case len(c) > maxNameLen:
			return "", fmt.Errorf("%w: %q has a component longer than %d bytes", ErrInvalidPath, name, maxNameLen)
		}
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(c)
	}
	return b.String(), nil
}

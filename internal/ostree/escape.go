package ostree

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Ref name prefixes ostree-ext uses for container images and their layers.
const (
	ImageRefPrefix = "ostree/container/image/"
	BlobRefPrefix  = "ostree/container/blob/"
)

func isASCIIAlnum(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// EscapeRef turns an arbitrary string into a valid ref fragment path with
// ostree-ext's rules, so both produce identical ref names: ASCII letters,
// digits and '-' stay; '/' stays only after a letter or digit and when it
// is not the last character (so no empty or leading component appears);
// '_' becomes "__"; every other character becomes "_XX_", XX the code
// point in upper-case hex, at least two digits (é -> "_E9_", € ->
// "_20AC_"). The empty string, NUL and invalid UTF-8 are ErrInvalidRef.
func EscapeRef(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: cannot escape an empty string", ErrInvalidRef)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalidRef, s)
	}
	var b strings.Builder
	b.Grow(len(s))
	prevAlnum := false
	for i, c := range s {
		switch {
		case c == 0:
			return "", fmt.Errorf("%w: %q contains NUL", ErrInvalidRef, s)
		case isASCIIAlnum(c) || c == '-':
			b.WriteRune(c)
		case c == '/' && prevAlnum && i < len(s)-1:
			b.WriteRune(c)
		case c == '_':
			b.WriteString("__")
		default:
			fmt.Fprintf(&b, "_%02X_", c)
		}
		prevAlnum = isASCIIAlnum(c)
	}
	return b.String(), nil
}

// UnescapeRef reverses EscapeRef. It accepts only what EscapeRef produces
// (upper-case hex without extra leading zeros, escapes only where EscapeRef
// escapes, '/' only where EscapeRef keeps it), so unescaping is exactly the
// inverse; anything else is ErrInvalidRef.
func UnescapeRef(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: cannot unescape an empty string", ErrInvalidRef)
	}
	bad := func(why string) error { return fmt.Errorf("%w: malformed escaped ref %q: %s", ErrInvalidRef, s, why) }
	var b strings.Builder
	b.Grow(len(s))
	prevAlnum := false
	for i := 0; i < len(s); i++ {
		c := rune(s[i])
		switch {
		case isASCIIAlnum(c) || c == '-':
		case c == '/':
			if !prevAlnum || i == len(s)-1 {
				return "", bad("'/' where escaping keeps none")
			}
		case c == '_' && i+1 < len(s) && s[i+1] == '_':
			i++
		case c == '_':
			end := strings.IndexByte(s[i+1:], '_')
			if end < 0 {
				return "", bad("unterminated _XX_ escape")
			}
			hex := s[i+1 : i+1+end]
			// Canonical: 2 digits below 0x100, else no leading zero; at most
			// 6 digits (U+10FFFF).
			if len(hex) < 2 || len(hex) > 6 || len(hex) > 2 && hex[0] == '0' || strings.ToUpper(hex) != hex {
				return "", bad("escape " + strconv.Quote(hex) + " is not upper-case hex in canonical form")
			}
			v, err := strconv.ParseUint(hex, 16, 32)
			if err != nil || v > utf8.MaxRune || !utf8.ValidRune(rune(v)) {
				return "", bad("escape " + strconv.Quote(hex) + " is not a Unicode scalar value")
			}
			c = rune(v)
			if c == 0 || c == '_' || isASCIIAlnum(c) || c == '-' ||
				c == '/' && prevAlnum && i+1+end+1 < len(s) {
				return "", bad("escape " + strconv.Quote(hex) + " of a character escaping keeps as is")
			}
			i += 1 + end
		default:
			return "", bad(fmt.Sprintf("character %q is never produced by escaping", c))
		}
		b.WriteRune(c)
		prevAlnum = isASCIIAlnum(c)
	}
	return b.String(), nil
}

// ImageRefName returns ostree-ext's ref for an image reference in
// containers-transports form, e.g. "docker://quay.io/fedora/fedora-coreos:stable"
// -> "ostree/container/image/docker_3A__2F__2F_quay_2E_io/fedora/fedora-coreos_3A_stable".
func ImageRefName(imageReference string) (string, error) {
	esc, err := EscapeRef(imageReference)
	if err != nil {
		return "", err
	}
	return checkRefName(ImageRefPrefix + esc)
}

// checkRefName returns name if it can be a ref file, else ErrInvalidRef,
// so that a name too long for the file system is refused before any work
// that would end in writing it.
func checkRefName(name string) (string, error) {
	if !validRefName(name) {
		return "", fmt.Errorf("%w: %q has a component longer than %d bytes", ErrInvalidRef, name, maxRefFragment)
	}
	return name, nil
}

// ImageReferenceFromRefName is the inverse of ImageRefName: it returns the
// image reference a ref under ImageRefPrefix names, or ErrInvalidRef.
func ImageReferenceFromRefName(ref string) (string, error) {
	esc, ok := strings.CutPrefix(ref, ImageRefPrefix)
	if !ok {
		return "", fmt.Errorf("%w: %q is not under %s", ErrInvalidRef, ref, ImageRefPrefix)
	}
	return UnescapeRef(esc)
}

// BlobRefName returns ostree-ext's ref for a layer digest
// ("sha256:<hex>" -> "ostree/container/blob/sha256_3A_<hex>"). The digest
// must have the OCI form algorithm ":" encoded; anything else is
// ErrInvalidRef.
func BlobRefName(digest string) (string, error) {
	if !validDigest(digest) {
		return "", fmt.Errorf("%w: %q is not a digest (algorithm:encoded)", ErrInvalidRef, digest)
	}
	esc, err := EscapeRef(digest)
	if err != nil {
		return "", err
	}
	return checkRefName(BlobRefPrefix + esc)
}

// validDigest checks the OCI image-spec digest grammar:
// algorithm [a-z0-9]+([+._-][a-z0-9]+)*, ":", encoded [a-zA-Z0-9=_-]+.
func validDigest(d string) bool {
	alg, enc, ok := strings.Cut(d, ":")
	if !ok || alg == "" || enc == "" {
		return false
	}
	prevSep := true // a separator may not lead, follow another, or end
	for _, c := range alg {
		isSep := c == '+' || c == '.' || c == '_' || c == '-'
		if isSep && prevSep || !isSep && !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
		prevSep = isSep
	}
	if prevSep {
		return false
	}
	for _, c := range enc {
		if !isASCIIAlnum(c) && c != '=' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

package gvariant

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Handle is the GVariant type h: an index into an out-of-band array of file
// descriptors.
type Handle int32

// ObjectPath is the GVariant type o, a D-Bus object path such as
// "/org/example/Thing".
type ObjectPath string

// Signature is the GVariant type g: zero or more complete D-Bus types
// (GVariant types without maybes), such as "a{sv}i".
type Signature string

// Variant is the GVariant type v: a value together with its own type.
type Variant struct {
	Type  string
	Value any
}

// NewString returns a variant holding the string s.
func NewString(s string) Variant { return Variant{Type: "s", Value: s} }

// Maybe is the GVariant type m<T>: a value of type T or nothing.
type Maybe struct {
	Valid bool
	Value any
}

// DictEntry is one entry of a dictionary a{KV}, or the type {KV} alone.
type DictEntry struct {
	Key, Value any
}

// stringProblem says what keeps s from being a GVariant string, or "".
func stringProblem(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return fmt.Sprintf("interior NUL at byte %d", i)
	}
	if !utf8.ValidString(s) {
		return "invalid UTF-8"
	}
	return ""
}

// validObjectPath applies the D-Bus rules: "/" or "/"-separated non-empty
// elements of [A-Za-z0-9_], no trailing "/".
func validObjectPath(s string) bool {
	if s == "/" {
		return true
	}
	if s == "" || s[0] != '/' || s[len(s)-1] == '/' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/':
			if s[i-1] == '/' {
				return false
			}
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		default:
			return false
		}
	}
	return true
}

// validSignature reports whether s is a sequence of complete D-Bus types:
// GVariant definite types without maybes.
func validSignature(s string) bool {
	if strings.IndexFunc(s, func(r rune) bool { return !strings.ContainsRune("ybnqiuxthdvasog(){}", r) }) >= 0 {
		return false
	}
	p := typeParser{s: s}
	for p.pos < len(s) {
		if _, err := p.one(MaxDepth); err != nil {
			return false
		}
	}
	return true
}

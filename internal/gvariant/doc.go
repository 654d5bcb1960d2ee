// Package gvariant encodes and decodes the GVariant binary serialisation
// format (as implemented by GLib's gvariant-serialiser) in normal form. The
// GVariant type string drives both directions, much as a struct layout
// drives encoding/binary.
//
// # Go mapping
//
//	b bool          y byte        n int16       q uint16
//	i int32         u uint32      x int64       t uint64
//	h Handle        d float64     s string      o ObjectPath
//	g Signature     v Variant     m<T> Maybe    ay []byte
//	a{KV} []DictEntry             a<T> (any other) []any
//	(...) []any, one element per member; () is []any{}
//	{KV}  DictEntry (a dict entry on its own)
//
// Unmarshal always produces exactly these types, with non-nil empty slices.
// Marshal accepts them too, and for convenience also []string for as,
// VarDict for a{sv} and []any for any array type; nil slices are empty.
// Maybe{Valid: false} must have a nil Value.
//
// Numbers are little-endian, which is what GLib writes on little-endian
// hosts. Formats built on GVariant sometimes store numbers byte-swapped
// (OSTree keeps several fields big-endian); that swapping is the caller's
// business.
//
// # Strictness
//
// Marshal writes normal form: minimal framing offset widths, zero padding,
// nothing extra. Unmarshal accepts normal form only, the bytes GLib's own
// serialiser would write, and reports anything else as a *DecodeError that
// unwraps to ErrMalformed: wrong sizes, framing offsets out of range,
// decreasing, overlapping or wider than needed, non-zero padding, booleans
// other than 0 and 1, strings without their NUL terminator, with an interior
// NUL or invalid UTF-8, malformed object paths and signatures, variants whose
// type string is not one complete definite type, trailing bytes. This is
// what g_variant_is_normal_form checks, except that GLib 2.74 also passes an
// empty serialisation of a tuple that needs framing offsets, such as "" for
// (asas), which GLib itself writes as one zero byte. As a result, Marshal of
// an accepted value reproduces the input exactly. No allocation is sized by
// a length read from the data beyond what the data itself holds.
//
// # Depth limit
//
// As in GLib, a type string may nest at most MaxDepth (128) containers
// (arrays, maybes, tuples, dict entries). In a value, where variants count
// as containers too, every element must sit inside fewer than MaxDepth
// containers, and a variant's own type must leave room for its deepest
// possible element (by GLib's reckoning, in which () adds no depth). Deeper
// input is ErrInvalidType (type strings), ErrMalformed (Unmarshal) or
// ErrTooDeep (Marshal), which keeps recursion bounded whatever the input.
package gvariant

package gvariant

import (
	"bytes"
	"encoding/binary"
	"math"
)

var le = binary.LittleEndian

// Unmarshal decodes data, which must be the normal-form serialisation of a
// value of type typ, into the Go types listed in the package documentation.
// A bad typ gives an error wrapping ErrInvalidType; data that is not normal
// form gives a *DecodeError, which unwraps to ErrMalformed.
func Unmarshal(typ string, data []byte) (any, error) {
	t, err := lookupType(typ)
	if err != nil {
		return nil, err
	}
	return decode(t, data, 0, 0)
}

// decode decodes data as t. off is where data starts in the caller's input
// (for error messages); level is how many containers enclose this value.
func decode(t *typeNode, data []byte, off, level int) (any, error) {
	if level >= MaxDepth {
		return nil, malformed(t, off, "nested inside %d containers", level)
	}
	if t.fixed != 0 && len(data) != t.fixed {
		return nil, malformed(t, off, "%d bytes, want %d", len(data), t.fixed)
	}
	switch t.kind {
	case 'b':
		if data[0] > 1 {
			return nil, malformed(t, off, "boolean byte is %d", data[0])
		}
		return data[0] == 1, nil
	case 'y':
		return data[0], nil
	case 'n':
		return int16(le.Uint16(data)), nil
	case 'q':
		return le.Uint16(data), nil
	case 'i':
		return int32(le.Uint32(data)), nil
	case 'u':
		return le.Uint32(data), nil
	case 'h':
		return Handle(le.Uint32(data)), nil
	case 'x':
		return int64(le.Uint64(data)), nil
	case 't':
		return le.Uint64(data), nil
	case 'd':
		return math.Float64frombits(le.Uint64(data)), nil
	case 's', 'o', 'g':
		return decodeText(t, data, off)
	case 'v':
		return decodeVariant(data, off, level)
	case 'm':
		return decodeMaybe(t, data, off, level)
	case 'a':
		return decodeArray(t, data, off, level)
	case '{':
		return decodeEntry(t, data, off, level)
	default: // '('
		members := make([]any, len(t.fields))
		err := walkTuple(t, data, off, func(i int, f *typeNode, b []byte, o int) (err error) {
			members[i], err = decode(f, b, o, level+1)
			return err
		})
		if err != nil {
			return nil, err
		}
		return members, nil
	}
}

func decodeEntry(t *typeNode, data []byte, off, level int) (DictEntry, error) {
	var e DictEntry
	err := walkTuple(t, data, off, func(i int, f *typeNode, b []byte, o int) (err error) {
		if i == 0 {
			e.Key, err = decode(f, b, o, level+1)
		} else {
			e.Value, err = decode(f, b, o, level+1)
		}
		return err
	})
	return e, err
}

// decodeString decodes the bytes of a string type: UTF-8, then one NUL.
func decodeString(t *typeNode, data []byte, off int) (string, error) {
	if len(data) == 0 || data[len(data)-1] != 0 {
		return "", malformed(t, off, "missing NUL terminator")
	}
	s := string(data[:len(data)-1])
	if p := stringProblem(s); p != "" {
		return "", malformed(t, off, "%s", p)
	}
	return s, nil
}

// decodeText decodes the string types s, o and g, returning string,
// ObjectPath or Signature.
func decodeText(t *typeNode, data []byte, off int) (any, error) {
	s, err := decodeString(t, data, off)
	if err != nil {
		return nil, err
	}
	switch t.kind {
	case 'o':
		if !validObjectPath(s) {
			return nil, malformed(t, off, "%q is not an object path", s)
		}
		return ObjectPath(s), nil
	case 'g':
		if !validSignature(s) {
			return nil, malformed(t, off, "%q is not a signature", s)
		}
		return Signature(s), nil
	}
	return s, nil
}

// decodeVariant decodes a v: the child's bytes, a NUL, the child's type.
func decodeVariant(data []byte, off, level int) (Variant, error) {
	vt := basicTypes['v']
	sep := bytes.LastIndexByte(data, 0)
	if sep < 0 {
		return Variant{}, malformed(vt, off, "no NUL before the type string")
	}
	var ct *typeNode
	if ts := data[sep+1:]; len(ts) == 1 && basicTypes[ts[0]] != nil {
		ct = basicTypes[ts[0]] // the common case, without allocating
	} else {
		var err error
		if ct, err = parseType(string(ts)); err != nil {
			return Variant{}, malformed(vt, off+sep+1, "type string %q: %s", ts, err.(*typeError).detail())
		}
	}
	// GLib's rule: the variant's type must leave room for its deepest
	// possible element, even if this value has none that deep.
	if level+ct.depth >= MaxDepth {
		return Variant{}, malformed(vt, off, "type %s nested inside %d containers", ct.str, level+1)
	}
	v, err := decode(ct, data[:sep], off, level+1)
	if err != nil {
		return Variant{}, err
	}
	return Variant{Type: ct.str, Value: v}, nil
}

// decodeMaybe decodes m<T>: empty for nothing, else the value, followed by
// a zero byte when T is variable-size.
func decodeMaybe(t *typeNode, data []byte, off, level int) (Maybe, error) {
	if len(data) == 0 {
		return Maybe{}, nil
	}
	child := data
	if t.elem.fixed == 0 {
		last := len(data) - 1
		if data[last] != 0 {
			return Maybe{}, malformed(t, off+last, "last byte is %#x, want 0", data[last])
		}
		child = data[:last]
	}
	v, err := decode(t.elem, child, off, level+1)
	if err != nil {
		return Maybe{}, err
	}
	return Maybe{Valid: true, Value: v}, nil
}

func decodeArray(t *typeNode, data []byte, off, level int) (any, error) {
	if len(data) > 0 && level+1 >= MaxDepth { // the elements would be too deep
		return nil, malformed(t, off, "elements nested inside %d containers", level+1)
	}
	if t.elem.kind == 'y' {
		return append(make([]byte, 0, len(data)), data...), nil
	}
	it, err := newElemIter(t, data, off)
	if err != nil {
		return nil, err
	}
	if t.elem.kind == '{' {
		out := make([]DictEntry, it.n)
		for i := range out {
			lo, hi, err := it.next()
			if err != nil {
				return nil, err
			}
			if out[i], err = decodeEntry(t.elem, data[lo:hi], off+lo, level+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	out := make([]any, it.n)
	for i := range out {
		lo, hi, err := it.next()
		if err != nil {
			return nil, err
		}
		if out[i], err = decode(t.elem, data[lo:hi], off+lo, level+1); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// elemIter walks the elements of an array, checking its framing.
type elemIter struct {
	t     *typeNode
	data  []byte
	off   int
	n     int // number of elements
	i     int // next element
	width int // offset width, for variable-size elements
	table int // where the offset table starts (variable-size elements)
	pos   int // end of the previous element
}

func newElemIter(t *typeNode, data []byte, off int) (elemIter, error) {
	it := elemIter{t: t, data: data, off: off}
	if size := t.elem.fixed; size != 0 {
		if len(data)%size != 0 {
			return it, malformed(t, off, "%d bytes is not a whole number of %d-byte elements", len(data), size)
		}
		it.n = len(data) / size
		return it, nil
	}
	if len(data) == 0 {
		return it, nil
	}
	it.width = offsetWidth(len(data)) // never more than len(data)
	last := readOffset(data[len(data)-it.width:])
	if last > uint64(len(data)) {
		return it, malformed(t, off+len(data)-it.width, "last element ends at %d, beyond the array's %d bytes", last, len(data))
	}
	it.table = int(last)
	tableSize := len(data) - it.table
	if tableSize == 0 || tableSize%it.width != 0 {
		return it, malformed(t, off+it.table, "offset table of %d bytes does not hold whole %d-byte offsets", tableSize, it.width)
	}
	it.n = tableSize / it.width
	if w := writerOffsetWidth(it.table, it.n); w != it.width {
		return it, malformed(t, off+it.table, "%d-byte framing offsets where %d-byte ones fit", it.width, w)
	}
	return it, nil
}

// next returns the bounds of the next element within data.
func (it *elemIter) next() (lo, hi int, err error) {
	i := it.i
	it.i++
	if size := it.t.elem.fixed; size != 0 {
		return i * size, (i + 1) * size, nil
	}
	lo, err = skipPadding(it.t, it.data, it.off, it.pos, it.t.elem.align, it.table)
	if err != nil {
		return 0, 0, err
	}
	at := it.table + i*it.width
	end := readOffset(it.data[at : at+it.width])
	if end < uint64(lo) || end > uint64(it.table) {
		return 0, 0, malformed(it.t, it.off+lo, "element %d ends at %d, outside %d..%d", i, end, lo, it.table)
	}
	it.pos = int(end)
	return lo, it.pos, nil
}

// skipPadding returns pos rounded up to align, checking that the bytes
// skipped are zero and lie before limit.
func skipPadding(t *typeNode, data []byte, off, pos, align, limit int) (int, error) {
	for ; pos&(align-1) != 0; pos++ {
		if pos >= limit {
			return 0, malformed(t, off+pos, "padding runs past the end of the data")
		}
		if data[pos] != 0 {
			return 0, malformed(t, off+pos, "padding byte is %#x, want 0", data[pos])
		}
	}
	return pos, nil
}

// walkTuple checks the framing of a tuple or dict entry and calls member
// for each member with its type, bytes and their offset in the input.
func walkTuple(t *typeNode, data []byte, off int, member func(i int, f *typeNode, data []byte, off int) error) error {
	table, ptr, width := len(data), len(data), 0
	if t.fixed == 0 {
		width = offsetWidth(len(data))
		table -= t.nOffsets * width
		if table < 0 {
			return malformed(t, off, "%d bytes cannot hold %d framing offsets", len(data), t.nOffsets)
		}
		if t.nOffsets > 0 {
			if w := writerOffsetWidth(table, t.nOffsets); w != width {
				return malformed(t, off+table, "%d-byte framing offsets where %d-byte ones fit", width, w)
			}
		}
	}
	pos := 0
	for i, f := range t.fields {
		lo, err := skipPadding(t, data, off, pos, f.align, table)
		if err != nil {
			return err
		}
		var hi uint64
		switch {
		case f.fixed != 0:
			hi = uint64(lo + f.fixed)
		case i == len(t.fields)-1:
			hi = uint64(table)
		default:
			ptr -= width
			hi = readOffset(data[ptr : ptr+width])
		}
		if hi < uint64(lo) || hi > uint64(table) {
			return malformed(t, off+lo, "member %d ends at %d, outside %d..%d", i, hi, lo, table)
		}
		if err := member(i, f, data[lo:hi], off+lo); err != nil {
			return err
		}
		pos = int(hi)
	}
	if t.fixed != 0 {
		// Fixed-size tuples end in zero padding up to their size; the
		// unit type () is a single zero byte.
		for ; pos < len(data); pos++ {
			if data[pos] != 0 {
				return malformed(t, off+pos, "padding byte is %#x, want 0", data[pos])
			}
		}
		return nil
	}
	if pos != table {
		return malformed(t, off+pos, "%d bytes between the last member and the framing offsets", table-pos)
	}
	return nil
}

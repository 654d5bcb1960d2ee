package gvariant

import (
	"fmt"
	"math"
)

// Marshal returns the normal-form serialisation of v as type typ; v must use
// the Go types listed in the package documentation. Errors wrap
// ErrInvalidType (typ or a Variant's Type is not a type), ErrTypeMismatch
// (v does not fit) or ErrTooDeep.
func Marshal(typ string, v any) ([]byte, error) {
	t, err := lookupType(typ)
	if err != nil {
		return nil, err
	}
	e := encoder{buf: []byte{}}
	if err := e.value(t, v, 0); err != nil {
		return nil, err
	}
	return e.buf, nil
}

// encoder appends serialised values to buf. Containers start at offsets
// aligned for them, so alignment relative to the container's start is
// alignment relative to buf.
type encoder struct {
	buf []byte
	// ends is a stack of framing offsets (child end positions) for the
	// containers being written; each container uses the part above the
	// length it found on entry.
	ends []int
}

// frame is a container being written: where it starts in buf and where its
// framing offsets start in ends.
type frame struct{ start, mark int }

func (e *encoder) open() frame { return frame{len(e.buf), len(e.ends)} }

func (e *encoder) pad(f frame, align int) {
	for (len(e.buf)-f.start)&(align-1) != 0 {
		e.buf = append(e.buf, 0)
	}
}

// markEnd records the end of the child just written as a framing offset.
func (e *encoder) markEnd(f frame) { e.ends = append(e.ends, len(e.buf)-f.start) }

// closeFrame appends the container's framing offsets, in reverse order for
// tuples, and pops them.
func (e *encoder) closeFrame(f frame, reverse bool) {
	ends := e.ends[f.mark:]
	if len(ends) > 0 {
		w := writerOffsetWidth(len(e.buf)-f.start, len(ends))
		for i := range ends {
			if reverse {
				i = len(ends) - 1 - i
			}
			e.buf = appendOffset(e.buf, ends[i], w)
		}
	}
	e.ends = e.ends[:f.mark]
}

// value appends v as t; level is how many containers enclose it.
func (e *encoder) value(t *typeNode, v any, level int) error {
	if level >= MaxDepth {
		return fmt.Errorf("%w: %s inside %d containers", ErrTooDeep, t.str, level)
	}
	ok := true
	switch t.kind {
	case 'b':
		var x bool
		if x, ok = v.(bool); ok {
			e.buf = append(e.buf, 0)
			if x {
				e.buf[len(e.buf)-1] = 1
			}
		}
	case 'y':
		var x byte
		if x, ok = v.(byte); ok {
			e.buf = append(e.buf, x)
		}
	case 'n':
		var x int16
		if x, ok = v.(int16); ok {
			e.buf = le.AppendUint16(e.buf, uint16(x))
		}
	case 'q':
		var x uint16
		if x, ok = v.(uint16); ok {
			e.buf = le.AppendUint16(e.buf, x)
		}
	case 'i':
		var x int32
		if x, ok = v.(int32); ok {
			e.buf = le.AppendUint32(e.buf, uint32(x))
		}
	case 'u':
		var x uint32
		if x, ok = v.(uint32); ok {
			e.buf = le.AppendUint32(e.buf, x)
		}
	case 'h':
		var x Handle
		if x, ok = v.(Handle); ok {
			e.buf = le.AppendUint32(e.buf, uint32(x))
		}
	case 'x':
		var x int64
		if x, ok = v.(int64); ok {
			e.buf = le.AppendUint64(e.buf, uint64(x))
		}
	case 't':
		var x uint64
		if x, ok = v.(uint64); ok {
			e.buf = le.AppendUint64(e.buf, x)
		}
	case 'd':
		var x float64
		if x, ok = v.(float64); ok {
			e.buf = le.AppendUint64(e.buf, math.Float64bits(x))
		}
	case 's':
		var x string
		if x, ok = v.(string); ok {
			return e.text(t, x)
		}
	case 'o':
		var x ObjectPath
		if x, ok = v.(ObjectPath); ok {
			if !validObjectPath(string(x)) {
				return mismatch(t, "%q is not an object path", x)
			}
			return e.text(t, string(x))
		}
	case 'g':
		var x Signature
		if x, ok = v.(Signature); ok {
			if !validSignature(string(x)) {
				return mismatch(t, "%q is not a signature", x)
			}
			return e.text(t, string(x))
		}
	case 'v':
		var x Variant
		if x, ok = v.(Variant); ok {
			return e.variant(x, level)
		}
	case 'm':
		var x Maybe
		if x, ok = v.(Maybe); ok {
			return e.maybe(t, x, level)
		}
	case 'a':
		return e.array(t, v, level)
	case '{':
		var x DictEntry
		if x, ok = v.(DictEntry); ok {
			return e.entry(t, x, level)
		}
	default: // '('
		var x []any
		if x, ok = v.([]any); ok {
			if len(x) != len(t.fields) {
				return mismatch(t, "%d members, want %d", len(x), len(t.fields))
			}
			return e.tuple(t, func(i int, f *typeNode) error { return e.value(f, x[i], level+1) })
		}
	}
	if !ok {
		return wrongGoType(t, v)
	}
	return nil
}

func (e *encoder) entry(t *typeNode, d DictEntry, level int) error {
	return e.tuple(t, func(i int, f *typeNode) error {
		if i == 0 {
			return e.value(f, d.Key, level+1)
		}
		return e.value(f, d.Value, level+1)
	})
}

// text appends a string, NUL-terminated.
func (e *encoder) text(t *typeNode, s string) error {
	if p := stringProblem(s); p != "" {
		return mismatch(t, "%s", p)
	}
	e.buf = append(e.buf, s...)
	e.buf = append(e.buf, 0)
	return nil
}

func (e *encoder) variant(v Variant, level int) error {
	ct, err := lookupType(v.Type)
	if err != nil {
		return err
	}
	if level+ct.depth >= MaxDepth { // as decodeVariant
		return fmt.Errorf("%w: variant of type %s inside %d containers", ErrTooDeep, ct.str, level+1)
	}
	if err := e.value(ct, v.Value, level+1); err != nil {
		return err
	}
	e.buf = append(e.buf, 0)
	e.buf = append(e.buf, ct.str...)
	return nil
}

func (e *encoder) maybe(t *typeNode, m Maybe, level int) error {
	if !m.Valid {
		if m.Value != nil {
			return mismatch(t, "Maybe with Valid false holds a %T", m.Value)
		}
		return nil
	}
	if err := e.value(t.elem, m.Value, level+1); err != nil {
		return err
	}
	if t.elem.fixed == 0 {
		e.buf = append(e.buf, 0)
	}
	return nil
}

func (e *encoder) array(t *typeNode, v any, level int) error {
	el := t.elem
	switch x := v.(type) {
	case []any:
		return e.elements(t, len(x), level, func(i int) error { return e.value(el, x[i], level+1) })
	case []byte:
		if el.kind == 'y' {
			if err := checkElemDepth(t, len(x), level); err != nil {
				return err
			}
			e.buf = append(e.buf, x...)
			return nil
		}
	case []string:
		if el.kind == 's' {
			return e.elements(t, len(x), level, func(i int) error { return e.text(el, x[i]) })
		}
	case []DictEntry:
		if el.kind == '{' {
			return e.elements(t, len(x), level, func(i int) error { return e.entry(el, x[i], level+1) })
		}
	case VarDict:
		if el.str == varEntryType.str {
			return e.elements(t, len(x), level, func(i int) error { return e.varEntry(x[i], level+1) })
		}
	}
	return wrongGoType(t, v)
}

// checkElemDepth refuses elements for an array at the given level if they
// would sit too deep, as decodeArray does.
func checkElemDepth(t *typeNode, n, level int) error {
	if n > 0 && level+1 >= MaxDepth {
		return fmt.Errorf("%w: elements of %s inside %d containers", ErrTooDeep, t.str, level+1)
	}
	return nil
}

// elements writes an array at the given level of n elements, put(i)
// writing element i.
func (e *encoder) elements(t *typeNode, n, level int, put func(i int) error) error {
	if err := checkElemDepth(t, n, level); err != nil {
		return err
	}
	f := e.open()
	for i := 0; i < n; i++ {
		e.pad(f, t.elem.align)
		if err := put(i); err != nil {
			return err
		}
		if t.elem.fixed == 0 {
			e.markEnd(f)
		}
	}
	e.closeFrame(f, false)
	return nil
}

// tuple writes a tuple or dict entry, put(i, f) writing member i of type f.
func (e *encoder) tuple(t *typeNode, put func(i int, f *typeNode) error) error {
	fr := e.open()
	for i, f := range t.fields {
		e.pad(fr, f.align)
		if err := put(i, f); err != nil {
			return err
		}
		if f.fixed == 0 && i < len(t.fields)-1 {
			e.markEnd(fr)
		}
	}
	switch {
	case t.fixed == 0:
		e.closeFrame(fr, true)
	case len(t.fields) == 0:
		e.buf = append(e.buf, 0)
	default:
		e.pad(fr, t.align)
	}
	return nil
}

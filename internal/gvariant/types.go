package gvariant

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// MaxDepth is the deepest nesting of containers a type string may have, and
// the bound on how deeply values may nest; see the package documentation.
const MaxDepth = 128

// typeNode is a parsed type string with the layout facts both directions need.
type typeNode struct {
	str    string      // the type string
	kind   byte        // its first character
	elem   *typeNode   // element of an array or maybe
	fields []*typeNode // members of a tuple or dict entry
	align  int         // 1, 2, 4 or 8
	fixed  int         // serialised size if fixed-size, else 0
	// depth is the type's nesting depth as GLib reckons it for variants
	// (g_variant_type_info_query_depth): 1 for a type without
	// components, one more per container, but 0 for ().
	depth int
	// nOffsets is how many framing offsets a tuple or dict entry carries:
	// one per variable-size member except the last member.
	nOffsets int
}

// basicTypes holds the types without components, indexed by type character.
var basicTypes = func() (tab [256]*typeNode) {
	for _, b := range []struct {
		c            byte
		align, fixed int
	}{
		{'b', 1, 1}, {'y', 1, 1}, {'n', 2, 2}, {'q', 2, 2}, {'i', 4, 4}, {'u', 4, 4},
		{'h', 4, 4}, {'x', 8, 8}, {'t', 8, 8}, {'d', 8, 8},
		{'s', 1, 0}, {'o', 1, 0}, {'g', 1, 0}, {'v', 8, 0},
	} {
		tab[b.c] = &typeNode{str: string(b.c), kind: b.c, align: b.align, fixed: b.fixed, depth: 1}
	}
	return tab
}()

// CheckType reports whether typ is one complete definite GVariant type, with
// an error wrapping ErrInvalidType if not.
func CheckType(typ string) error {
	_, err := parseType(typ)
	return err
}

// parseType parses a type string that must consist of exactly one type.
func parseType(s string) (*typeNode, error) {
	p := typeParser{s: s}
	t, err := p.one(MaxDepth)
	if err != nil {
		return nil, err
	}
	if p.pos != len(s) {
		return nil, p.fail("trailing characters after a complete type")
	}
	return t, nil
}

// Parsed types are cached because callers use a handful of type strings
// over and over; the bound keeps arbitrary strings (a fuzzer, say) from
// growing the cache without limit.
var (
	typeCache    sync.Map // string -> *typeNode
	typeCacheLen atomic.Int32
)

const typeCacheMax = 256

// lookupType is parseType through the cache.
func lookupType(s string) (*typeNode, error) {
	if len(s) == 1 && basicTypes[s[0]] != nil {
		return basicTypes[s[0]], nil
	}
	if t, ok := typeCache.Load(s); ok {
		return t.(*typeNode), nil
	}
	t, err := parseType(s)
	if err != nil {
		return nil, err
	}
	if typeCacheLen.Load() < typeCacheMax && typeCacheLen.Add(1) <= typeCacheMax {
		typeCache.Store(s, t)
	}
	return t, nil
}

func mustParseType(s string) *typeNode {
	t, err := parseType(s)
	if err != nil {
		panic(err)
	}
	return t
}

type typeParser struct {
	s   string
	pos int
}

// typeError says where and why a type string is invalid; it unwraps to
// ErrInvalidType.
type typeError struct {
	typ    string
	pos    int
	reason string
}

func (e *typeError) Error() string {
	return fmt.Sprintf("gvariant: invalid type string %q: %s", e.typ, e.detail())
}

func (e *typeError) detail() string { return fmt.Sprintf("%s at byte %d", e.reason, e.pos) }

func (e *typeError) Unwrap() error { return ErrInvalidType }

func (p *typeParser) fail(reason string) error {
	return &typeError{typ: p.s, pos: p.pos, reason: reason}
}

// one parses the type at p.pos; budget is how many containers it may still
// nest, which bounds the recursion.
func (p *typeParser) one(budget int) (*typeNode, error) {
	if p.pos >= len(p.s) {
		return nil, p.fail("unexpected end")
	}
	start := p.pos
	c := p.s[p.pos]
	if t := basicTypes[c]; t != nil {
		p.pos++
		return t, nil
	}
	switch c {
	case 'a', 'm', '(', '{':
	default:
		return nil, p.fail(fmt.Sprintf("%q is not a definite type", c))
	}
	if budget == 0 {
		return nil, p.fail(fmt.Sprintf("nested deeper than %d containers", MaxDepth))
	}
	p.pos++
	t := &typeNode{kind: c}
	switch c {
	case 'a', 'm':
		elem, err := p.one(budget - 1)
		if err != nil {
			return nil, err
		}
		t.elem, t.align, t.depth = elem, elem.align, elem.depth+1
	case '(':
		for {
			if p.pos >= len(p.s) {
				return nil, p.fail("unterminated tuple")
			}
			if p.s[p.pos] == ')' {
				p.pos++
				break
			}
			f, err := p.one(budget - 1)
			if err != nil {
				return nil, err
			}
			t.fields = append(t.fields, f)
		}
		layoutTuple(t)
	case '{':
		if p.pos >= len(p.s) || basicTypes[p.s[p.pos]] == nil || p.s[p.pos] == 'v' {
			return nil, p.fail("dict entry key must be a basic type")
		}
		key := basicTypes[p.s[p.pos]]
		p.pos++
		val, err := p.one(budget - 1)
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.s) || p.s[p.pos] != '}' {
			return nil, p.fail("dict entry must have exactly two members")
		}
		p.pos++
		t.fields = []*typeNode{key, val}
		layoutTuple(t)
		t.depth = val.depth + 1 // GLib leaves the key out
	}
	t.str = p.s[start:p.pos]
	return t, nil
}

// layoutTuple fills in alignment, fixed size, depth and offset count of a
// tuple or dict entry from its members.
func layoutTuple(t *typeNode) {
	t.align = 1
	size := 0
	fixed := true
	for i, f := range t.fields {
		t.align = max(t.align, f.align)
		t.depth = max(t.depth, f.depth+1)
		if f.fixed == 0 {
			fixed = false
			if i < len(t.fields)-1 {
				t.nOffsets++
			}
		}
		size = alignUp(size, f.align) + f.fixed
	}
	switch {
	case !fixed:
	case len(t.fields) == 0:
		t.fixed = 1 // the unit type is one zero byte
	default:
		t.fixed = alignUp(size, t.align)
	}
}

func alignUp(n, align int) int { return (n + align - 1) &^ (align - 1) }
